"""How a FeatureVector is laid out in the database.

The feature names (often ~1,000 per asset) are stored once per (asset, names) in `feature_schemas`;
each row keeps only a schema id and its values as one float64 little-endian BLOB, so NaN and
infinities survive bit for bit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from appliance.records import FeatureVector, FloatArray

VALUES_DTYPE = np.dtype("<f8")


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """A checked FeatureVector with its values encoded; names stay a tuple because encoding ~1,000
    names as JSON costs more than the insert: that happens once per new schema (encode_names)."""

    asset: str
    window_end: float
    names: tuple[str, ...]
    values_f64le: bytes


def encode_feature_vector(vector: FeatureVector) -> FeatureRow:
    """Check and encode one vector; ValueError names what is wrong (a bug upstream, not I/O)."""
    values = np.asarray(vector.values)
    if values.ndim != 1 or values.shape[0] != len(vector.names):
        raise ValueError(
            f"feature vector for {vector.asset!r} has {len(vector.names)} names "
            f"but values of shape {values.shape}"
        )
    if not math.isfinite(vector.window_end):
        raise ValueError(f"feature vector for {vector.asset!r} has window_end {vector.window_end}")
    return FeatureRow(
        asset=vector.asset,
        window_end=float(vector.window_end),
        names=tuple(vector.names),
        values_f64le=np.ascontiguousarray(values, dtype=VALUES_DTYPE).tobytes(),
    )


def encode_names(names: tuple[str, ...]) -> str:
    """Canonical JSON for a names tuple: equal tuples give equal strings (the UNIQUE key)."""
    return json.dumps(list(names), ensure_ascii=False, separators=(",", ":"))


def decode_names(names_json: str) -> tuple[str, ...]:
    names = json.loads(names_json)
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError(f"feature names are not a JSON list of strings: {names_json[:80]!r}")
    return tuple(names)


def decode_values(values_f64le: bytes) -> FloatArray:
    return np.frombuffer(values_f64le, dtype=VALUES_DTYPE).astype(np.float64)
