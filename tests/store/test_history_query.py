"""The status page's history read back from a real SQLite store: records written through the store
writer's Recorder, downsampled into buckets that keep each bucket's min and max, with alarm
episodes from the anomaly alerts; and the SQL uses the history indexes."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from appliance.records import Alert, FeatureVector, Score
from appliance.store import Store
from appliance.store.history_query import (
    ALERTS_IN_RANGE,
    FEATURE_ROWS_PER_BUCKET,
    FEATURE_SAMPLE,
    SCORE_BUCKETS,
    Buckets,
)

T0 = 1_800_000_000.0
NAMES = ("accel_x.rms", "accel_x.peak", "temp.mean")


def vector(t: float, rms: float, asset: str = "pump-1") -> FeatureVector:
    return FeatureVector(asset, t, NAMES, np.array([rms, 2 * rms, 40.0]))


def score(t: float, error: float, anomalous: bool = False) -> Score:
    return Score("pump-1", t, "ae@1", error, 2.5, anomalous, ("accel_x.rms",) if anomalous else ())


async def test_scores_keep_each_buckets_min_and_max(store: Store) -> None:
    errors = [1.0 + (i % 7) * 0.01 for i in range(1000)]
    errors[437] = 50.0  # a one-window spike
    errors[612] = 0.001  # and a one-window dip
    await store.recorder.add_records(
        [score(T0 + i, e, anomalous=e > 2.5) for i, e in enumerate(errors)]
    )
    history = await store.history_query.asset_history(
        "pump-1", Buckets(T0, T0 + 1000, 50), features=(), contributors=3
    )
    series = history.score
    assert len(series.t) == 50 and sum(series.windows) == 1000
    assert max(v for v in series.max if v is not None) == 50.0
    assert min(v for v in series.min if v is not None) == 0.001
    spike_bucket = 437 // 20
    assert series.max[spike_bucket] == 50.0 and series.anomalous[spike_bucket] == 1
    assert series.t[spike_bucket] == pytest.approx(T0 + (spike_bucket + 0.5) * 20)
    assert series.threshold == [2.5] * 50
    assert sum(series.anomalous) == 1
    assert history.contributors == ("accel_x.rms",)


async def test_features_exact_up_to_the_rows_read_per_bucket(store: Store) -> None:
    rms = [0.1] * 1000
    rms[437] = 9.0
    await store.recorder.add_features([vector(T0 + i, v) for i, v in enumerate(rms)])
    per_bucket = FEATURE_ROWS_PER_BUCKET // 2
    buckets = Buckets(T0, T0 + 1000, 1000 // per_bucket)
    history = await store.history_query.asset_history("pump-1", buckets, ["accel_x.rms"])
    series = history.features["accel_x.rms"]
    assert not history.sampled
    assert len(series.t) == buckets.count and sum(series.windows) == 1000
    assert max(v for v in series.max if v is not None) == 9.0
    assert series.min[437 // per_bucket] == 0.1
    assert series.mean[437 // per_bucket] == pytest.approx(
        (9.0 + 0.1 * (per_bucket - 1)) / per_bucket
    )

    # More windows per bucket than are read: bounded reads, the flag says so.
    coarse = await store.history_query.asset_history(
        "pump-1", Buckets(T0, T0 + 1000, 10), ["accel_x.rms", "temp.mean"]
    )
    assert coarse.sampled and coarse.features["temp.mean"].mean == [40.0] * 10
    assert coarse.features["accel_x.rms"].windows == [100] * 10


async def test_a_range_without_data_is_empty_and_another_asset_is_not_mixed_in(
    store: Store,
) -> None:
    await store.recorder.add_records([vector(T0 + i, 1.0, asset="fan-3") for i in range(10)])
    await store.recorder.add_records([score(T0 + i, 1.0) for i in range(10)])
    empty = await store.history_query.asset_history(
        "pump-1", Buckets(T0 - 3600, T0, 500), ["accel_x.rms"]
    )
    assert empty.score.t == [] and empty.features["accel_x.rms"].t == []
    assert empty.episodes == [] and empty.alerts == [] and empty.alerts_left_off == 0
    other = await store.history_query.asset_history(
        "pump-1", Buckets(T0, T0 + 10, 10), ["accel_x.rms"]
    )
    assert other.features["accel_x.rms"].t == [] and len(other.score.t) == 10


async def test_alarm_episodes_and_alerts(store: Store, make_alert: Callable[..., Alert]) -> None:
    await store.recorder.add_records(
        [
            make_alert(T0 - 50, kind="anomaly_raised", severity="warning"),  # before the range
            make_alert(T0 + 10, kind="anomaly_escalated"),
            make_alert(T0 + 20, kind="anomaly_cleared"),
            make_alert(T0 + 30, kind="flatline_raised", channel="accel_x"),  # not an episode
            make_alert(T0 + 60, kind="anomaly_raised", severity="warning"),
            make_alert(T0 + 70, kind="anomaly_raised", asset="fan-3"),
        ]
    )
    history = await store.history_query.asset_history(
        "pump-1", Buckets(T0, T0 + 100, 100), features=()
    )
    episodes = [(e.start, e.end, e.severity) for e in history.episodes]
    assert episodes == [(T0 - 50, T0 + 20, "critical"), (T0 + 60, None, "warning")]
    assert [a.t for a in history.alerts] == [T0 + 60, T0 + 30, T0 + 20, T0 + 10]  # newest first
    assert history.alerts[1].channel == "accel_x"


def test_buckets_refuse_an_empty_or_unbounded_range() -> None:
    with pytest.raises(ValueError, match="empty"):
        Buckets(T0, T0, 10)
    with pytest.raises(ValueError, match="buckets"):
        Buckets(T0, T0 + 1, 501)


async def test_the_history_sql_uses_the_history_indexes(
    store: Store, store_path: Path, make_score: Callable[..., Score]
) -> None:
    await store.recorder.add_records([make_score(T0 + i) for i in range(100)])
    await store.recorder.add_features([vector(T0 + i, 1.0) for i in range(100)])
    with contextlib.closing(sqlite3.connect(store_path)) as db:
        plans = {
            name: " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", parameters))
            for name, sql, parameters in [
                ("scores", SCORE_BUCKETS, (T0, 1.0, "pump-1", T0 + 100)),
                ("features", FEATURE_SAMPLE, (T0, 1.0, "pump-1", T0 + 100, 8)),
                ("alerts", ALERTS_IN_RANGE, ("pump-1", T0, T0 + 100, 10)),
            ]
        }
    assert "COVERING INDEX scores_by_asset_t" in plans["scores"], plans["scores"]
    assert "COVERING INDEX features_by_asset_window_end" in plans["features"], plans["features"]
    assert "INDEX alerts_by_asset_t" in plans["alerts"], plans["alerts"]
