"""A part's records as the columns of a binary part (PROTOCOL.md, "Wire formats"): seqs and
times delta-coded, feature values as one float32 block per part (byte-shuffled in layout 2),
schemas the receiver knows by reference, scores and alerts one column per field."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, Final

import numpy as np

from appliance.records import Alert, FeatureVector, Score
from appliance.uplink.errors import SchemaError
from appliance.uplink.schema.parts import Part
from appliance.uplink.schema.schema_refs import schema_ref

U64: Final = np.dtype("<u8")
F64: Final = np.dtype("<f8")
F32: Final = np.dtype("<f4")
SCHEMA_INDEX: Final = np.dtype("<u4")
FLOAT32_MAX: Final = float(np.finfo(np.float32).max)


def binary_columns(part: Part, known_schemas: Collection[bytes] = ()) -> dict[str, Any]:
    """The fields after the header (layout 2): "seq" and "t" for every kind, then the kind's
    own; a schema whose reference is in `known_schemas` goes by reference."""
    records = [record for _, record in part.records]
    times = [record.window_end if isinstance(record, FeatureVector) else record.t
             for record in records]  # fmt: skip
    columns: dict[str, Any] = {
        "seq": seq_deltas([seq for seq, _ in part.records], part.lo),
        "t": time_deltas(times, part.where),
    }
    if part.kind == "features":
        columns.update(feature_columns(part, known_schemas))
    elif part.kind == "scores":
        columns.update(score_columns([r for r in records if isinstance(r, Score)]))
    elif part.kind == "alerts":
        columns.update(alert_columns([r for r in records if isinstance(r, Alert)]))
    return columns


def seq_deltas(seqs: list[int], lo: int) -> bytes:
    """Each seq minus the one before it (the first minus lo), uint64 little-endian."""
    return np.diff(np.array([lo, *seqs], dtype=np.int64)).astype(U64).tobytes()


def time_deltas(times: list[float], where: str) -> bytes:
    """The float64 bit patterns of the (finite) times, each minus the one before it modulo
    2**64: exact, and a steady 1 s stride repeats the same 8 bytes, which deflate removes."""
    array = np.array(times, dtype=F64)
    if not bool(np.isfinite(array).all()):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise SchemaError(f"{where}: record {bad}: t must be finite, not {times[bad]!r}")
    bits = array.view(U64)
    return np.diff(bits, prepend=np.uint64(0)).tobytes()


def feature_columns(part: Part, known_schemas: Collection[bytes]) -> dict[str, Any]:
    """Names (or the reference of names the receiver knows) once per schema, a schema index per
    record, and every value of every record in one byte-shuffled block: float32, or float64 when
    a finite value lies beyond float32's range. NaN and infinities are sent as NaN (as JSON
    sends them as null)."""
    schema_index: dict[tuple[str, ...], int] = {}
    indexes, blocks = [], []
    for seq, record in part.records:
        assert isinstance(record, FeatureVector)  # check_part made sure
        values = feature_values(seq, record, part.where)
        indexes.append(schema_index.setdefault(record.names, len(schema_index)))
        blocks.append(values)
    values = np.concatenate(blocks)
    finite = np.isfinite(values)
    values = np.where(finite, values, np.nan)
    wide = bool((np.abs(values[finite]) > FLOAT32_MAX).any())
    dtype = F64 if wide else F32
    return {
        "schemas": [schema_or_ref(names, known_schemas) for names in schema_index],
        "schema": np.array(indexes, dtype=SCHEMA_INDEX).tobytes(),
        "dtype": "f8" if wide else "f4",
        "values": shuffled(values.astype(dtype)),
    }


def schema_or_ref(names: tuple[str, ...], known_schemas: Collection[bytes]) -> list[str] | bytes:
    ref = schema_ref(names)
    return ref if ref in known_schemas else list(names)


def shuffled(values: np.ndarray[Any, Any]) -> bytes:
    """Byte planes: every value's first byte, then every second byte, ... (the exponent bytes of
    similar numbers repeat, which deflate then finds: about 15 % fewer bytes for the demo's
    features)."""
    return values.view(np.uint8).reshape(-1, values.itemsize).T.tobytes()


def unshuffled(raw: bytes, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(dtype.itemsize, -1)
    return planes.T.copy().view(dtype).reshape(-1)


def feature_values(seq: int, record: FeatureVector, where: str) -> np.ndarray[Any, Any]:
    """The record's values as float64, one per name (SchemaError otherwise)."""
    values = np.asarray(record.values, dtype=np.float64)
    if values.shape != (len(record.names),):
        raise SchemaError(
            f"{where}: seq {seq} has {len(record.names)} names but values of shape {values.shape}"
        )
    return values


def float_column(numbers: list[float]) -> bytes:
    """float64 little-endian; infinities as NaN (JSON's null)."""
    return np.array([n if math.isfinite(n) else math.nan for n in numbers], dtype=F64).tobytes()


def score_columns(scores: list[Score]) -> dict[str, Any]:
    return {
        "model_id": [score.model_id for score in scores],
        "error": float_column([score.error for score in scores]),
        "threshold": float_column([score.threshold for score in scores]),
        "anomalous": bytes(bool(score.anomalous) for score in scores),
        "contributors": [list(score.contributors) for score in scores],
    }


def alert_columns(alerts: list[Alert]) -> dict[str, Any]:
    return {
        "severity": [alert.severity for alert in alerts],
        "alert_kind": [alert.kind for alert in alerts],
        "message": [alert.message for alert in alerts],
        "channel": [alert.channel for alert in alerts],
    }
