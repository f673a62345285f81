"""The store's SQL functions on a plain sqlite3 connection (no Store, no event loop)."""

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.records import Alert, Score
from appliance.sms.policy import NewSms
from appliance.store import MIGRATIONS, delivery, eviction, outbox, sms, states
from appliance.store.codec import encode_record
from appliance.store.database import transaction
from appliance.store.migrations import apply_migrations
from appliance.store.outbox import FeatureSchemas


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    apply_migrations(connection, MIGRATIONS, tmp_path / "store.db")
    yield connection
    connection.close()


def score(t: float, *, anomalous: bool = False) -> Score:
    return Score("pump-1", t, "ae-v3", 1.0, 2.5, anomalous)


def alert(t: float) -> Alert:
    return Alert("pump-1", t, "critical", "anomaly_raised", f"pump-1 at {t}", None)


def add(db: sqlite3.Connection, *records: Score | Alert) -> list[int]:
    rows = [encode_record(record) for record in records]
    return transaction(db, lambda db: outbox.insert_records(db, rows, FeatureSchemas(), {}))


def test_records_take_consecutive_seqs_across_tables_and_read_back_merged(
    db: sqlite3.Connection,
) -> None:
    assert add(db, score(1.0), alert(2.0), score(3.0)) == [1, 2, 3]
    assert add(db, alert(4.0)) == [4]

    merged = outbox.read_outbox(db, FeatureSchemas(), 1, 10, outbox.MAX_SEQ)

    assert merged == [(2, alert(2.0)), (3, score(3.0)), (4, alert(4.0))]


def test_acknowledging_is_monotonic_and_never_beyond_the_last_seq(
    db: sqlite3.Connection,
) -> None:
    add(db, score(1.0), score(2.0), score(3.0))

    assert transaction(db, lambda db: delivery.acknowledge(db, 2, now=10.0)) == 2
    assert transaction(db, lambda db: delivery.acknowledge(db, 1, now=11.0)) == 2
    with pytest.raises(ValueError, match="last seq handed out is 3"):
        transaction(db, lambda db: delivery.acknowledge(db, 4, now=12.0))
    stats = delivery.read_outbox_stats(db)
    assert (stats.acked_seq, stats.acked_at, stats.records, stats.last_seq) == (2, 10.0, 1, 3)


def test_renumbering_moves_undelivered_rows_behind_the_receivers_seq(
    db: sqlite3.Connection,
) -> None:
    add(db, score(1.0), score(2.0), alert(3.0))
    transaction(db, lambda db: delivery.acknowledge(db, 1, now=10.0))

    moved = transaction(db, lambda db: delivery.renumber_above(db, 100, now=11.0))

    assert moved == 2
    assert [seq for seq, _ in outbox.read_outbox(db, FeatureSchemas(), 0, 10, outbox.MAX_SEQ)] == [
        1,
        101,
        102,
    ]
    assert (delivery.acked_seq(db), delivery.latest_seq(db)) == (100, 102)


def test_size_eviction_takes_delivered_rows_first_and_undelivered_alerts_last() -> None:
    names = [rows.name for rows in eviction.EVICTED_BY_SIZE]

    assert names.index("delivered alerts") < names.index("features")
    assert names[-1] == "alerts"
    assert all(rows.delivered for rows in eviction.EVICTED_BY_SIZE[:4])
    assert not any(rows.delivered for rows in eviction.EVICTED_BY_SIZE[4:])


def test_age_eviction_keeps_undelivered_rows_when_an_uplink_delivers_them() -> None:
    kept = eviction.evicted_by_age(retain_undelivered=True)
    dropped = eviction.evicted_by_age(retain_undelivered=False)

    assert all(rows.delivered for rows in kept)
    assert {rows.name for rows in dropped} - {rows.name for rows in kept} == {
        "features",
        "routine scores",
    }


def test_a_chunk_of_undelivered_rows_is_counted_lost_in_its_transaction(
    db: sqlite3.Connection,
) -> None:
    add(db, score(1.0), score(2.0), score(3.0, anomalous=True), alert(4.0))
    transaction(db, lambda db: delivery.acknowledge(db, 1, now=10.0))
    routine = next(r for r in eviction.EVICTED_BY_SIZE if r.name == "routine scores")

    deleted = transaction(db, lambda db: eviction.delete_chunk(db, routine, (10,)))

    assert deleted == 1
    assert delivery.read_outbox_stats(db).lost_before_delivery == 1
    assert [seq for seq, _ in outbox.read_scores(db, None, 0, outbox.MAX_SEQ, 10)] == [1, 3]


def test_rows_to_evict_never_exceeds_the_rows_there_or_one_chunk() -> None:
    assert eviction.rows_to_evict(excess_bytes=0, live_bytes=1000, row_count=10) == 0
    assert eviction.rows_to_evict(excess_bytes=250, live_bytes=1000, row_count=10) == 3
    assert eviction.rows_to_evict(excess_bytes=10**9, live_bytes=1000, row_count=10) == 10
    assert (
        eviction.rows_to_evict(excess_bytes=10**9, live_bytes=10**6, row_count=10**6)
        == eviction.MAX_EVICTION_CHUNK_ROWS
    )


def test_detector_states_and_flags_round_trip(db: sqlite3.Connection) -> None:
    rows = states.state_rows({("pump-1", "threshold"): {"mean": 0.5}}, now=1.0)
    transaction(db, lambda db: states.save_states(db, rows))
    transaction(db, lambda db: states.set_flag(db, "sms.pin_rejected", "abc", now=2.0))

    assert states.load_states(db) == {("pump-1", "threshold"): {"mean": 0.5}}
    assert states.flag(db, "sms.pin_rejected") == "abc"
    transaction(db, lambda db: states.set_flag(db, "sms.pin_rejected", None, now=3.0))
    assert states.flag(db, "sms.pin_rejected") is None


def test_sms_queue_rows_move_from_queued_to_sent_once(db: sqlite3.Connection) -> None:
    message = NewSms("+4912345", "pump-1 critical", alert(5.0))
    (queued,) = transaction(db, lambda db: sms.enqueue(db, [message], 10.0, 3600.0))

    assert (queued.state, queued.reference, queued.give_up_at) == (
        "queued",
        queued.id % 256,
        3610.0,
    )
    assert transaction(db, lambda db: sms.update(db, sms.MARK_SENT, (11.0, queued.id))) == 1
    assert transaction(db, lambda db: sms.update(db, sms.MARK_SENDING, (queued.id,))) == 0
    assert sms.pending(db, 10) == []
    assert sms.count_for_alert(db, alert(5.0), now=12.0) == 1
