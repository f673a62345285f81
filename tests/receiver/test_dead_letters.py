"""Refused messages in the database, on SQLite and PostgreSQL: the dead_letters table and its
limits, refused parts accounted in their range, implausible ranges, values a driver cannot bind,
and migration 0003 upgrading an existing receiver database. No broker."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from receiver_helpers import outbox_rows

from appliance.records import Alert, FeatureVector
from appliance.uplink.schema import Part, PartHeader, split_range
from receiver.db import Database, open_database
from receiver.db.dead_letters import DeadLetterLimits, refuse
from receiver.db.migrations import apply_migrations
from receiver.db.rows import MAX_STORED_PAYLOAD_BYTES, DeadLetter
from receiver.db.sqlite import sqlite_dialect
from receiver.errors import DatabaseError

NOW = 1_767_300_000.0


def letter(
    payload: bytes = b"{", reason: str = "bad_json", gateway: str | None = "gw-a"
) -> DeadLetter:
    return DeadLetter(gateway, "appliance/gw-a/scores/pump-1", payload, reason, "detail", NOW)


def header(lo: int, hi: int, part: int = 0, parts: int = 1) -> PartHeader:
    return PartHeader("gw-a", lo, hi, part, parts, "scores", "pump-1")


async def test_a_refused_part_completes_its_range_and_the_ack_moves_past_it(db: Database) -> None:
    features, scores, alerts = split_range("gw-a", 0, 30, outbox_rows(0, 30))
    await db.ingest(features, NOW)
    refusal = await db.refuse(letter(reason="bad_text"), scores.header)
    await db.ingest(alerts, NOW)

    assert refusal.result is not None and refusal.result.acked_seq == 0
    assert await db.acked_seq("gw-a") == 30
    (row,) = await db.gateway_status()
    assert (row["refused_parts"], row["dead_letters"], row["incomplete_ranges"]) == (1, 1, 0)


async def test_a_refused_part_that_completes_a_range_publishes_the_ack(db: Database) -> None:
    await db.ingest(split_range("gw-a", 0, 10, [])[0], NOW)

    refusal = await db.refuse(letter(), header(10, 20))

    assert refusal.result is not None
    assert (refusal.result.acked_seq, refusal.result.ack_to_publish) == (20, 20)


async def test_a_message_without_a_valid_header_is_only_kept(db: Database) -> None:
    refusal = await db.refuse(letter(gateway=None), None)

    assert refusal.result is None
    assert await db.gateways() == []
    (kept,) = await db.dead_letters()
    assert (kept["gateway"], bytes(kept["payload"]), kept["reason"]) == (None, b"{", "bad_json")
    assert kept["received_at"] == pytest.approx(NOW)


async def test_a_range_far_above_the_ack_is_refused_and_not_accounted(db: Database) -> None:
    gap = split_range("gw-a", 0, 2**41, [])[0]
    with pytest.raises(DatabaseError, match=r"more than 2\*\*40 above") as raised:
        await db.ingest(gap, NOW)
    assert (raised.value.transient, raised.value.reason) == (False, "implausible")
    assert await db.gateways() == []

    refusal = await db.refuse(letter(reason="implausible"), gap.header)

    assert refusal.result is None
    assert await db.acked_seq("gw-a") is None
    await db.ingest(split_range("gw-a", 0, 2**39, [])[0], NOW)  # within the bound
    assert await db.acked_seq("gw-a") == 2**39


async def test_the_table_keeps_the_newest_rows_within_its_limits_and_counts_the_rest(
    db: Database,
) -> None:
    db.dead_letter_limits = DeadLetterLimits(max_rows=4, max_bytes=3 * MAX_STORED_PAYLOAD_BYTES)
    big = b"x" * (2 * MAX_STORED_PAYLOAD_BYTES)  # kept cut at MAX_STORED_PAYLOAD_BYTES
    for n in range(5):
        await db.refuse(letter(f"small {n}".encode()), None)
    refusal = await db.refuse(letter(big), None)
    await db.refuse(letter(big), None)
    last = await db.refuse(letter(big), None)

    kept = await db.dead_letters()
    assert [k["payload_bytes"] for k in kept] == [len(big)] * 3
    assert all(len(bytes(k["payload"])) == MAX_STORED_PAYLOAD_BYTES for k in kept)
    assert (refusal.dropped, last.dropped, last.dropped_bytes) == (1, 2, 2 * 7)  # rows, bytes
    assert await db.counters() == {
        "dead_letters_dropped": 5,
        "dead_letter_bytes_dropped": 5 * 7,
        "dead_letter_rows": 3,
        "dead_letter_bytes": 3 * MAX_STORED_PAYLOAD_BYTES,
    }
    with pytest.raises(ValueError, match="at least 1 row"):
        DeadLetterLimits(max_rows=0)


async def test_rows_deleted_by_hand_do_not_make_the_table_drop_new_ones(db: Database) -> None:
    db.dead_letter_limits = DeadLetterLimits(max_rows=2)
    for n in range(3):
        await db.refuse(letter(f"{n}".encode()), None)
    await db._query("DELETE FROM dead_letters RETURNING id")  # an operator cleaned up

    await db.refuse(letter(b"3"), None)  # the counters say 3 rows: one too many
    await db.refuse(letter(b"4"), None)

    assert [bytes(k["payload"]) for k in await db.dead_letters()] == [b"4", b"3"]
    counters = await db.counters()
    assert (counters["dead_letter_rows"], counters["dead_letter_bytes"]) == (2, 2)


async def test_any_text_is_kept_readable(db: Database) -> None:
    odd = DeadLetter(
        "gw\ud800", "t/\x00/x", b"\x00\xff", "r", "lone \udc80 and NUL \x00" * 500, NOW
    )

    await db.refuse(odd, None)

    (kept,) = await db.dead_letters()
    assert (kept["gateway"], kept["topic"]) == ("gw\\ud800", "t/\\x00/x")
    assert kept["detail"].startswith("lone \\udc80 and NUL \\x00") and len(kept["detail"]) == 2000
    assert bytes(kept["payload"]) == b"\x00\xff"


async def test_a_value_the_driver_cannot_bind_is_a_refusal_not_a_crash(db: Database) -> None:
    """Built by hand past the schema's checks: on 234b5a8 the OverflowError (and
    UnicodeEncodeError) left the database layer as they were and ended the receiver."""
    huge = Part(
        "gw-a",
        0,
        2**64,
        0,
        1,
        "alerts",
        "pump-1",
        [(2**63, Alert("pump-1", NOW, "critical", "k", "m"))],
    )
    surrogate = Part("gw-a", 0, 10, 0, 1, "features", "pump-1",
                     [(1, FeatureVector("pump-1", NOW, ("a\ud800",), np.zeros(1)))])  # fmt: skip

    for part in (huge, surrogate):
        with pytest.raises(DatabaseError) as raised:
            await db.ingest(part, NOW)
        assert not raised.value.transient and raised.value.reason == "db_refused"

    assert await db.gateways() == []
    await db.ingest(split_range("gw-a", 0, 10, outbox_rows(0, 10))[0], NOW)  # still works


# --- migration --------------------------------------------------------------------------------


async def open_release_2(url: str) -> Database:
    """The database as the release before dead letters made it (migrations 0001 and 0002)."""
    if url.startswith("sqlite"):
        from receiver.db.sqlite import sqlite_dialect as make
    else:
        from receiver.db.postgres import postgres_dialect as make
    dialect, where = make(url)
    old = dataclasses.replace(dialect, migrations=dialect.migrations[:2])
    database = Database(old, where)
    await database.start()
    return database


async def test_migration_0003_upgrades_an_existing_database(any_db_url: str) -> None:
    old = await open_release_2(any_db_url)
    try:
        for part in split_range("gw-a", 0, 20, outbox_rows(0, 20)):
            await old.ingest(part, NOW)
        await old.ingest(split_range("gw-a", 30, 40, outbox_rows(30, 40))[0], NOW)
        assert "refused_parts" not in (await old.gateway_status())[0]
    finally:
        await old.close()

    upgraded = await open_database(any_db_url)
    try:
        (row,) = await upgraded.gateway_status()
        assert (row["acked_seq"], row["holes"], row["refused_parts"], row["dead_letters"]) == (
            20, 0, 0, 0)  # fmt: skip
        rows = outbox_rows(0, 20) + outbox_rows(30, 40)
        expected = [seq for seq, record in rows if isinstance(record, FeatureVector)]
        assert [f.seq for f in await upgraded.features("gw-a", "pump-1", 0, 1e11)] == expected
        await upgraded.refuse(letter(), header(20, 30))
        assert await upgraded.acked_seq("gw-a") == 30  # (30, 40] has 3 parts, one arrived
        rest = split_range("gw-a", 30, 40, outbox_rows(30, 40))[1:]
        for part in rest:
            await upgraded.ingest(part, NOW)
        assert await upgraded.acked_seq("gw-a") == 40
        (row,) = await upgraded.gateway_status()
        assert (row["refused_parts"], row["dead_letters"]) == (1, 1)
    finally:
        await upgraded.close()


def test_a_refusal_is_a_plain_function_of_a_connection(tmp_path: Path) -> None:
    """The transaction functions need no Database, thread or event loop: here on a bare sqlite3
    connection with the receiver's schema."""
    dialect, where = sqlite_dialect(f"sqlite:///{tmp_path / 'receiver.db'}")
    connection = dialect.connect()
    try:
        apply_migrations(connection, dialect, where)
        sql, limits = dialect.statements, DeadLetterLimits(max_rows=2)
        refusals = [refuse(connection, sql, where, limits, letter(), None) for _ in range(3)]
        kept = connection.execute("SELECT id FROM dead_letters ORDER BY id").fetchall()
        counters = dict(connection.execute(sql.select_counters, ()).fetchall())
    finally:
        connection.close()

    assert [refusal.dropped for refusal in refusals] == [0, 0, 1]
    assert [row[0] for row in kept] == [refusals[1].dead_letter_id, refusals[2].dead_letter_id]
    assert (counters["dead_letter_rows"], counters["dead_letters_dropped"]) == (2, 1)
