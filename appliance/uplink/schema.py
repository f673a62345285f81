"""Uplink topics and payloads, shared by the gateway's publisher and the cloud receiver (pure).

The protocol (ranges, parts, acknowledgement) is described in appliance/uplink/PROTOCOL.md.
Everything here takes values or bytes in and gives values or bytes out; nothing does I/O.
Every refusal is a SchemaError whose message names the field and where it was found.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Iterable, Mapping, Sequence
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
CONTAINER_TYPES: Final = frozenset({list, dict})

MAX_SEQ: Final = 2**53 - 1
"""The highest seq, lo or hi a payload may carry: exact in a float64 and far inside SQLite's and
PostgreSQL's 64-bit integers (at 1,000 records a second a gateway needs 285,000 years)."""
MAX_PARTS: Final = 4096
"""Parts of one range: one per (kind, asset), so 3 kinds of up to 1,365 assets."""
MIN_TIME: Final = 0.0
MAX_TIME: Final = 4_102_444_800.0
"""Record times must lie in [1970-01-01, 2100-01-01) UTC: a gateway whose clock was never set
still delivers, and no time overflows a database's timestamp."""
MAX_PART_BYTES: Final = 16 * 1024 * 1024
"""decode_part's default size limit; a gateway's max_message_bytes must stay below it."""
MAX_JSON_DEPTH: Final = 16
"""load_json's default nesting limit (a part nests 4 deep: object, records, record, values)."""
PART_JSON_DEPTH: Final = 4


# --- names and topics -------------------------------------------------------------------------


def shown(value: object) -> str:
    """A bounded repr of an outside value for an error message (never huge, never recursive)."""
    return SHOWN.repr(value)


def make_shown() -> reprlib.Repr:
    shower = reprlib.Repr()
    shower.maxstring = shower.maxother = shower.maxlong = 60
    shower.maxlevel, shower.maxlist, shower.maxdict = 2, 4, 4
    return shower


SHOWN: Final = make_shown()


def check_name(value: object, what: str) -> str:
    """A single topic level: a non-empty string without '/', '+', '#' or NUL."""
    if not isinstance(value, str) or not value:
        raise SchemaError(f"{what} must be a non-empty string, not {shown(value)}", "bad_name")
    for forbidden in FORBIDDEN_IN_NAMES:
        if forbidden in value:
            raise SchemaError(f"{what} {shown(value)} must not contain {forbidden!r}", "bad_name")
    return check_text(value, what)


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
    if type(kind) is not str or kind not in KINDS:
        raise SchemaError(
            f"{what} must be one of {', '.join(KINDS)}, not {shown(kind)}", "bad_kind"
        )
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


@dataclass(frozen=True, slots=True)
class PartHeader:
    """What a part says about itself before its records: enough to account for it in its range
    even when its records cannot be stored (PROTOCOL.md, "Refused parts")."""

    gateway: str
    lo: int
    hi: int
    part: int
    parts: int
    kind: Kind
    asset: str

    @property
    def where(self) -> str:
        return f"part {self.part}/{self.parts} of ({self.lo}, {self.hi}] from {self.gateway}"


class RecordsError(SchemaError):
    """A part whose header is valid (`header`) but whose records or other fields are not."""

    def __init__(self, message: str, reason: str, header: PartHeader) -> None:
        super().__init__(message, reason)
        self.header = header


@dataclass(frozen=True, slots=True, eq=False)
class Part(PartHeader):
    """One (kind, asset) slice of the range (lo, hi] of one gateway's outbox: its header's fields,
    then its records.

    `records` are (seq, record) in increasing seq order, all with lo < seq <= hi; a gap part has
    none. `part` counts from 0 to parts - 1. Not comparable with == (feature values are arrays):
    a part equals only itself, not another part with the same header.
    """

    records: list[SeqRecord] = field(default_factory=list)

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def topic(self, prefix: str) -> str:
        return data_topic(prefix, self.gateway, self.kind, self.asset)

    @property
    def header(self) -> PartHeader:
        return PartHeader(self.gateway, self.lo, self.hi, self.part, self.parts, self.kind,
                          self.asset)  # fmt: skip

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
    if high > MAX_SEQ:
        raise SchemaError(f"{where}: hi {high} is above the highest seq {MAX_SEQ}", "implausible")
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
        raise SchemaError(f"{what} must be an integer, not {shown(value)}")
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
        raise SchemaError(
            f"{where}: part {shown(number)} of {shown(count)} must have 0 <= part < parts"
        )
    if count > MAX_PARTS:
        raise SchemaError(f"{where}: parts {count} is above {MAX_PARTS}", "implausible")


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


def load_json(
    payload: bytes,
    where: str,
    *,
    max_bytes: int | None = None,
    max_depth: int = MAX_JSON_DEPTH,
) -> dict[str, Any]:
    """A JSON object from UTF-8 bytes, for any bytes an outsider may send: refused with
    SchemaError ("too_large", "too_deep", "bad_json") and never another exception. NaN/Infinity
    literals are refused; a number too large for a float reads as an infinity or a big int, which
    the field checks refuse."""
    if max_bytes is not None and len(payload) > max_bytes:
        raise SchemaError(f"{where}: {len(payload)} bytes, more than {max_bytes}", "too_large")
    try:
        body = json.loads(payload.decode("utf-8"), parse_constant=refuse_constant)
    except RecursionError:
        raise SchemaError(
            f"{where}: JSON nested too deep to parse (at most {max_depth} levels)", "too_deep"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise SchemaError(f"{where}: not UTF-8 JSON: {exc}", "bad_json") from None
    if json_depth(body, max_depth) > max_depth:
        raise SchemaError(f"{where}: JSON nested deeper than {max_depth} levels", "too_deep")
    if not isinstance(body, dict):
        raise SchemaError(f"{where}: not a JSON object", "bad_json")
    return body


def json_depth(value: object, limit: int) -> int:
    """How deep a decoded JSON value nests (a scalar is 0, [] is 1), counted up to limit + 1.
    Level by level, without recursion; lists of scalars are skipped at C speed."""
    level: list[Any] = [value] if type(value) in CONTAINER_TYPES else []
    depth = 0
    while level and depth <= limit:
        depth += 1
        below: list[Any] = []
        for container in level:
            items: Iterable[Any] = container.values() if type(container) is dict else container
            if not CONTAINER_TYPES.isdisjoint(map(type, items)):
                below.extend(item for item in items if type(item) in CONTAINER_TYPES)
        level = below
    return depth


def check_keys(body: Mapping[str, Any], expected: frozenset[str], where: str) -> None:
    if body.keys() == expected:  # the common case, in one set comparison (a hot path)
        return
    missing = sorted(expected - body.keys())
    unknown = sorted(body.keys() - expected)
    if missing:
        raise SchemaError(f"{where}: missing field(s) {', '.join(missing)}", "missing_field")
    if unknown:
        listed = ", ".join(shown(key) for key in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise SchemaError(f"{where}: unknown field(s) {listed}{more}", "unknown_field")


def check_version(body: Mapping[str, Any], where: str) -> None:
    version = body.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise SchemaError(
            f"{where}: v is {shown(version)}; this release reads v {PROTOCOL_VERSION}",
            "bad_version",
        )


def decode_part(payload: bytes, topic: str, max_bytes: int = MAX_PART_BYTES) -> Part:
    """Parse and check one part received on `topic`; safe for any bytes.

    Refused with SchemaError: a topic that is not a data topic ("bad_topic"), more than
    `max_bytes` ("too_large"), bytes that are not a UTF-8 JSON object nesting at most 4 deep
    ("bad_json", "too_deep"), another protocol version ("bad_version"), a payload whose gateway
    differs from the topic's ("gateway_mismatch") or whose kind or asset differ
    ("topic_mismatch"), a range or part number out of bounds ("implausible"). Once the header is
    valid, every other refusal is a RecordsError carrying it: a time outside [MIN_TIME, MAX_TIME)
    ("implausible"), text a database cannot store ("bad_text"), or any field that breaks the
    rules (the message names it).
    """
    where_topic = parse_data_topic(topic)
    where = f"payload on {topic}"
    body = load_json(payload, where, max_bytes=max_bytes, max_depth=PART_JSON_DEPTH)
    header = decode_header(body, where_topic, where)
    try:
        return decode_body(body, header, where)
    except SchemaError as exc:
        raise RecordsError(str(exc), exc.reason, header) from None


def decode_header(body: Mapping[str, Any], topic: DataTopic, where: str) -> PartHeader:
    check_version(body, where)
    if body.get("gateway") != topic.gateway:
        raise SchemaError(
            f"{where}: gateway {shown(body.get('gateway'))} does not match the topic's "
            f"{topic.gateway!r}",
            "gateway_mismatch",
        )
    if body.get("kind") != topic.kind or body.get("asset") != topic.asset:
        raise SchemaError(
            f"{where}: kind/asset {shown(body.get('kind'))}/{shown(body.get('asset'))} do not "
            f"match the topic's {topic.kind}/{topic.asset}",
            "topic_mismatch",
        )
    missing = sorted(HEADER_KEYS - body.keys())
    if missing:
        raise SchemaError(f"{where}: missing field(s) {', '.join(missing)}", "missing_field")
    lo, hi = check_range(body["lo"], body["hi"], where)
    check_part_number(body["part"], body["parts"], where)
    return PartHeader(topic.gateway, lo, hi, body["part"], body["parts"], topic.kind, topic.asset)


def decode_body(body: Mapping[str, Any], header: PartHeader, where: str) -> Part:
    check_keys(body, PART_KEYS[header.kind], where)
    part = Part(
        gateway=header.gateway,
        lo=header.lo,
        hi=header.hi,
        part=header.part,
        parts=header.parts,
        kind=header.kind,
        asset=header.asset,
        records=decode_records(body, header.kind, header.asset, where),
    )
    check_gap_rules(part, where)
    previous = header.lo
    for index, (seq, _) in enumerate(part.records):
        previous = check_seq(seq, previous, header.hi, f"{where}: records[{index}]")
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
        decoded.append(tuple(check_texts(names, f"{where}: schemas[{i}]")))
    return decoded


def record_fields(item: object, kind: str, where: str) -> tuple[dict[str, Any], int, float]:
    """The record's fields, seq and (finite) t, after checking its keys."""
    if not isinstance(item, dict):
        raise SchemaError(f"{where}: must be an object")
    check_keys(item, RECORD_KEYS[kind], where)
    return item, check_int(item["seq"], f"{where}: seq"), check_time(item["t"], f"{where}: t")


def finite_number(value: object, what: str) -> float:
    """A JSON number as a finite float: not a bool, not 1e400 (read as inf), not an integer too
    large for a float."""
    if type(value) not in NUMBER_TYPES:
        raise SchemaError(f"{what} must be a finite number, not {shown(value)}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:
        raise SchemaError(
            f"{what} must be a finite number, not an integer of {len(str(value))} digits"
        ) from None
    if not math.isfinite(number):
        raise SchemaError(f"{what} must be a finite number, not {shown(value)}")
    return number


def check_time(value: object, what: str) -> float:
    """UTC epoch seconds within [MIN_TIME, MAX_TIME)."""
    number = finite_number(value, what)
    if not MIN_TIME <= number < MAX_TIME:
        raise SchemaError(
            f"{what} {number} is outside 1970-01-01..2100-01-01 UTC "
            f"({MIN_TIME:.0f} <= t < {MAX_TIME:.0f})",
            "implausible",
        )
    return number


def check_text(value: str, what: str) -> str:
    """Text a database can encode: no lone surrogate (a JSON escape such as \\ud800 that is
    not half of a pair; the gateway's encoder cannot write one either)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SchemaError(
                f"{what} has a lone surrogate {shown(value[exc.start])} at character {exc.start}",
                "bad_text",
            ) from None
    return value


def check_texts(values: list[str], what: str) -> list[str]:
    """check_text on each (one pass over the joined text in the common, clean case)."""
    if "".join(values).isascii():
        return values
    for i, value in enumerate(values):
        check_text(value, f"{what}[{i}]")
    return values


def check_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise SchemaError(f"{what} must be a string, not {shown(value)}")
    return check_text(value, what)


def decode_feature(
    item: object, schemas: Sequence[tuple[str, ...]], asset: str, where: str
) -> SeqRecord:
    fields, seq, t = record_fields(item, "features", where)
    index = check_int(fields["schema"], f"{where}: schema")
    if not 0 <= index < len(schemas):
        raise SchemaError(f"{where}: schema {shown(index)} is not an index into schemas")
    names = schemas[index]
    values = fields["values"]
    if not isinstance(values, list) or len(values) != len(names):
        raise SchemaError(f"{where}: values must be a list of {len(names)} numbers or nulls")
    if not set(map(type, values)) <= VALUE_TYPES:
        bad = next(i for i, value in enumerate(values) if type(value) not in VALUE_TYPES)
        raise SchemaError(
            f"{where}: values[{bad}] must be a number or null, not {shown(values[bad])}"
        )
    try:
        array = np.array(values, dtype=np.float64)  # null -> NaN
    except OverflowError:  # an integer beyond float64
        array = None
    if array is None or bool(np.isinf(array).any()):
        bad = first_not_finite(values)
        finite_number(values[bad], f"{where}: values[{bad}]")  # raises, naming it
    assert array is not None
    return seq, FeatureVector(asset=asset, window_end=t, names=names, values=array)


def first_not_finite(values: list[Any]) -> int:
    """The index of the first value that is neither null nor a finite float."""
    for i, value in enumerate(values):
        try:
            if value is None or math.isfinite(float(value)):
                continue
        except OverflowError:
            pass
        return i
    raise AssertionError("every value is finite or null")


def decode_score(item: object, asset: str, where: str) -> SeqRecord:
    fields, seq, t = record_fields(item, "scores", where)
    anomalous = fields["anomalous"]
    if not isinstance(anomalous, bool):
        raise SchemaError(f"{where}: anomalous must be true or false, not {shown(anomalous)}")
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
        contributors=tuple(check_texts(contributors, f"{where}: contributors")),
    )
    return seq, score


def number_or_nan(value: object, what: str) -> float:
    """A finite number, or NaN for null."""
    if value is None:
        return math.nan
    if type(value) not in NUMBER_TYPES:
        raise SchemaError(f"{what} must be a number or null, not {shown(value)}")
    return finite_number(value, what)


def decode_alert(item: object, asset: str, where: str) -> SeqRecord:
    fields, seq, t = record_fields(item, "alerts", where)
    severity = fields["severity"]
    if type(severity) is not str or severity not in SEVERITIES:
        raise SchemaError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
    channel = fields["channel"]
    alert = Alert(
        asset=asset,
        t=t,
        severity=severity,  # type: ignore[arg-type]
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
    "MAX_PART_BYTES",
    "MAX_SEQ",
    "OFFLINE",
    "ONLINE",
    "PROTOCOL_VERSION",
    "Ack",
    "DataTopic",
    "Kind",
    "Part",
    "PartHeader",
    "RecordsError",
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
    "load_json",
    "parse_data_topic",
    "shared_subscription",
    "split_range",
    "status_topic",
]
