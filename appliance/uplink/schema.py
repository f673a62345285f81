"""Uplink topics and payloads, shared by the gateway's publisher and the cloud receiver (pure).

The protocol (ranges, parts, acknowledgement) is described in appliance/uplink/PROTOCOL.md.
Everything here takes values or bytes in and gives values or bytes out; nothing does I/O.
Every refusal is a SchemaError whose message names the field and where it was found.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

import numpy as np

from appliance.records import Alert, FeatureVector, Score
from appliance.uplink.errors import SchemaError

PROTOCOL_VERSION: Final = 1
Kind = Literal["features", "scores", "alerts", "gap"]
KINDS: Final[tuple[str, ...]] = get_args(Kind)
RECORD_KINDS: Final = ("features", "scores", "alerts")
GAP_ASSET: Final = "_"
SEVERITIES: Final = ("warning", "critical")
FORBIDDEN_IN_NAMES: Final = ("/", "+", "#", "\x00")

UplinkRecord = FeatureVector | Score | Alert
"""What a gateway sends: the same union as appliance.store's StoredRecord."""
SeqRecord = tuple[int, UplinkRecord]

HEADER_KEYS: Final = frozenset({"v", "gateway", "lo", "hi", "part", "parts", "kind", "asset"})
PART_KEYS: Final = {
    "features": HEADER_KEYS | {"schemas", "records"},
    "scores": HEADER_KEYS | {"records"},
    "alerts": HEADER_KEYS | {"records"},
    "gap": HEADER_KEYS | {"records"},
}
RECORD_KEYS: Final = {
    "features": frozenset({"seq", "t", "schema", "values"}),
    "scores": frozenset(
        {"seq", "t", "model_id", "error", "threshold", "anomalous", "contributors"}
    ),
    "alerts": frozenset({"seq", "t", "severity", "kind", "message", "channel"}),
}
NUMBER_TYPES: Final = frozenset({int, float})
VALUE_TYPES: Final = frozenset({int, float, type(None)})


# --- names and topics -------------------------------------------------------------------------


def check_name(value: object, what: str) -> str:
    """A single topic level: a non-empty string without '/', '+', '#' or NUL."""
    if not isinstance(value, str) or not value:
        raise SchemaError(f"{what} must be a non-empty string, not {value!r}", "bad_name")
    for forbidden in FORBIDDEN_IN_NAMES:
        if forbidden in value:
            raise SchemaError(f"{what} {value!r} must not contain {forbidden!r}", "bad_name")
    return value


def check_prefix(prefix: object) -> str:
    """One or more topic levels joined by '/'; must not start with '$' (broker-reserved)."""
    if not isinstance(prefix, str) or not prefix:
        raise SchemaError(f"topic prefix must be a non-empty string, not {prefix!r}", "bad_name")
    if prefix.startswith("$"):
        raise SchemaError(f"topic prefix {prefix!r} must not start with '$'", "bad_name")
    for level in prefix.split("/"):
        check_name(level, f"topic prefix {prefix!r}: level")
    return prefix


def check_kind(kind: object, what: str = "kind") -> Kind:
    if kind not in KINDS:
        raise SchemaError(f"{what} must be one of {', '.join(KINDS)}, not {kind!r}", "bad_kind")
    return kind  # type: ignore[return-value]


def data_topic(prefix: str, gateway: str, kind: str, asset: str) -> str:
    """`<prefix>/<gateway>/<kind>/<asset>`; a gap part uses asset "_"."""
    check_prefix(prefix)
    check_name(gateway, "gateway")
    check_kind(kind)
    check_name(asset, "asset")
    return f"{prefix}/{gateway}/{kind}/{asset}"


def status_topic(prefix: str, gateway: str) -> str:
    """The gateway's retained status (its last will says offline)."""
    return f"{check_prefix(prefix)}/{check_name(gateway, 'gateway')}/status"


def ack_topic(prefix: str, gateway: str) -> str:
    """The receiver's retained acknowledgement for one gateway."""
    return f"{check_prefix(prefix)}/{check_name(gateway, 'gateway')}/ack"


def shared_subscription(group: str, prefix: str) -> str:
    """What receivers subscribe to: every data topic, shared among the group's members."""
    return f"$share/{check_name(group, 'group')}/{check_prefix(prefix)}/+/+/+"


@dataclass(frozen=True, slots=True)
class DataTopic:
    prefix: str
    gateway: str
    kind: Kind
    asset: str


def parse_data_topic(topic: str) -> DataTopic:
    """Split a data topic (the prefix may have several levels); SchemaError("bad_topic")."""
    levels = topic.rsplit("/", 3)
    if len(levels) != 4:
        raise SchemaError(f"topic {topic!r} is not <prefix>/<gateway>/<kind>/<asset>", "bad_topic")
    prefix, gateway, kind, asset = levels
    try:
        return DataTopic(
            prefix=check_prefix(prefix),
            gateway=check_name(gateway, "gateway"),
            kind=check_kind(kind),
            asset=check_name(asset, "asset"),
        )
    except SchemaError as exc:
        raise SchemaError(f"topic {topic!r}: {exc}", "bad_topic") from exc


# --- parts ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Part:
    """One (kind, asset) slice of the range (lo, hi] of one gateway's outbox.

    `records` are (seq, record) in increasing seq order, all with lo < seq <= hi; a gap part has
    none. `part` counts from 0 to parts - 1. Not comparable with == (feature values are arrays).
    """

    gateway: str
    lo: int
    hi: int
    part: int
    parts: int
    kind: Kind
    asset: str
    records: list[SeqRecord] = field(default_factory=list)

    def topic(self, prefix: str) -> str:
        return data_topic(prefix, self.gateway, self.kind, self.asset)

    @property
    def where(self) -> str:
        """How error messages name this part."""
        return (
            f"part {self.part}/{self.parts} of ({self.lo}, {self.hi}] "
            f"from {self.gateway}/{self.kind}/{self.asset}"
        )


def record_kind(record: object) -> Kind:
    if isinstance(record, FeatureVector):
        return "features"
    if isinstance(record, Score):
        return "scores"
    if isinstance(record, Alert):
        return "alerts"
    raise SchemaError(f"a {type(record).__name__} is not a record the uplink sends", "bad_record")


def split_range(gateway: str, lo: int, hi: int, rows: Sequence[SeqRecord]) -> list[Part]:
    """The parts that send the range (lo, hi]: `rows` are all the records the gateway still has
    with lo < seq <= hi, in increasing seq order.

    One part per (kind, asset) present, ordered by kind (features, scores, alerts) then asset, so
    the same set of groups always gets the same part numbers; a range with no rows is one gap
    part.
    """
    check_name(gateway, "gateway")
    check_range(lo, hi, f"range of {gateway}")
    groups: dict[tuple[Kind, str], list[SeqRecord]] = {}
    previous = lo
    for seq, record in rows:
        check_seq(seq, previous, hi, f"range ({lo}, {hi}] of {gateway}")
        previous = seq
        kind = record_kind(record)
        asset = check_name(record.asset, f"asset of the {kind} record with seq {seq}")
        groups.setdefault((kind, asset), []).append((seq, record))
    if not groups:
        return [Part(gateway, lo, hi, 0, 1, "gap", GAP_ASSET, [])]
    keys = sorted(groups, key=lambda key: (RECORD_KINDS.index(key[0]), key[1]))
    return [
        Part(gateway, lo, hi, index, len(keys), kind, asset, groups[kind, asset])
        for index, (kind, asset) in enumerate(keys)
    ]


def check_range(lo: object, hi: object, where: str) -> tuple[int, int]:
    low = check_int(lo, f"{where}: lo")
    high = check_int(hi, f"{where}: hi")
    if low < 0 or high <= low:
        raise SchemaError(f"{where}: the range ({low}, {high}] must have 0 <= lo < hi")
    return low, high


def check_seq(seq: object, previous: int, hi: int, where: str) -> int:
    """A seq above the previous one (or lo) and at most hi."""
    value = check_int(seq, f"{where}: seq")
    if value <= previous or value > hi:
        raise SchemaError(
            f"{where}: seq {value} is not above the previous seq {previous} and at most {hi}"
        )
    return value


def check_int(value: object, what: str) -> int:
    if type(value) is not int:
        raise SchemaError(f"{what} must be an integer, not {value!r}")
    return value


# --- encoding ---------------------------------------------------------------------------------


def encode_part(part: Part) -> bytes:
    """JSON (UTF-8) for one part; SchemaError if the part breaks the protocol's rules."""
    check_part(part)
    body: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "gateway": part.gateway,
        "lo": part.lo,
        "hi": part.hi,
        "part": part.part,
        "parts": part.parts,
        "kind": part.kind,
        "asset": part.asset,
    }
    if part.kind == "features":
        body["schemas"], body["records"] = encode_features(part)
    else:
        body["records"] = [encode_record(seq, record, part) for seq, record in part.records]
    return dump_json(body, part.where)


def check_part(part: Part) -> None:
    """The rules decode_part enforces, for a Part built by hand."""
    check_name(part.gateway, "gateway")
    check_kind(part.kind)
    check_name(part.asset, "asset")
    check_range(part.lo, part.hi, part.where)
    check_part_number(part.part, part.parts, part.where)
    check_gap_rules(part, part.where)
    previous = part.lo
    for seq, record in part.records:
        previous = check_seq(seq, previous, part.hi, part.where)
        if record_kind(record) != part.kind or record.asset != part.asset:
            raise SchemaError(
                f"{part.where}: seq {seq} is a {record_kind(record)} record of {record.asset!r}"
            )


def check_gap_rules(part: Part, where: str) -> None:
    """A gap is a range's only part, on asset "_", without records; other parts have records."""
    if part.kind == "gap":
        if part.records or part.parts != 1 or part.asset != GAP_ASSET:
            raise SchemaError(f"{where}: a gap is the only part, asset '_', no records")
    elif not part.records:
        raise SchemaError(f"{where}: has no records (an empty range is a gap part)")


def check_part_number(part: object, parts: object, where: str) -> None:
    number = check_int(part, f"{where}: part")
    count = check_int(parts, f"{where}: parts")
    if not 0 <= number < count:
        raise SchemaError(f"{where}: part {number} of {count} must have 0 <= part < parts")


def encode_features(part: Part) -> tuple[list[list[str]], list[dict[str, Any]]]:
    schema_index: dict[tuple[str, ...], int] = {}
    records = []
    for seq, record in part.records:
        assert isinstance(record, FeatureVector)  # check_part made sure
        index = schema_index.setdefault(record.names, len(schema_index))
        values = np.asarray(record.values, dtype=np.float64)
        if values.shape != (len(record.names),):
            raise SchemaError(
                f"{part.where}: seq {seq} has {len(record.names)} names "
                f"but values of shape {values.shape}"
            )
        records.append(
            {
                "seq": seq,
                "t": finite(record.window_end, f"{part.where}: seq {seq}: t"),
                "schema": index,
                "values": encode_values(values),
            }
        )
    return [list(names) for names in schema_index], records


def encode_values(values: np.ndarray[Any, np.dtype[np.float64]]) -> list[float | None]:
    """NaN and infinities as null (JSON has no such numbers)."""
    listed: list[float | None] = values.tolist()
    if bool(np.isfinite(values).all()):
        return listed
    return [value if value is not None and math.isfinite(value) else None for value in listed]


def encode_record(seq: int, record: UplinkRecord, part: Part) -> dict[str, Any]:
    where = f"{part.where}: seq {seq}"
    if isinstance(record, Score):
        return {
            "seq": seq,
            "t": finite(record.t, f"{where}: t"),
            "model_id": record.model_id,
            "error": number_or_null(record.error),
            "threshold": number_or_null(record.threshold),
            "anomalous": bool(record.anomalous),
            "contributors": list(record.contributors),
        }
    if isinstance(record, Alert):
        return {
            "seq": seq,
            "t": finite(record.t, f"{where}: t"),
            "severity": record.severity,
            "kind": record.kind,
            "message": record.message,
            "channel": record.channel,
        }
    raise SchemaError(f"{where}: a {type(record).__name__} in a {part.kind} part")


def finite(value: float, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise SchemaError(f"{what} must be finite, not {value!r}")
    return number


def number_or_null(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def dump_json(body: Mapping[str, Any], where: str) -> bytes:
    try:
        text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError (lone surrogates) is a ValueError
        raise SchemaError(f"{where}: cannot be encoded as JSON: {exc}") from exc


# --- decoding ---------------------------------------------------------------------------------


def refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def load_json(payload: bytes, where: str) -> dict[str, Any]:
    """A JSON object from UTF-8 bytes; NaN/Infinity literals are refused ("bad_json")."""
    try:
        body = json.loads(payload.decode("utf-8"), parse_constant=refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SchemaError(f"{where}: not UTF-8 JSON: {exc}", "bad_json") from exc
    if not isinstance(body, dict):
        raise SchemaError(f"{where}: not a JSON object", "bad_json")
    return body


def check_keys(body: Mapping[str, Any], expected: frozenset[str], where: str) -> None:
    if body.keys() == expected:  # the common case, in one set comparison (a hot path)
        return
    missing = sorted(expected - body.keys())
    unknown = sorted(body.keys() - expected)
    if missing:
        raise SchemaError(f"{where}: missing field(s) {', '.join(missing)}", "missing_field")
    if unknown:
        raise SchemaError(f"{where}: unknown field(s) {', '.join(unknown)}", "unknown_field")


def check_version(body: Mapping[str, Any], where: str) -> None:
    version = body.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise SchemaError(
            f"{where}: v is {version!r}; this release reads v {PROTOCOL_VERSION}", "bad_version"
        )


def decode_part(payload: bytes, topic: str) -> Part:
    """Parse and check one part received on `topic`.

    Refused with SchemaError: a topic that is not a data topic ("bad_topic"), bytes that are not
    a UTF-8 JSON object ("bad_json"), another protocol version ("bad_version"), a payload whose
    gateway differs from the topic's ("gateway_mismatch") or whose kind or asset differ
    ("topic_mismatch"), and any field that breaks the rules (the message names it).
    """
    where_topic = parse_data_topic(topic)
    where = f"payload on {topic}"
    body = load_json(payload, where)
    check_version(body, where)
    if body.get("gateway") != where_topic.gateway:
        raise SchemaError(
            f"{where}: gateway {body.get('gateway')!r} does not match the topic's "
            f"{where_topic.gateway!r}",
            "gateway_mismatch",
        )
    if body.get("kind") != where_topic.kind or body.get("asset") != where_topic.asset:
        raise SchemaError(
            f"{where}: kind/asset {body.get('kind')!r}/{body.get('asset')!r} do not match "
            f"the topic's {where_topic.kind}/{where_topic.asset}",
            "topic_mismatch",
        )
    check_keys(body, PART_KEYS[where_topic.kind], where)
    lo, hi = check_range(body["lo"], body["hi"], where)
    check_part_number(body["part"], body["parts"], where)
    part = Part(
        gateway=where_topic.gateway,
        lo=lo,
        hi=hi,
        part=body["part"],
        parts=body["parts"],
        kind=where_topic.kind,
        asset=where_topic.asset,
        records=decode_records(body, where_topic.kind, where_topic.asset, where),
    )
    check_gap_rules(part, where)
    previous = lo
    for index, (seq, _) in enumerate(part.records):
        previous = check_seq(seq, previous, hi, f"{where}: records[{index}]")
    return part


def decode_records(body: Mapping[str, Any], kind: Kind, asset: str, where: str) -> list[SeqRecord]:
    records = body["records"]
    if not isinstance(records, list):
        raise SchemaError(f"{where}: records must be a list")
    if kind == "gap":
        if records:
            raise SchemaError(f"{where}: a gap is the only part, asset '_', no records")
        return []
    if kind == "features":
        schemas = decode_schemas(body["schemas"], where)
        return [
            decode_feature(item, schemas, asset, f"{where}: records[{i}]")
            for i, item in enumerate(records)
        ]
    decode = decode_score if kind == "scores" else decode_alert
    return [decode(item, asset, f"{where}: records[{i}]") for i, item in enumerate(records)]


def decode_schemas(schemas: object, where: str) -> list[tuple[str, ...]]:
    if not isinstance(schemas, list):
        raise SchemaError(f"{where}: schemas must be a list of lists of names")
    decoded = []
    for i, names in enumerate(schemas):
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise SchemaError(f"{where}: schemas[{i}] must be a list of strings")
        decoded.append(tuple(names))
    return decoded


def record_fields(item: object, kind: str, where: str) -> tuple[dict[str, Any], int, float]:
    """The record's fields, seq and (finite) t, after checking its keys."""
    if not isinstance(item, dict):
        raise SchemaError(f"{where}: must be an object")
    check_keys(item, RECORD_KEYS[kind], where)
    return item, check_int(item["seq"], f"{where}: seq"), check_time(item["t"], f"{where}: t")


def check_time(value: object, what: str) -> float:
    if type(value) not in NUMBER_TYPES or not math.isfinite(value):  # type: ignore[arg-type]
        raise SchemaError(f"{what} must be a finite number, not {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise SchemaError(f"{what} must be a string, not {value!r}")
    return value


def decode_feature(
    item: object, schemas: Sequence[tuple[str, ...]], asset: str, where: str
) -> SeqRecord:
    fields, seq, t = record_fields(item, "features", where)
    index = check_int(fields["schema"], f"{where}: schema")
    if not 0 <= index < len(schemas):
        raise SchemaError(f"{where}: schema {index} is not an index into schemas")
    names = schemas[index]
    values = fields["values"]
    if not isinstance(values, list) or len(values) != len(names):
        raise SchemaError(f"{where}: values must be a list of {len(names)} numbers or nulls")
    if not set(map(type, values)) <= VALUE_TYPES:
        bad = next(i for i, value in enumerate(values) if type(value) not in VALUE_TYPES)
        raise SchemaError(f"{where}: values[{bad}] must be a number or null, not {values[bad]!r}")
    array = np.array(values, dtype=np.float64)  # null -> NaN
    return seq, FeatureVector(asset=asset, window_end=t, names=names, values=array)


def decode_score(item: object, asset: str, where: str) -> SeqRecord:
    fields, seq, t = record_fields(item, "scores", where)
    anomalous = fields["anomalous"]
    if not isinstance(anomalous, bool):
        raise SchemaError(f"{where}: anomalous must be true or false, not {anomalous!r}")
    contributors = fields["contributors"]
    if not isinstance(contributors, list) or not all(isinstance(c, str) for c in contributors):
        raise SchemaError(f"{where}: contributors must be a list of strings")
    score = Score(
        asset=asset,
        t=t,
        model_id=check_str(fields["model_id"], f"{where}: model_id"),
        error=number_or_nan(fields["error"], f"{where}: error"),
        threshold=number_or_nan(fields["threshold"], f"{where}: threshold"),
        anomalous=anomalous,
        contributors=tuple(contributors),
    )
    return seq, score


def number_or_nan(value: object, what: str) -> float:
    if value is None:
        return math.nan
    if type(value) not in NUMBER_TYPES:
        raise SchemaError(f"{what} must be a number or null, not {value!r}")
    return float(value)  # type: ignore[arg-type]


def decode_alert(item: object, asset: str, where: str) -> SeqRecord:
    fields, seq, t = record_fields(item, "alerts", where)
    severity = fields["severity"]
    if severity not in SEVERITIES:
        raise SchemaError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
    channel = fields["channel"]
    alert = Alert(
        asset=asset,
        t=t,
        severity=severity,
        kind=check_str(fields["kind"], f"{where}: kind"),
        message=check_str(fields["message"], f"{where}: message"),
        channel=None if channel is None else check_str(channel, f"{where}: channel"),
    )
    return seq, alert


# --- acknowledgement and status ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """The receiver has committed every record of `gateway` with seq <= `seq` (or it was
    declared evicted): the gateway may delete them."""

    gateway: str
    seq: int


ACK_KEYS: Final = frozenset({"v", "gateway", "seq"})


def encode_ack(gateway: str, seq: int) -> bytes:
    check_name(gateway, "gateway")
    if check_int(seq, "ack seq") < 0:
        raise SchemaError(f"ack seq must not be negative, not {seq}")
    return dump_json({"v": PROTOCOL_VERSION, "gateway": gateway, "seq": seq}, "ack")


def decode_ack(payload: bytes, gateway: str | None = None) -> Ack:
    """Parse an ack; if `gateway` is given, an ack for another gateway is refused."""
    where = "ack" if gateway is None else f"ack for {gateway}"
    body = load_json(payload, where)
    check_version(body, where)
    check_keys(body, ACK_KEYS, where)
    ack = Ack(check_name(body["gateway"], f"{where}: gateway"), check_int(body["seq"], where))
    if ack.seq < 0:
        raise SchemaError(f"{where}: seq must not be negative, not {ack.seq}")
    if gateway is not None and ack.gateway != gateway:
        raise SchemaError(f"{where}: is for gateway {ack.gateway!r}", "gateway_mismatch")
    return ack


ONLINE: Final = "online"
OFFLINE: Final = "offline"
STATUS_RESERVED: Final = frozenset({"v", "gateway", "state"})


@dataclass(frozen=True, slots=True)
class Status:
    """A gateway's retained status: `state` (online, offline, ...) plus free-form fields."""

    gateway: str
    state: str
    fields: Mapping[str, object] = field(default_factory=dict)


def encode_status(gateway: str, state: str, **fields: object) -> bytes:
    """`fields` must be JSON values (no NaN); v, gateway and state are reserved."""
    check_name(gateway, "gateway")
    check_name(state, "status state")
    reserved = sorted(STATUS_RESERVED & fields.keys())
    if reserved:
        raise SchemaError(f"status of {gateway}: field(s) {', '.join(reserved)} are reserved")
    body = {"v": PROTOCOL_VERSION, "gateway": gateway, "state": state, **fields}
    return dump_json(body, f"status of {gateway}")


def decode_status(payload: bytes) -> Status:
    body = load_json(payload, "status")
    check_version(body, "status")
    gateway = check_name(body.get("gateway"), "status: gateway")
    state = check_name(body.get("state"), f"status of {gateway}: state")
    fields = {key: value for key, value in body.items() if key not in STATUS_RESERVED}
    return Status(gateway, state, fields)


__all__ = [
    "GAP_ASSET",
    "KINDS",
    "OFFLINE",
    "ONLINE",
    "PROTOCOL_VERSION",
    "Ack",
    "DataTopic",
    "Kind",
    "Part",
    "SchemaError",
    "SeqRecord",
    "Status",
    "UplinkRecord",
    "ack_topic",
    "data_topic",
    "decode_ack",
    "decode_part",
    "decode_status",
    "encode_ack",
    "encode_part",
    "encode_status",
    "parse_data_topic",
    "shared_subscription",
    "split_range",
    "status_topic",
]
