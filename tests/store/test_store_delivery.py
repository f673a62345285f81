"""Delivery bookkeeping: the acknowledged seq, outbox ranges and stats, and what eviction does to
delivered and undelivered rows."""

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from appliance.records import Alert, FeatureVector, Score
from appliance.store import MIGRATIONS, Store, StoredRecord, StoreSettings

VectorFactory = Callable[..., FeatureVector]  # the fixtures of conftest.py
ScoreFactory = Callable[..., Score]
AlertFactory = Callable[..., Alert]

PAGE = 4096


def file_size(path: Path) -> int:
    return path.stat().st_size


def kinds_stream(
    make_vector: VectorFactory, make_score: ScoreFactory, make_alert: AlertFactory, count: int
) -> list[StoredRecord]:
    """Per second: a vector, a routine score; every 4th second an anomalous score and an alert."""
    records: list[StoredRecord] = []
    for t in range(count):
        records.append(make_vector(float(t)))
        records.append(make_score(float(t), anomalous=t % 4 == 0))
        if t % 4 == 0:
            records.append(make_alert(float(t)))
    return records


# --- the acknowledged seq ----------------------------------------------------------------------


async def test_acknowledge_is_monotonic_and_survives_reopening(
    store_path: Path, make_score: ScoreFactory
) -> None:
    async with await Store.open(StoreSettings(store_path)) as store:
        assert await store.delivery.acked_seq() == 0
        await store.recorder.add_records([make_score(float(t)) for t in range(10)])
        assert await store.delivery.acknowledge(6) == 6
        assert await store.delivery.acknowledge(4) == 6, "a lower ack changes nothing"
        assert await store.delivery.acknowledge(6) == 6

    async with await Store.open(StoreSettings(store_path)) as store:
        assert await store.delivery.acked_seq() == 6
        assert (await store.delivery.outbox_stats()).acked_at is not None


async def test_an_ack_beyond_the_last_seq_or_negative_is_refused_and_changes_nothing(
    store: Store, make_score: ScoreFactory
) -> None:
    await store.recorder.add_records([make_score(float(t)) for t in range(3)])

    with pytest.raises(ValueError, match="last seq handed out is 3"):
        await store.delivery.acknowledge(4)
    with pytest.raises(ValueError, match="negative"):
        await store.delivery.acknowledge(-1)

    assert await store.delivery.acked_seq() == 0
    assert await store.delivery.acknowledge(3) == 3


async def test_outbox_stats_count_the_undelivered_rows_and_date_the_oldest(
    store: Store, make_vector: VectorFactory, make_score: ScoreFactory, make_alert: AlertFactory
) -> None:
    empty = await store.delivery.outbox_stats()
    records: list[StoredRecord] = [
        make_vector(100.0, asset="pump-1"),
        make_score(101.0, asset="fan-2"),
        make_alert(102.0, asset="pump-1"),
        make_vector(103.0, asset="fan-2"),
        make_score(99.0, asset="pump-1"),  # late: dates the backlog once it is the first score
        make_alert(105.0, asset="gw sensors"),
    ]
    await store.recorder.add_records(records)
    everything = await store.delivery.outbox_stats()
    await store.delivery.acknowledge(3)
    after_ack = await store.delivery.outbox_stats()
    await store.delivery.acknowledge(6)

    assert (empty.records, empty.oldest_t, empty.last_seq, empty.acked_seq) == (0, None, 0, 0)
    assert (everything.records, everything.oldest_t, everything.last_seq) == (6, 100.0, 6)
    assert (after_ack.records, after_ack.oldest_t, after_ack.acked_seq) == (3, 99.0, 3)
    assert (await store.delivery.outbox_stats()).records == 0
    assert (await store.delivery.outbox_stats()).oldest_t is None


async def test_outbox_range_covers_every_seq_up_to_its_end_including_evicted_ones(
    store_path: Path, make_vector: VectorFactory, make_score: ScoreFactory
) -> None:
    settings = StoreSettings(store_path, retention_s=50.0)
    async with await Store.open(settings) as store:
        # seqs 1-4 routine scores at t=0 (evicted by age), 5-10 at t=100 (kept)
        await store.recorder.add_records([make_score(0.0) for _ in range(4)])
        await store.recorder.add_records([make_score(100.0) for _ in range(6)])
        await store.recorder.enforce_limits(now=100.0)

        full = await store.delivery.outbox_range(0, limit=3)
        tail = await store.delivery.outbox_range(8, limit=3)
        bounded = await store.delivery.outbox_range(0, limit=100, up_to_seq=6)
        evicted_only = await store.delivery.outbox_range(0, limit=100, up_to_seq=4)
        nothing = await store.delivery.outbox_range(10, limit=3)

    assert full is not None and (full.lo, full.hi) == (0, 7)
    assert [seq for seq, _ in full.records] == [5, 6, 7], "limit reached: ends at its last row"
    assert tail is not None and (tail.lo, tail.hi) == (8, 10)
    assert bounded is not None and (bounded.hi, [s for s, _ in bounded.records]) == (6, [5, 6])
    assert evicted_only is not None and (evicted_only.hi, evicted_only.records) == (4, [])
    assert nothing is None


async def test_outbox_range_ends_at_the_last_seq_handed_out_even_if_it_was_evicted(
    store: Store, make_score: ScoreFactory
) -> None:
    await store.recorder.add_records([make_score(float(t)) for t in range(5)])
    with closing(sqlite3.connect(store.settings.path)) as db, db:
        db.execute("DELETE FROM scores WHERE seq = 5")  # as an eviction would

    found = await store.delivery.outbox_range(0, limit=10)

    assert found is not None and found.hi == 5
    assert [seq for seq, _ in found.records] == [1, 2, 3, 4]


# --- eviction of delivered and undelivered rows -------------------------------------------------


async def test_size_cap_evicts_every_delivered_row_before_any_undelivered_one(
    store_path: Path,
    make_vector: VectorFactory,
    make_score: ScoreFactory,
    make_alert: AlertFactory,
) -> None:
    records = kinds_stream(make_vector, make_score, make_alert, 60)
    async with await Store.open(StoreSettings(store_path)) as store:
        seqs = await store.recorder.add_records(records)
        acked = seqs[len(seqs) // 2]
        await store.delivery.acknowledge(acked)
    kinds = dict(zip(seqs, records, strict=True))
    size = file_size(store_path)

    # Lower the cap until the first undelivered row goes.
    cap = size
    while True:
        cap -= 4 * PAGE
        async with await Store.open(StoreSettings(store_path, max_bytes=cap)) as store:
            report = await store.recorder.enforce_limits(now=1000.0)
            kept = [seq for seq, _ in await store.history.outbox(limit=len(records))]
            stats = await store.delivery.outbox_stats()
        delivered_kept = [seq for seq in kept if seq <= acked]
        if report.lost_before_delivery:
            break
        # While delivered rows remain, no undelivered row has gone.
        assert [seq for seq in kept if seq > acked] == seqs[acked:], cap
        assert stats.lost_before_delivery == 0

    assert delivered_kept == [], "the first undelivered row went only after every delivered one"
    lost = [seq for seq in seqs[acked:] if seq not in kept]
    assert all(isinstance(kinds[seq], FeatureVector) for seq in lost), "features go first"
    assert stats.lost_before_delivery == report.lost_before_delivery == len(lost)
    assert stats.records == len(seqs) - acked - len(lost)


async def test_delivered_rows_leave_in_the_written_order_features_first_alerts_last(
    store_path: Path,
    make_vector: VectorFactory,
    make_score: ScoreFactory,
    make_alert: AlertFactory,
) -> None:
    records = kinds_stream(make_vector, make_score, make_alert, 40)
    async with await Store.open(StoreSettings(store_path)) as store:
        seqs = await store.recorder.add_records(records)
        await store.delivery.acknowledge(seqs[-1])
    classes = ("features", "routine scores", "anomalous scores", "alerts")

    def class_of(record: StoredRecord) -> str:
        if isinstance(record, FeatureVector):
            return "features"
        if isinstance(record, Score):
            return "anomalous scores" if record.anomalous else "routine scores"
        return "alerts"

    written = {name: [s for s, r in zip(seqs, records, strict=True) if class_of(r) == name]
               for name in classes}  # fmt: skip
    with capture_logs() as logs:
        for cap in range(file_size(store_path) - PAGE, 0, -2 * PAGE):
            async with await Store.open(StoreSettings(store_path, max_bytes=cap)) as store:
                report = await store.recorder.enforce_limits(now=1000.0)
                kept = {seq for seq, _ in await store.history.outbox(limit=len(records))}
            for position, name in enumerate(classes):
                if set(written[name]) - kept:
                    for earlier in classes[:position]:
                        assert not set(written[earlier]) & kept, f"{name} before {earlier}"
            assert report.lost_before_delivery == 0
            if not kept:
                break

    assert kept == set()
    assert [e for e in logs if e["event"] == "store_evicted_records"] == [], "housekeeping"


async def test_eviction_of_undelivered_rows_is_counted_across_restarts(
    store_path: Path, make_vector: VectorFactory
) -> None:
    async with await Store.open(StoreSettings(store_path)) as store:
        await store.recorder.add_features([make_vector(float(t)) for t in range(20)])
    cap = file_size(store_path) // 2

    async with await Store.open(StoreSettings(store_path, max_bytes=cap)) as store:
        report = await store.recorder.enforce_limits(now=100.0)
        session = store.stats
    async with await Store.open(StoreSettings(store_path)) as store:
        stats = await store.delivery.outbox_stats()

    assert report.lost_before_delivery == report.evicted_by_size > 0
    assert session.lost_before_delivery == report.lost_before_delivery
    assert session.evicted_delivered == 0
    assert stats.lost_before_delivery == report.lost_before_delivery
    assert stats.records == 20 - report.lost_before_delivery


async def test_retention_evicts_delivered_rows_of_every_kind_and_with_an_uplink_keeps_the_rest(
    store_path: Path,
    make_vector: VectorFactory,
    make_score: ScoreFactory,
    make_alert: AlertFactory,
) -> None:
    old: list[StoredRecord] = [
        make_vector(0.0),
        make_score(0.0),
        make_score(0.0, anomalous=True),
        make_alert(0.0),
    ]
    settings = StoreSettings(store_path, retention_s=10.0, retain_undelivered=True)
    async with await Store.open(settings) as store:
        await store.recorder.add_records(old)  # seqs 1-4, delivered
        await store.delivery.acknowledge(4)
        await store.recorder.add_records(old)  # seqs 5-8, not delivered
        await store.recorder.add_records([make_score(95.0)])  # seq 9, recent
        report = await store.recorder.enforce_limits(now=100.0)
        kept = [seq for seq, _ in await store.history.outbox()]

    assert kept == [5, 6, 7, 8, 9]
    assert (report.evicted_by_age, report.lost_before_delivery) == (4, 0)
    assert store.stats.evicted_delivered == 4


async def test_retention_without_an_uplink_still_evicts_old_features_and_routine_scores(
    store_path: Path, make_vector: VectorFactory, make_score: ScoreFactory, make_alert: AlertFactory
) -> None:
    old: list[StoredRecord] = [
        make_vector(0.0),
        make_score(0.0),
        make_score(0.0, anomalous=True),
        make_alert(0.0),
    ]
    async with await Store.open(StoreSettings(store_path, retention_s=10.0)) as store:
        await store.recorder.add_records(old)
        report = await store.recorder.enforce_limits(now=100.0)
        kept = [seq for seq, _ in await store.history.outbox()]

    assert kept == [3, 4]
    assert report.lost_before_delivery == 2


# --- a replaced store --------------------------------------------------------------------------


async def test_renumber_above_moves_undelivered_rows_past_the_receivers_ack(
    store: Store, make_vector: VectorFactory, make_score: ScoreFactory, make_alert: AlertFactory
) -> None:
    records: list[StoredRecord] = [make_vector(1.0), make_score(2.0), make_alert(3.0)]
    await store.recorder.add_records(records)
    await store.recorder.add_records([make_score(4.0)])
    await store.delivery.acknowledge(1)

    assert await store.delivery.renumber_above(3) == 0, "not beyond the last seq: nothing to do"
    moved = await store.delivery.renumber_above(100)
    stored = await store.history.outbox()

    assert moved == 3
    assert [seq for seq, _ in stored] == [1, 101, 102, 103]
    assert stored[1][1] == records[1] and stored[2][1] == records[2]
    assert await store.delivery.acked_seq() == 100
    assert await store.delivery.latest_seq() == 103
    assert await store.recorder.add_records([make_score(5.0)]) == [104]
    assert (await store.delivery.outbox_stats()).records == 4


async def test_a_store_of_the_previous_release_gains_uplink_state_with_nothing_acknowledged(
    store_path: Path, make_score: ScoreFactory
) -> None:
    async with await Store.open(StoreSettings(store_path), migrations=MIGRATIONS[:3]) as previous:
        await previous.recorder.add_records([make_score(float(t)) for t in range(3)])

    async with await Store.open(StoreSettings(store_path)) as current:
        applied = await current.applied_migrations()
        stats = await current.delivery.outbox_stats()

    assert applied[3] == "0004_uplink_state"
    assert (stats.records, stats.acked_seq, stats.lost_before_delivery) == (3, 0, 0)
