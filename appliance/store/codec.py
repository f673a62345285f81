"""How records and detector state are laid out in the database.

The feature names (often ~1,000 per asset) are stored once per (asset, names) in `feature_schemas`;
each row keeps only a schema id and its values as one float64 little-endian BLOB, so NaN and
infinities survive bit for bit. A Score's error and threshold are stored as NULL when not finite
(SQLite has no NaN) and read back as NaN; its contributors are a JSON list. Detector state is a
JSON object per (asset, kind).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, get_args

import numpy as np

from appliance.records import Alert, FeatureVector, FloatArray, Score, Severity

VALUES_DTYPE = np.dtype("<f8")
SEVERITIES: tuple[str, ...] = get_args(Severity)

StoredRecord = FeatureVector | Score | Alert


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


class ScoreRow(NamedTuple):
    """A checked Score as the columns of `scores` that follow seq."""

    asset: str
    t: float
    model_id: str
    error: float | None
    threshold: float | None
    anomalous: int
    contributors_json: str


class AlertRow(NamedTuple):
    """A checked Alert as the columns of `alerts` that follow seq."""

    asset: str
    t: float
    severity: str
    kind: str
    channel: str | None
    message: str


EncodedRecord = FeatureRow | ScoreRow | AlertRow


def encode_record(record: object) -> EncodedRecord:
    """Check and encode any storable record; ValueError says what is wrong with it."""
    if isinstance(record, FeatureVector):
        return encode_feature_vector(record)
    if isinstance(record, Score):
        return encode_score(record)
    if isinstance(record, Alert):
        return encode_alert(record)
    raise ValueError(f"a {type(record).__name__} is not a record the store keeps")


def encode_score(score: Score) -> ScoreRow:
    if score.anomalous not in (True, False):
        raise ValueError(f"score for {score.asset!r} has anomalous={score.anomalous!r}")
    if not all(isinstance(name, str) for name in score.contributors):
        raise ValueError(f"score for {score.asset!r} has contributors {score.contributors!r}")
    return ScoreRow(
        asset=score.asset,
        t=finite_time(score.t, f"score for {score.asset!r}"),
        model_id=score.model_id,
        error=finite_or_none(score.error, f"score for {score.asset!r}: error"),
        threshold=finite_or_none(score.threshold, f"score for {score.asset!r}: threshold"),
        anomalous=int(score.anomalous),
        contributors_json=json.dumps(list(score.contributors), ensure_ascii=False),
    )


def encode_alert(alert: Alert) -> AlertRow:
    if alert.severity not in SEVERITIES:
        raise ValueError(f"alert for {alert.asset!r} has unknown severity {alert.severity!r}")
    return AlertRow(
        asset=alert.asset,
        t=finite_time(alert.t, f"alert for {alert.asset!r}"),
        severity=alert.severity,
        kind=alert.kind,
        channel=alert.channel,
        message=alert.message,
    )


def finite_time(t: float, what: str) -> float:
    value = finite_or_none(t, what)
    if value is None:
        raise ValueError(f"{what} has t {t}")
    return value


def finite_or_none(value: float, what: str) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not a number: {value!r}") from exc
    return number if math.isfinite(number) else None


def decode_score(row: Sequence[Any]) -> Score:
    """A `scores` row without its seq back into a Score (NULL error/threshold -> NaN)."""
    asset, t, model_id, error, threshold, anomalous, contributors_json = row
    return Score(
        asset=str(asset),
        t=float(t),
        model_id=str(model_id),
        error=math.nan if error is None else float(error),
        threshold=math.nan if threshold is None else float(threshold),
        anomalous=bool(anomalous),
        contributors=tuple(str(name) for name in json.loads(contributors_json)),
    )


def decode_alert(row: Sequence[Any]) -> Alert:
    """An `alerts` row without its seq back into an Alert."""
    asset, t, severity, kind, channel, message = row
    return Alert(
        asset=str(asset),
        t=float(t),
        severity=severity,
        kind=str(kind),
        message=str(message),
        channel=None if channel is None else str(channel),
    )


def encode_state(state: Mapping[str, object]) -> str:
    """JSON for one detector state; ValueError if it holds something JSON cannot say."""
    try:
        return json.dumps(dict(state), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"detector state is not JSON-serialisable: {exc}") from exc


def decode_state(state_json: str) -> dict[str, object]:
    """ValueError (json.JSONDecodeError is one) unless `state_json` is a JSON object."""
    state = json.loads(state_json)
    if not isinstance(state, dict):
        raise ValueError(f"detector state is not a JSON object: {state_json[:80]!r}")
    return state
