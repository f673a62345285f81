"""Scores and alerts beside features: one sequence, one transaction, read per table or merged."""

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import StoreError
from appliance.records import Alert, FeatureVector, Score
from appliance.store import Store, StoredRecord, StoreSettings

VectorFactory = Callable[..., FeatureVector]  # the fixtures of conftest.py
ScoreFactory = Callable[..., Score]
AlertFactory = Callable[..., Alert]


def assert_same_score(stored: Score, original: Score) -> None:
    """Equal, where a non-finite error/threshold is expected back as NaN."""
    for name in ("error", "threshold"):
        want = getattr(original, name)
        got = getattr(stored, name)
        if math.isfinite(want):
            assert got == want, name
        else:
            assert math.isnan(got), name
    assert replace(stored, error=0.0, threshold=0.0) == replace(original, error=0.0, threshold=0.0)


def assert_same_record(stored: StoredRecord, original: StoredRecord) -> None:
    assert type(stored) is type(original)
    if isinstance(stored, Score) and isinstance(original, Score):
        assert_same_score(stored, original)
    elif isinstance(stored, FeatureVector) and isinstance(original, FeatureVector):
        assert (stored.asset, stored.window_end, stored.names) == (
            original.asset,
            original.window_end,
            original.names,
        )
        assert stored.values.tobytes() == original.values.tobytes()
    else:
        assert stored == original


async def test_mixed_batch_gets_consecutive_seqs_in_order_and_reads_back_equal(
    store: Store, make_vector: VectorFactory
) -> None:
    vector = make_vector(10.0)
    routine = Score("pump-1", 10.0, "ae-v3", 0.8, math.nan, False)
    anomalous = Score("pump-1", 11.0, "ae-v3", math.inf, 2.5, True, ("ch03_f01", "ch07_f12"))
    machine_alert = Alert("pump-1", 11.0, "critical", "anomaly_raised", "pump-1 is anomalous")
    channel_alert = Alert("pump-1", 11.5, "warning", "flatline_raised", "ch03 is flat", "ch03")
    records: list[StoredRecord] = [vector, routine, anomalous, machine_alert, channel_alert]

    seqs = await store.recorder.add_records(records)
    scores = await store.history.scores()
    alerts = await store.history.alerts()
    features = await store.history.features()

    assert seqs == [1, 2, 3, 4, 5]
    assert [seq for seq, _ in features] == [1]
    assert [seq for seq, _ in scores] == [2, 3]
    assert [seq for seq, _ in alerts] == [4, 5]
    assert_same_record(features[0][1], vector)
    assert_same_score(scores[0][1], routine)
    assert_same_score(scores[1][1], anomalous)
    assert math.isnan(scores[0][1].threshold)
    assert math.isnan(scores[1][1].error), "an infinite error is stored as NULL, read as NaN"
    assert scores[1][1].contributors == ("ch03_f01", "ch07_f12")
    assert [alert for _, alert in alerts] == [machine_alert, channel_alert]
    assert alerts[0][1].channel is None
    assert alerts[1][1].channel == "ch03"
    assert store.stats.rows_written == 5
    assert store.stats.write_transactions == 1


async def test_outbox_merges_the_three_tables_in_seq_order(
    store: Store,
    make_vector: VectorFactory,
    make_score: ScoreFactory,
    make_alert: AlertFactory,
) -> None:
    records: list[StoredRecord] = []
    for t in range(4):
        records += [make_vector(float(t)), make_score(float(t), anomalous=t == 2)]
        if t == 2:
            records.append(make_alert(float(t)))
    await store.recorder.add_records(records[:5])
    await store.recorder.add_records(records[5:])

    everything = await store.history.outbox()
    middle = await store.history.outbox(after_seq=3, limit=3)
    past_the_end = await store.history.outbox(after_seq=len(records))

    assert [seq for seq, _ in everything] == list(range(1, len(records) + 1))
    for (_, stored), original in zip(everything, records, strict=True):
        assert_same_record(stored, original)
    assert [seq for seq, _ in middle] == [4, 5, 6]
    assert [type(record) for _, record in middle] == [Score, FeatureVector, Score]
    assert past_the_end == []


async def test_scores_and_alerts_filter_by_asset_after_seq_and_limit(
    store: Store, make_score: ScoreFactory, make_alert: AlertFactory
) -> None:
    records: list[StoredRecord] = []
    for t in range(6):
        asset = "pump-1" if t % 2 else "fan-2"
        records += [make_score(float(t), asset=asset), make_alert(float(t), asset=asset)]
    await store.recorder.add_records(records)

    pump_scores = await store.history.scores(asset="pump-1")
    later_alerts = await store.history.alerts(after_seq=8)
    first_score = await store.history.scores(limit=1)

    assert [seq for seq, _ in pump_scores] == [3, 7, 11]
    assert all(score.asset == "pump-1" for _, score in pump_scores)
    assert [seq for seq, _ in later_alerts] == [10, 12]
    assert [seq for seq, _ in first_score] == [1]


@pytest.mark.parametrize(
    ("malformed", "reason"),
    [
        (Score("pump-1", math.nan, "ae-v3", 1.0, 2.0, False), "t nan"),
        (Score("pump-1", 1.0, "ae-v3", 1.0, 2.0, False, (3, 4)), "contributors"),  # type: ignore[arg-type]
        (Alert("pump-1", 1.0, "fatal", "anomaly_raised", "boom"), "unknown severity"),  # type: ignore[arg-type]
        (Alert("pump-1", math.inf, "warning", "anomaly_raised", "boom"), "t inf"),
        (FeatureVector("pump-1", 1.0, ("a", "b"), np.array([1.0])), "2 names"),
    ],
)
async def test_a_malformed_record_is_refused_before_anything_of_its_batch_is_written(
    store: Store, make_score: ScoreFactory, malformed: StoredRecord, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        await store.recorder.add_records([make_score(0.0), malformed])

    assert await store.history.outbox() == []
    assert await store.delivery.latest_seq() == 0
    assert store.stats.write_errors == 0


async def test_failed_write_of_a_mixed_batch_stores_none_of_it(
    store: Store, make_vector: VectorFactory, make_score: ScoreFactory, make_alert: AlertFactory
) -> None:
    await store.set_max_page_count_for_tests(1)  # the vector needs new pages: SQLITE_FULL

    with pytest.raises(StoreError, match="database or disk is full"):
        await store.recorder.add_records([make_score(0.0), make_alert(0.0), make_vector(0.0)])

    await store.set_max_page_count_for_tests(None)
    assert await store.history.outbox() == []
    assert await store.delivery.latest_seq() == 0
    assert store.stats.write_errors == 1
    assert await store.recorder.add_records([make_alert(1.0)]) == [1]


async def test_seqs_are_never_reused_after_scores_and_features_are_evicted(
    store_path: Path, make_vector: VectorFactory, make_score: ScoreFactory
) -> None:
    settings = StoreSettings(store_path, retention_s=10.0)
    async with await Store.open(settings) as store:
        await store.recorder.add_records([make_vector(1.0), make_score(1.0), make_score(2.0)])
        report = await store.recorder.enforce_limits(now=1_000.0)
        remaining = await store.history.outbox()
        next_seqs = await store.recorder.add_records([make_score(1_000.0), make_vector(1_000.0)])

    assert (report.evicted_features, report.evicted_scores) == (1, 2)
    assert remaining == []
    assert next_seqs == [4, 5]
