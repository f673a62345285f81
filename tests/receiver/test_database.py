"""The receiver's database on SQLite and PostgreSQL: idempotent commits, the ack chain, the
gateway_status view, migrations. No broker: parts go straight to Database.ingest."""

from __future__ import annotations

import asyncio
import itertools
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from receiver_helpers import NAMES, outbox_rows, vector

from appliance.records import FeatureVector, Score
from appliance.uplink.schema import Part, split_range
from receiver.chain import extend_chain
from receiver.db import Database, open_database
from receiver.errors import DatabaseError, SettingsError

NOW = 1_767_300_000.0


def parts_of(lo: int, hi: int, gateway: str = "gw-a") -> list[Part]:
    return split_range(gateway, lo, hi, outbox_rows(lo, hi))


async def ingest_all(db: Database, parts: list[Part]) -> list[int]:
    """Commit each part; the gateway's ack after each."""
    return [(await db.ingest(part, NOW)).acked_seq for part in parts]


async def status(db: Database, gateway: str = "gw-a") -> dict[str, object]:
    (row,) = [row for row in await db.gateway_status() if row["gateway"] == gateway]
    return row


async def test_a_complete_range_is_acknowledged(db: Database) -> None:
    parts = parts_of(0, 20)
    assert len(parts) == 3  # features, scores, alerts of pump-1

    acks = await ingest_all(db, parts)

    assert acks == [0, 0, 20]
    assert await db.acked_seq("gw-a") == 20
    features = await db.features("gw-a", "pump-1", 0, 1e11)
    expected = [seq for seq, record in outbox_rows(0, 20) if isinstance(record, FeatureVector)]
    assert [row.seq for row in features] == expected


async def test_duplicates_are_ignored_and_counted_exactly(db: Database) -> None:
    parts = parts_of(0, 20)
    await ingest_all(db, parts)

    again = [await db.ingest(part, NOW) for part in parts]

    assert [result.inserted for result in again] == [0, 0, 0]
    assert [result.duplicates for result in again] == [len(part.records) for part in parts]
    assert all(result.resent and result.ack_to_publish == 20 for result in again)
    assert len(await db.features("gw-a", "pump-1", 0, 1e11)) == len(parts[0].records)


async def test_a_part_that_overlaps_stored_records_inserts_only_the_new_ones(db: Database) -> None:
    rows = outbox_rows(0, 20)
    await db.ingest(split_range("gw-a", 0, 10, [r for r in rows if r[0] <= 10])[0], NOW)

    result = await db.ingest(split_range("gw-a", 0, 20, rows)[0], NOW)

    features_up_to_10 = sum(1 for seq, r in rows if seq <= 10 and isinstance(r, FeatureVector))
    assert result.duplicates == features_up_to_10
    assert result.inserted == len(split_range("gw-a", 0, 20, rows)[0].records) - result.duplicates


async def test_out_of_order_ranges_ack_only_when_they_chain(db: Database) -> None:
    first, second, third = parts_of(0, 10), parts_of(10, 20), parts_of(20, 30)

    assert (await ingest_all(db, third))[-1] == 0
    assert (await ingest_all(db, first))[-1] == 10
    row = await status(db)
    assert (row["acked_seq"], row["holes"], row["missing_seqs"]) == (10, 1, 10)

    assert (await ingest_all(db, list(reversed(second))))[-1] == 30
    row = await status(db)
    assert (row["acked_seq"], row["holes"], row["missing_seqs"]) == (30, 0, 0)


async def test_an_incomplete_range_holds_the_ack(db: Database) -> None:
    parts = parts_of(0, 20)
    await ingest_all(db, parts[:-1])

    row = await status(db)
    assert (row["acked_seq"], row["incomplete_ranges"], row["received_seq"]) == (0, 1, 20)

    await ingest_all(db, parts[-1:])
    assert (await status(db))["incomplete_ranges"] == 0
    assert await db.acked_seq("gw-a") == 20


async def test_a_gap_closes_the_chain_without_records(db: Database) -> None:
    later = parts_of(100, 120)
    await ingest_all(db, later)
    assert await db.acked_seq("gw-a") == 0

    (gap,) = split_range("gw-a", 0, 100, [])
    result = await db.ingest(gap, NOW)

    assert (result.inserted, result.acked_seq, result.advanced) == (0, 120, True)


async def test_a_new_database_learns_what_the_gateway_already_deleted(db: Database) -> None:
    """The gateway's gap (0, acked] lets a receiver that never saw it acknowledge new ranges."""
    await ingest_all(db, parts_of(5000, 5010))
    assert await db.acked_seq("gw-a") == 0

    await ingest_all(db, split_range("gw-a", 0, 5000, []))

    assert await db.acked_seq("gw-a") == 5010


async def test_overlapping_ranges_chain_by_their_union(db: Database) -> None:
    rows = outbox_rows(0, 40)
    await ingest_all(db, split_range("gw-a", 0, 15, [r for r in rows if r[0] <= 15]))
    await ingest_all(db, split_range("gw-a", 25, 40, [r for r in rows if r[0] > 25]))
    overlapping = split_range("gw-a", 10, 30, [r for r in rows if 10 < r[0] <= 30])

    assert (await ingest_all(db, overlapping))[-1] == 40


async def test_a_range_resplit_after_evictions_is_not_completed_by_the_old_split(
    db: Database,
) -> None:
    """(0, 20] first sent as 3 parts, of which one arrived; re-sent as 2 parts after its
    features were evicted: only the 2 new parts complete it."""
    rows = outbox_rows(0, 20)
    old = split_range("gw-a", 0, 20, rows)
    new = split_range("gw-a", 0, 20, [r for r in rows if not isinstance(r[1], FeatureVector)])
    assert (len(old), len(new)) == (3, 2)

    await db.ingest(old[0], NOW)  # features, part 0 of 3
    await db.ingest(new[1], NOW)  # alerts, part 1 of 2
    assert await db.acked_seq("gw-a") == 0

    await db.ingest(new[0], NOW)
    assert await db.acked_seq("gw-a") == 20


async def test_gateways_are_kept_apart(db: Database) -> None:
    await ingest_all(db, parts_of(0, 10, "gw-a"))
    await ingest_all(db, parts_of(0, 30, "gw-b"))

    assert (await db.acked_seq("gw-a"), await db.acked_seq("gw-b")) == (10, 30)
    assert await db.gateways() == ["gw-a", "gw-b"]
    assert len(await db.features("gw-b", "pump-1", 0, 1e11)) > len(
        await db.features("gw-a", "pump-1", 0, 1e11)
    )


async def test_values_and_scores_round_trip_with_nan(db: Database) -> None:
    special = FeatureVector("pump-1", NOW, NAMES, np.array([1.5, math.nan, -0.0, 1e300]))
    blank = Score("pump-1", NOW, "m", math.nan, math.nan, False, ("rms_x",))
    await ingest_all(db, split_range("gw-a", 0, 2, [(1, special), (2, blank)]))

    (stored,) = await db.features("gw-a", "pump-1", 0, 1e11)
    np.testing.assert_array_equal(stored.values, special.values)
    assert np.signbit(stored.values[2])
    assert await db.score_flags("gw-a", "pump-1", 0, 1e11) == {NOW: False}


async def test_the_view_shows_last_seen_and_lag(db: Database) -> None:
    await db.ingest(split_range("gw-a", 0, 1, [(1, vector(NOW - 60.0))])[0], NOW)
    row = await status(db)
    assert row["newest_t"] is not None
    lag = row["lag_s"]
    assert isinstance(lag, float) and lag > 0


def mixed_batch(first: str, second: str) -> list[Part]:
    """Two gateways' parts interleaved: ranges in and out of order, one beyond a gap, one
    incomplete, one part twice."""
    a = parts_of(0, 10, first) + parts_of(20, 30, first) + parts_of(10, 20, first)
    b = parts_of(0, 10, second)[::-1] + parts_of(40, 50, second)[:1] + parts_of(10, 20, second)
    interleaved = [part for pair in itertools.zip_longest(a, b) for part in pair if part]
    return [*interleaved, a[0]]


async def test_a_batch_gives_what_its_parts_give_one_by_one(db: Database) -> None:
    """ingest_many (pipelined in rounds of one part per gateway) against db.ingest per part, on
    two pairs of gateways of the same database."""
    batch = await db.ingest_many(mixed_batch("gw-a", "gw-b"), NOW)
    one_by_one = [await db.ingest(part, NOW) for part in mixed_batch("gw-c", "gw-d")]

    assert batch == one_by_one
    assert [await db.acked_seq(gateway) for gateway in ("gw-a", "gw-b")] == [30, 20]
    twice = mixed_batch("gw-a", "gw-b")[0]
    assert (batch[-1].inserted, batch[-1].duplicates) == (0, len(twice.records))


async def test_two_instances_sharing_the_database_give_the_right_ack(any_db_url: str) -> None:
    """Parts of interleaved ranges committed concurrently through two connections."""
    first, second = await open_database(any_db_url), await open_database(any_db_url)
    try:
        ranges = [parts_of(lo, lo + 10) for lo in range(0, 200, 10)]
        mine = [part for index, parts in enumerate(ranges) for part in parts if index % 2 == 0]
        theirs = [part for index, parts in enumerate(ranges) for part in parts if index % 2 == 1]
        await asyncio.gather(ingest_all(first, mine), ingest_all(second, theirs[::-1]))
        assert await first.acked_seq("gw-a") == 200
    finally:
        await first.close()
        await second.close()


async def test_opening_twice_applies_no_migration_again(any_db_url: str) -> None:
    """The second start finds every migration applied (same names, same times) and the data kept."""
    applied = "SELECT name, applied_at FROM schema_migrations ORDER BY name"
    first = await open_database(any_db_url)
    try:
        await ingest_all(first, parts_of(0, 10))
        migrations = await first._query(applied)
    finally:
        await first.close()
    second = await open_database(any_db_url)
    try:
        assert migrations and await second._query(applied) == migrations
        assert await second.acked_seq("gw-a") == 10
    finally:
        await second.close()


async def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rx.db'}"
    await (await open_database(url)).close()
    with sqlite3.connect(tmp_path / "rx.db") as raw:
        raw.execute("INSERT INTO schema_migrations VALUES ('9999_future', 'x')")
    with pytest.raises(DatabaseError, match="9999_future"):
        await open_database(url)


async def test_a_bad_database_url_is_refused() -> None:
    with pytest.raises(SettingsError, match="sqlite:/// or postgresql://"):
        await open_database("mysql://x")


async def test_a_locked_database_is_a_transient_error_and_nothing_is_half_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("receiver.db.sqlite.BUSY_TIMEOUT_S", 0.05)
    database = await open_database(f"sqlite:///{tmp_path / 'rx.db'}")
    blocker = sqlite3.connect(tmp_path / "rx.db", timeout=0, isolation_level=None)
    part = parts_of(0, 10)[0]
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseError, match="database is locked") as raised:
            await database.ingest(part, NOW)
        assert raised.value.transient
        blocker.execute("ROLLBACK")

        result = await database.ingest(part, NOW)
        assert (result.inserted, result.duplicates) == (len(part.records), 0)
    finally:
        blocker.close()
        await database.close()


@given(
    st.integers(0, 50),
    st.lists(st.tuples(st.integers(0, 60), st.integers(1, 20)), max_size=12),
)
def test_extend_chain_covers_exactly_what_the_ranges_cover(
    start: int, spans: list[tuple[int, int]]
) -> None:
    ranges = sorted((lo, lo + length) for lo, length in spans)
    covered = {seq for lo, hi in ranges for seq in range(lo + 1, hi + 1)}
    end = start
    while end + 1 in covered:
        end += 1

    assert extend_chain(start, ranges) == end
