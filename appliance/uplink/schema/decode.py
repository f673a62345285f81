"""A part from the bytes received on a topic, safe for any bytes: the header first, so that a
part whose records are refused can still be accounted in its range (PROTOCOL.md, "Refused
parts")."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from appliance.records import Alert, FeatureVector, Score
from appliance.uplink.errors import SchemaError
from appliance.uplink.schema.binary_body import is_binary, load_binary
from appliance.uplink.schema.decode_binary import (
    BINARY_PART_KEYS,
    HEADER_KEYS,
    decode_binary_records,
)
from appliance.uplink.schema.json_body import check_keys, check_version, load_json
from appliance.uplink.schema.parts import (
    Part,
    PartHeader,
    RecordsError,
    SeqRecord,
    check_gap_rules,
)
from appliance.uplink.schema.schema_refs import SchemaBook, UnknownSchemas
from appliance.uplink.schema.summary_part import decode_summary_part
from appliance.uplink.schema.topics import DataTopic, parse_data_topic
from appliance.uplink.schema.values import (
    SEVERITIES,
    Kind,
    check_int,
    check_part_number,
    check_range,
    check_schemas,
    check_seqs,
    check_str,
    check_texts,
    check_time,
    finite_number,
    number_or_nan,
    shown,
)

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
VALUE_TYPES: Final = frozenset({int, float, type(None)})
MAX_PART_BYTES: Final = 16 * 1024 * 1024
"""decode_part's default size limit; a gateway's max_message_bytes must stay below it."""
PART_JSON_DEPTH: Final = 4


def decode_part(
    payload: bytes,
    topic: str,
    max_bytes: int = MAX_PART_BYTES,
    schemas: SchemaBook | None = None,
) -> Part:
    """Parse and check one part received on `topic`; safe for any bytes.

    A payload whose first byte is a binary layout's (binary_body.py) is read as binary, any
    other as JSON. Refused with SchemaError: a topic that is not a data topic ("bad_topic"),
    more than `max_bytes` sent or, binary, inflated ("too_large"), bytes that are not a UTF-8
    JSON object nesting at most 4 deep ("bad_json", "too_deep") or not a binary part's deflate
    and msgpack map ("bad_binary"), another protocol version or binary layout ("bad_version"),
    a payload whose gateway
    differs from the topic's ("gateway_mismatch") or whose kind or asset differ
    ("topic_mismatch"), a range or part number out of bounds ("implausible"). Once the header is
    valid, every other refusal is a RecordsError carrying it: a time outside [MIN_TIME, MAX_TIME)
    ("implausible"), text a database cannot store ("bad_text"), or any field that breaks the
    rules (the message names it). A binary part of layout 2 referring to a feature schema
    that is neither in it nor in `schemas` is refused with UnknownSchemas ("unknown_schema",
    carrying the header and the references; not a RecordsError: such a part must not be
    accounted); the names of every part read are learned into `schemas`.
    """
    where_topic = parse_data_topic(topic)
    where = f"payload on {topic}"
    binary = is_binary(payload)
    layout = 0
    if binary:
        layout, body = load_binary(payload, where, max_bytes=max_bytes)
    else:
        body = load_json(payload, where, max_bytes=max_bytes, max_depth=PART_JSON_DEPTH)
    header = decode_header(body, where_topic, where)
    try:
        if header.kind == "summary":
            return decode_summary_part(body, header, binary, where, schemas)
        if binary:
            check_keys(body, BINARY_PART_KEYS[header.kind], where)
            records = decode_binary_records(
                body, header.kind, header.asset, header.lo, where, layout, schemas
            )
        else:
            check_keys(body, PART_KEYS[header.kind], where)
            records = decode_records(body, header.kind, header.asset, where)
        return checked_part(header, records, where)
    except UnknownSchemas as exc:
        raise UnknownSchemas(str(exc), exc.refs, header) from None
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


def checked_part(header: PartHeader, records: list[SeqRecord], where: str) -> Part:
    """The part, once its records keep the gap and seq rules (both formats)."""
    part = Part(
        gateway=header.gateway,
        lo=header.lo,
        hi=header.hi,
        part=header.part,
        parts=header.parts,
        kind=header.kind,
        asset=header.asset,
        records=records,
    )
    check_gap_rules(part, where)
    check_seqs([seq for seq, _ in records], header.lo, header.hi, where)
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
        schemas = check_schemas(body["schemas"], where)
        return [
            decode_feature(item, schemas, asset, f"{where}: records[{i}]")
            for i, item in enumerate(records)
        ]
    decode = decode_score if kind == "scores" else decode_alert
    return [decode(item, asset, f"{where}: records[{i}]") for i, item in enumerate(records)]


def record_fields(item: object, kind: str, where: str) -> tuple[dict[str, Any], int, float]:
    """The record's fields, seq and (finite) t, after checking its keys."""
    if not isinstance(item, dict):
        raise SchemaError(f"{where}: must be an object")
    check_keys(item, RECORD_KEYS[kind], where)
    return item, check_int(item["seq"], f"{where}: seq"), check_time(item["t"], f"{where}: t")


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
