"""A part to bytes, binary or JSON (appliance/uplink/PROTOCOL.md, "Payloads")."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import numpy as np

from appliance.records import Alert, FeatureVector, Score
from appliance.uplink.errors import SchemaError
from appliance.uplink.schema.binary_body import dump_binary
from appliance.uplink.schema.encode_binary import binary_columns, feature_values
from appliance.uplink.schema.json_body import dump_json
from appliance.uplink.schema.parts import Part, UplinkRecord, check_part
from appliance.uplink.schema.summary_part import summary_fields
from appliance.uplink.schema.values import PROTOCOL_VERSION, WireFormat


def encode_part(
    part: Part, wire_format: WireFormat = "json", known_schemas: Collection[bytes] = ()
) -> bytes:
    """One part as binary (the gateway's default, [uplink] format; layout 2) or UTF-8 JSON;
    SchemaError if the part breaks the protocol's rules. In binary, a feature schema whose
    reference (schema_ref) is in `known_schemas` is sent by reference; JSON always carries the
    names."""
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
    if part.summary is not None:
        body |= summary_fields(part, part.summary, wire_format == "binary", known_schemas)
        if wire_format == "binary":
            return dump_binary(body, part.where)
        return dump_json(body, part.where)
    if wire_format == "binary":
        return dump_binary(body | binary_columns(part, known_schemas), part.where)
    if wire_format != "json":
        raise SchemaError(f"{part.where}: wire format {wire_format!r} is not binary or json")
    if part.kind == "features":
        body["schemas"], body["records"] = encode_features(part)
    else:
        body["records"] = [encode_record(seq, record, part) for seq, record in part.records]
    return dump_json(body, part.where)


def encode_features(part: Part) -> tuple[list[list[str]], list[dict[str, Any]]]:
    schema_index: dict[tuple[str, ...], int] = {}
    records = []
    for seq, record in part.records:
        assert isinstance(record, FeatureVector)  # check_part made sure
        index = schema_index.setdefault(record.names, len(schema_index))
        values = feature_values(seq, record, part.where)
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
