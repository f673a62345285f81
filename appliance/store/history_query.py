"""One asset's stored history between two times, downsampled on the gateway for the status page.

The range is cut into at most MAX_BUCKETS equal buckets; each bucket with data gives the min, max
and mean of what fell into it, so a one-window peak survives any zoom level. Scores are
aggregated in SQL over every row (the scores_by_asset_t index covers the columns, so a week of
scores is read from the index alone). Feature values live in one BLOB per window (~8 bytes per
feature), so reading every window of a week would read gigabytes: each bucket reads at most
FEATURE_ROWS_PER_BUCKET windows spread evenly over it (every window of an hour at one window a
second; a series says when it was sampled). Alarm episodes come from the anomaly alerts (raised,
escalated, cleared), the alerts themselves are listed newest first up to a limit.

Runs as one read job on the store's thread (Database.read), never on the event loop.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.records import Alert
from appliance.store.codec import VALUES_DTYPE, decode_alert
from appliance.store.database import Database
from appliance.store.outbox import FeatureSchemas, names_by_schema_id

MAX_BUCKETS = 500
FEATURE_ROWS_PER_BUCKET = 8
MAX_ALERTS = 200
EPISODE_KINDS = ("anomaly_raised", "anomaly_escalated", "anomaly_cleared")

SCORE_BUCKETS = """
SELECT CAST((t - ?1) / ?2 AS INTEGER) AS bucket, count(*), min(error), max(error), avg(error),
       avg(threshold), sum(anomalous)
FROM scores WHERE asset = ?3 AND t >= ?1 AND t < ?4
GROUP BY bucket ORDER BY bucket
"""
# At most ?5 windows per bucket, evenly spread: window n of a bucket holding `total` is read
# when n * ?5 / total steps to the next integer at n + 1 (every window when total <= ?5, else
# exactly ?5 of them). The numbering reads only the index; only those windows' values are read.
FEATURE_SAMPLE = """
WITH numbered AS (
    SELECT seq, CAST((window_end - ?1) / ?2 AS INTEGER) AS bucket,
           (row_number() OVER win) - 1 AS n, count(*) OVER win AS total
    FROM features WHERE asset = ?3 AND window_end >= ?1 AND window_end < ?4
    WINDOW win AS (PARTITION BY CAST((window_end - ?1) / ?2 AS INTEGER))
)
SELECT numbered.bucket, numbered.total, f.schema_id, f.values_f64le
FROM numbered JOIN features AS f ON f.seq = numbered.seq
WHERE numbered.n * ?5 / numbered.total < (numbered.n + 1) * ?5 / numbered.total
ORDER BY f.window_end
"""
LATEST_CONTRIBUTORS = """
SELECT contributors_json FROM scores
WHERE asset = ? AND t >= ? AND t < ? AND anomalous = 1 ORDER BY t DESC LIMIT 1
"""
EPISODE_FILTER = f"kind IN ({', '.join(repr(kind) for kind in EPISODE_KINDS)})"
EPISODE_BEFORE = f"""
SELECT t, kind, severity FROM alerts WHERE asset = ? AND t < ? AND {EPISODE_FILTER}
ORDER BY t DESC LIMIT 1
"""
EPISODE_EVENTS = f"""
SELECT t, kind, severity FROM alerts WHERE asset = ? AND t >= ? AND t < ? AND {EPISODE_FILTER}
ORDER BY t
"""
ALERTS_IN_RANGE = """
SELECT asset, t, severity, kind, channel, message FROM alerts
WHERE asset = ? AND t >= ? AND t < ? ORDER BY t DESC LIMIT ?
"""
ALERT_COUNT = "SELECT count(*) FROM alerts WHERE asset = ? AND t >= ? AND t < ?"


@dataclass(frozen=True)
class Buckets:
    """[start, end) cut into `count` equal buckets."""

    start: float
    end: float
    count: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end) and self.end > self.start):
            raise ValueError(f"history range [{self.start}, {self.end}) is empty or not finite")
        if not 1 <= self.count <= MAX_BUCKETS:
            raise ValueError(f"history buckets: {self.count}, expected 1 to {MAX_BUCKETS}")

    @property
    def width(self) -> float:
        return (self.end - self.start) / self.count

    def centre(self, bucket: int) -> float:
        return self.start + (bucket + 0.5) * self.width


@dataclass
class Series:
    """Per bucket with data (time = the bucket's centre): min, max and mean of its values and the
    number of windows in it. None where every value was missing (NaN)."""

    t: list[float] = field(default_factory=list)
    min: list[float | None] = field(default_factory=list)
    max: list[float | None] = field(default_factory=list)
    mean: list[float | None] = field(default_factory=list)
    windows: list[int] = field(default_factory=list)


@dataclass
class ScoreSeries(Series):
    threshold: list[float | None] = field(default_factory=list)
    """The mean threshold over the bucket."""
    anomalous: list[int] = field(default_factory=list)
    """Windows scored anomalous in the bucket."""


@dataclass(frozen=True)
class Episode:
    """An alarm from its raise to its clear (end None: still open at the range's end)."""

    start: float
    end: float | None
    severity: str


@dataclass(frozen=True)
class AssetHistory:
    asset: str
    buckets: Buckets
    score: ScoreSeries
    features: dict[str, Series]
    sampled: bool
    """True if some bucket held more windows than were read for its features."""
    contributors: tuple[str, ...]
    """The features the newest anomalous score in the range named (the alarm text's)."""
    episodes: list[Episode]
    alerts: list[Alert]
    """Newest first, at most MAX_ALERTS."""
    alerts_left_off: int


class HistoryQuery:
    """Reads one asset's history; the feature-schema cache is used on the store's thread only."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._schemas = FeatureSchemas()

    async def asset_history(
        self,
        asset: str,
        buckets: Buckets,
        features: Sequence[str],
        contributors: int = 0,
        at_most: int | None = None,
    ) -> AssetHistory:
        """Scores, the named `features`, episodes and alerts of `asset` in `buckets`. Up to
        `contributors` features the newest alarm in the range names go first, and at most
        `at_most` features in all."""
        return await self._db.read(
            f"the history of {asset}",
            lambda db: read_asset_history(
                db, self._schemas, asset, buckets, features, contributors, at_most
            ),
        )


def read_asset_history(
    db: sqlite3.Connection,
    schemas: FeatureSchemas,
    asset: str,
    buckets: Buckets,
    features: Sequence[str],
    contributors: int = 0,
    at_most: int | None = None,
) -> AssetHistory:
    named = latest_contributors(db, asset, buckets)[:contributors]
    wanted = tuple(dict.fromkeys([*named, *features]))[:at_most]
    feature_series, sampled = read_feature_series(db, schemas, asset, buckets, wanted)
    alerts, left_off = read_alerts_in_range(db, asset, buckets)
    return AssetHistory(
        asset=asset,
        buckets=buckets,
        score=read_score_series(db, asset, buckets),
        features=feature_series,
        sampled=sampled,
        contributors=named,
        episodes=read_episodes(db, asset, buckets),
        alerts=alerts,
        alerts_left_off=left_off,
    )


def read_score_series(db: sqlite3.Connection, asset: str, buckets: Buckets) -> ScoreSeries:
    series = ScoreSeries()
    parameters = (buckets.start, buckets.width, asset, buckets.end)
    for bucket, count, low, high, mean, threshold, anomalous in db.execute(
        SCORE_BUCKETS, parameters
    ):
        series.t.append(buckets.centre(int(bucket)))
        series.windows.append(int(count))
        series.min.append(_number(low))
        series.max.append(_number(high))
        series.mean.append(_number(mean))
        series.threshold.append(_number(threshold))
        series.anomalous.append(int(anomalous))
    return series


def read_feature_series(
    db: sqlite3.Connection,
    schemas: FeatureSchemas,
    asset: str,
    buckets: Buckets,
    names: tuple[str, ...],
) -> tuple[dict[str, Series], bool]:
    """The named features bucketed, and whether any bucket was sampled."""
    series = {name: Series() for name in names}
    if not names:
        return series, False
    parameters = (buckets.start, buckets.width, asset, buckets.end, FEATURE_ROWS_PER_BUCKET)
    rows = db.execute(FEATURE_SAMPLE, parameters).fetchall()
    columns = _columns_by_schema(db, schemas, {int(row[2]) for row in rows}, names)
    by_bucket: dict[int, tuple[int, list[Any]]] = {}
    for bucket, total, schema_id, blob in rows:
        values = np.frombuffer(blob, dtype=VALUES_DTYPE)
        picked = np.array([values[i] if i >= 0 else math.nan for i in columns[int(schema_id)]])
        by_bucket.setdefault(int(bucket), (int(total), []))[1].append(picked)
    sampled = False
    for bucket, (total, picked_rows) in sorted(by_bucket.items()):
        sampled = sampled or total > len(picked_rows)
        matrix = np.vstack(picked_rows)
        for column, name in enumerate(names):
            _append_stats(series[name], buckets.centre(bucket), total, matrix[:, column])
    return series, sampled


def _columns_by_schema(
    db: sqlite3.Connection, schemas: FeatureSchemas, schema_ids: set[int], names: Sequence[str]
) -> dict[int, list[int]]:
    """For each schema, the position of each name in its vectors (-1 where it has none)."""
    columns = {}
    for schema_id, schema_names in names_by_schema_id(db, schemas, schema_ids).items():
        positions = {name: index for index, name in enumerate(schema_names)}
        columns[schema_id] = [positions.get(name, -1) for name in names]
    return columns


def _append_stats(series: Series, t: float, windows: int, values: Any) -> None:
    finite = values[np.isfinite(values)]
    series.t.append(t)
    series.windows.append(windows)
    if len(finite) == 0:
        series.min.append(None)
        series.max.append(None)
        series.mean.append(None)
        return
    series.min.append(float(finite.min()))
    series.max.append(float(finite.max()))
    series.mean.append(float(finite.mean()))


def latest_contributors(db: sqlite3.Connection, asset: str, buckets: Buckets) -> tuple[str, ...]:
    row = db.execute(LATEST_CONTRIBUTORS, (asset, buckets.start, buckets.end)).fetchone()
    if row is None:
        return ()
    named = json.loads(row[0])
    return tuple(str(name) for name in named) if isinstance(named, list) else ()


def read_episodes(db: sqlite3.Connection, asset: str, buckets: Buckets) -> list[Episode]:
    """Alarm episodes overlapping the range; one open at its start begins at its raise."""
    before = db.execute(EPISODE_BEFORE, (asset, buckets.start)).fetchall()
    events = db.execute(EPISODE_EVENTS, (asset, buckets.start, buckets.end)).fetchall()
    episodes: list[Episode] = []
    start: float | None = None
    severity = "warning"
    for t, kind, level in [*before, *events]:
        if kind == "anomaly_cleared":
            if start is not None:
                episodes.append(Episode(start, float(t), severity))
            start = None
        else:
            start = float(t) if start is None else start
            severity = str(level)
    if start is not None:
        episodes.append(Episode(start, None, severity))
    return episodes


def read_alerts_in_range(
    db: sqlite3.Connection, asset: str, buckets: Buckets
) -> tuple[list[Alert], int]:
    """The newest MAX_ALERTS alerts of the range, and how many older ones were left off."""
    window = (asset, buckets.start, buckets.end)
    rows = db.execute(ALERTS_IN_RANGE, (*window, MAX_ALERTS)).fetchall()
    total = int(db.execute(ALERT_COUNT, window).fetchone()[0])
    return [decode_alert(row) for row in rows], total - len(rows)


def _number(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None
