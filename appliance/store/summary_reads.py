"""What the `summary` uplink profile reads from the store for one outbox range (PROTOCOL.md,
"Uplink profiles"), computed from the records already stored (no second feature pipeline):
the alarm episodes open at the range's start, the windows an alarm raised in the range
promotes from before it, and the per-minute aggregates the range's feature windows close.

A minute M of an asset is closed by the first of its feature windows (by seq) ending at or
after M + 60 s + CLOSE_LAG_S, and aggregates the asset's windows and scores of M stored up
to that window's seq: the same figures whenever, and in whatever range, it is sent again.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.records import Alert, FeatureVector, FloatArray, Score
from appliance.store.codec import StoredRecord, decode_score
from appliance.store.outbox import (
    FEATURE_COLUMNS,
    SCORE_COLUMNS,
    FeatureSchemas,
    feature_rows,
)
from appliance.uplink.schema.summary_part import MINUTE_S, MinuteSummary

CLOSE_LAG_S = 5.0
"""A minute is aggregated once a window this long after its end is stored (scores of its last
windows are written a little after the next windows' features)."""

Episode = tuple[str, str | None]
"""(family, channel): `<family>_raised` opens it, `<family>_cleared` closes it."""

# The newest raise or clear of each (family, channel) of an asset up to a seq (and before a
# time): SQLite returns the bare columns of the row holding max(seq).
LATEST_EPISODE_ALERTS = """
SELECT kind, channel, t, max(seq) FROM alerts
WHERE asset = ? AND seq <= ? AND t < ?
    AND (kind LIKE '%\\_raised' ESCAPE '\\' OR kind LIKE '%\\_cleared' ESCAPE '\\')
GROUP BY substr(kind, 1, length(kind) - CASE WHEN kind LIKE '%\\_raised' ESCAPE '\\' THEN 7
    ELSE 8 END), channel
"""
PREVIOUS_FEATURE_T = (
    "SELECT window_end FROM features WHERE asset = ? AND seq <= ? ORDER BY seq DESC LIMIT 1"
)
FEATURES_BETWEEN = (
    f"SELECT seq, {FEATURE_COLUMNS} FROM features WHERE asset = ? AND window_end >= ?"
    " AND window_end < ? AND seq <= ? ORDER BY seq"
)
SCORES_BETWEEN = (
    f"SELECT seq, {SCORE_COLUMNS} FROM scores WHERE asset = ? AND t >= ? AND t < ?"
    " AND seq <= ? ORDER BY seq"
)

RAISED_BETWEEN = (
    "SELECT 1 FROM alerts WHERE asset = ? AND t >= ? AND t < ? AND seq <= ?"
    " AND kind LIKE '%\\_raised' ESCAPE '\\' LIMIT 1"
)


@dataclass(frozen=True)
class SummaryInputs:
    """What the store knows about a range beyond its own records (one read, on the writer's
    thread); the range may then be cut shorter without reading again."""

    open_at_lo: dict[str, dict[Episode, float]] = field(default_factory=dict)
    """Per asset, the raise time of each episode open at the range's lo."""
    earlier: dict[str, list[tuple[int, StoredRecord]]] = field(default_factory=dict)
    """Per asset with a raise in the range: its windows and scores with seq <= lo from the
    earliest raise's time minus the margin on (promotion candidates)."""
    minutes: list[tuple[int, MinuteSummary]] = field(default_factory=list)
    """(closing seq, aggregate) of every minute a feature window of the range closes."""


def episode_family(kind: str) -> tuple[str, bool] | None:
    """("anomaly", True) for anomaly_raised, (.., False) for a clear, None for other kinds."""
    for suffix, opens in (("_raised", True), ("_cleared", False)):
        if kind.endswith(suffix):
            return kind.removesuffix(suffix), opens
    return None


def open_episodes(
    db: sqlite3.Connection, asset: str, up_to_seq: int, before_t: float = math.inf
) -> dict[Episode, float]:
    """The asset's episodes open after its alerts up to `up_to_seq` (and before `before_t`)."""
    rows = db.execute(LATEST_EPISODE_ALERTS, (asset, up_to_seq, before_t)).fetchall()
    opened = {}
    for kind, channel, t, _ in rows:
        family = episode_family(str(kind))
        if family is not None and family[1]:
            opened[family[0], channel] = float(t)
    return opened


def read_summary_inputs(
    db: sqlite3.Connection,
    schemas: FeatureSchemas,
    lo: int,
    records: list[tuple[int, StoredRecord]],
    margin_s: float,
) -> SummaryInputs:
    assets = sorted({record.asset for _, record in records})
    inputs = SummaryInputs()
    for asset in assets:
        inputs.open_at_lo[asset] = open_episodes(db, asset, lo)
        raises = [r.t for _, r in records if isinstance(r, Alert) and is_raise(r, asset)]
        if raises:
            earlier = windows_from(db, schemas, asset, min(raises) - margin_s, lo)
            episodes = episodes_up_to(db, asset, lo)
            inputs.earlier[asset] = [(seq, r) for seq, r in earlier
                                     if not sent_in_full(seq, r, episodes, margin_s)]  # fmt: skip
        features = [(seq, r) for seq, r in records
                    if isinstance(r, FeatureVector) and r.asset == asset]  # fmt: skip
        previous = db.execute(PREVIOUS_FEATURE_T, (asset, lo)).fetchone()
        previous_t = None if previous is None else float(previous[0])
        for seq, minute in closed_minutes(features, previous_t):
            summary = minute_summary(db, schemas, asset, minute, seq)
            if summary.windows or summary.scores:
                inputs.minutes.append((seq, summary))
    inputs.minutes.sort(key=lambda item: item[0])
    return inputs


RECENT_EPISODE_ALERTS = """
SELECT seq, kind, channel, t FROM alerts WHERE asset = ? AND seq <= ?
    AND (kind LIKE '%\\_raised' ESCAPE '\\' OR kind LIKE '%\\_cleared' ESCAPE '\\')
ORDER BY seq DESC LIMIT 500
"""


@dataclass(frozen=True)
class KnownEpisode:
    raise_seq: int
    raise_t: float
    clear_seq: int | None
    clear_t: float


def episodes_up_to(db: sqlite3.Connection, asset: str, up_to_seq: int) -> list[KnownEpisode]:
    """The asset's latest episodes (raise and clear, by seq) among its alerts up to a seq."""
    rows = db.execute(RECENT_EPISODE_ALERTS, (asset, up_to_seq)).fetchall()
    opened: dict[Episode, tuple[int, float]] = {}
    episodes = []
    for seq, kind, channel, t in reversed(rows):
        family = episode_family(str(kind))
        if family is None:
            continue
        key = (family[0], channel)
        if family[1]:  # the latest raise: the one a range's open episodes start from
            opened[key] = (int(seq), float(t))
        elif key in opened:
            raised = opened.pop(key)
            episodes.append(KnownEpisode(raised[0], raised[1], int(seq), float(t)))
    episodes += [KnownEpisode(seq, t, None, math.inf) for seq, t in opened.values()]
    return episodes


def sent_in_full(
    seq: int, record: StoredRecord, episodes: list[KnownEpisode], margin_s: float
) -> bool:
    """Whatever range carried this window knew an episode it lies in (raised before the window
    was stored, not cleared before that range began), so sent it in full: a raise later need
    not promote it again. Conservative: a window this cannot vouch for is promoted (a repeat is
    only a duplicate at the receiver)."""
    t = record.window_end if isinstance(record, FeatureVector) else record.t
    return any(
        e.raise_seq < seq
        and (e.clear_seq is None or e.clear_seq > seq)
        and e.raise_t - margin_s <= t <= e.clear_t
        for e in episodes
    )


def is_raise(record: StoredRecord, asset: str) -> bool:
    return isinstance(record, Alert) and record.asset == asset and record.kind.endswith("_raised")


def windows_from(
    db: sqlite3.Connection, schemas: FeatureSchemas, asset: str, since: float, up_to_seq: int
) -> list[tuple[int, StoredRecord]]:
    """The asset's feature windows and scores with t >= since and seq <= up_to_seq."""
    found: list[tuple[int, StoredRecord]] = [
        *window_rows(db, schemas, asset, since, math.inf, up_to_seq),
        *score_rows(db, asset, since, math.inf, up_to_seq),
    ]
    return sorted(found, key=lambda item: item[0])


def window_rows(
    db: sqlite3.Connection,
    schemas: FeatureSchemas,
    asset: str,
    since: float,
    until: float,
    up_to_seq: int,
) -> list[tuple[int, FeatureVector]]:
    rows = db.execute(FEATURES_BETWEEN, (asset, since, until, up_to_seq)).fetchall()
    return feature_rows(db, schemas, rows)


def score_rows(
    db: sqlite3.Connection, asset: str, since: float, until: float, up_to_seq: int
) -> list[tuple[int, Score]]:
    rows = db.execute(SCORES_BETWEEN, (asset, since, until, up_to_seq)).fetchall()
    return [(int(row[0]), decode_score(row[1:])) for row in rows]


def closed_minutes(
    features: Iterable[tuple[int, FeatureVector]], previous_t: float | None
) -> list[tuple[int, int]]:
    """(closing seq, minute start) for each minute the windows close, in order: a window ending
    at t closes every minute M with previous_t < M + 60 + CLOSE_LAG_S <= t, previous_t being
    the window before it (none before the asset's first window: nothing to close)."""
    closed: list[tuple[int, int]] = []
    for seq, vector in features:
        t = vector.window_end
        if previous_t is not None and t > previous_t:
            first = math.floor((previous_t - CLOSE_LAG_S) / MINUTE_S)
            last = math.floor((t - CLOSE_LAG_S) / MINUTE_S) - 1
            closed.extend(
                (seq, minute * MINUTE_S)
                for minute in range(first, last + 1)
                if previous_t < minute * MINUTE_S + MINUTE_S + CLOSE_LAG_S
                and minute * MINUTE_S <= previous_t  # later minutes have no window before t
            )
        previous_t = t if previous_t is None else max(previous_t, t)
    return closed


def minute_summary(
    db: sqlite3.Connection, schemas: FeatureSchemas, asset: str, minute: int, up_to_seq: int
) -> MinuteSummary:
    end = minute + MINUTE_S
    vectors = [v for _, v in window_rows(db, schemas, asset, minute, end, up_to_seq)]
    scores = [s for _, s in score_rows(db, asset, minute, end, up_to_seq)]
    raised = db.execute(RAISED_BETWEEN, (asset, minute, end, up_to_seq)).fetchone()
    in_alarm = raised is not None or bool(open_episodes(db, asset, up_to_seq, float(minute)))
    return aggregate(asset, minute, vectors, scores, in_alarm)


def aggregate(
    asset: str,
    minute: int,
    vectors: list[FeatureVector],
    scores: list[Score],
    in_alarm: bool,
) -> MinuteSummary:
    """min/mean/max per feature over the windows sharing the first window's names (NaN where
    every value was missing); the largest error and its threshold; anomalous scores."""
    names = vectors[0].names if vectors else ()
    same = [v.values for v in vectors if v.names == names]
    stack = np.vstack(same) if same else np.zeros((0, len(names)))
    errors = np.array([s.error for s in scores], dtype=np.float64)
    known = np.isfinite(errors)
    top = int(np.argmax(np.where(known, errors, -np.inf))) if known.any() else None
    return MinuteSummary(
        asset=asset,
        minute=minute,
        windows=len(same),
        names=names,
        minimum=nan_reduce(np.fmin.reduce, stack),
        mean=nan_mean(stack),
        maximum=nan_reduce(np.fmax.reduce, stack),
        scores=len(scores),
        max_error=math.nan if top is None else float(errors[top]),
        threshold=math.nan if top is None else float(scores[top].threshold),
        anomalous=sum(bool(s.anomalous) for s in scores),
        alarm=in_alarm or any(s.anomalous for s in scores),
    )


def nan_reduce(reduce: Callable[..., Any], stack: FloatArray) -> FloatArray:
    """fmin/fmax over the rows ignore NaN (NaN only where a column is all NaN)."""
    if len(stack) == 0:
        return np.zeros(stack.shape[1])
    return np.asarray(reduce(stack, axis=0), dtype=np.float64)


def nan_mean(stack: FloatArray) -> FloatArray:
    finite = np.isfinite(stack)
    counts = finite.sum(axis=0)
    sums = np.where(finite, stack, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
