"""Refusing a message that can never be stored, in a transaction of its own (Database.refuse): a
row in `dead_letters` (raw bytes, bounded; the oldest rows dropped beyond the limits, and
counted), and, when its header was valid and plausible, the part recorded as refused so that its
range can complete and the ack move past it (PROTOCOL.md, "Refused parts")."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.uplink.schema import PartHeader
from receiver.db.dialect import DbApiConnection, Statements
from receiver.db.ingest import IngestResult, plausible_now, update_ack
from receiver.db.rows import MAX_STORED_PAYLOAD_BYTES, DeadLetter, dead_letter_row, part_row


@dataclass(frozen=True)
class Refusal:
    dead_letter_id: int
    dropped: int
    """Older dead letters dropped to stay within the limits (also added to receiver_counters)."""
    dropped_bytes: int
    result: IngestResult | None
    """The part, recorded as refused, counts in its range; None when it had no valid header or
    an implausible range (then it is not accounted and the ack does not move for it)."""


@dataclass(frozen=True)
class DeadLetterLimits:
    """The dead_letters table keeps at most `max_rows` rows and `max_bytes` stored payload bytes
    (each payload is cut at rows.MAX_STORED_PAYLOAD_BYTES); the oldest go first."""

    max_rows: int = 10_000
    max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.max_bytes < MAX_STORED_PAYLOAD_BYTES:
            raise ValueError(
                f"dead letter limits: at least 1 row and {MAX_STORED_PAYLOAD_BYTES} bytes"
            )


def refuse(
    db: DbApiConnection,
    sql: Statements,
    where: str,
    limits: DeadLetterLimits,
    letter: DeadLetter,
    header: PartHeader | None,
) -> Refusal:
    row = dead_letter_row(letter)
    letter_id = int(db.execute(sql.insert_dead_letter, row).fetchone()[0])
    dropped = trim_dead_letters(db, sql, limits, letter_id, int(row[6]))
    result = None
    if header is not None and plausible_now(db, sql, header):
        db.execute(sql.insert_refused_part, part_row(header, letter.received_at))
        chain = db.execute(sql.upsert_gateway, (header.gateway, letter.received_at,
                                                letter.received_at, None))  # fmt: skip
        result = update_ack(db, sql, where, header, chain, letter.received_at)
    return Refusal(letter_id, len(dropped), sum(dropped), result)


def trim_dead_letters(
    db: DbApiConnection, sql: Statements, limits: DeadLetterLimits, newest: int, stored: int
) -> list[int]:
    """Drop the oldest dead letters beyond the limits (never `newest`); their stored sizes.
    The table's rows and bytes are counters kept here, so this costs O(dropped), not a scan
    (a scan of 10,000 rows made a flood of refusals 50 ms each)."""
    rows = add_to_counter(db, sql, "dead_letter_rows", 1)
    size = add_to_counter(db, sql, "dead_letter_bytes", stored)
    dropped: list[int] = []
    while rows > limits.max_rows or size > limits.max_bytes:
        found = db.execute(sql.drop_oldest_dead_letter, (newest,)).fetchone()
        if found is None:  # the counters were off (rows deleted by hand): count again
            rows, size = map(int, db.execute(sql.measure_dead_letters, ()).fetchone())
            set_counters(db, sql, rows, size)
            break
        dropped.append(int(found[0]))
        rows, size = rows - 1, size - int(found[0])
    if dropped:
        set_counters(db, sql, rows, size)
        add_to_counter(db, sql, "dead_letters_dropped", len(dropped))
        add_to_counter(db, sql, "dead_letter_bytes_dropped", sum(dropped))
    return dropped


def add_to_counter(db: DbApiConnection, sql: Statements, name: str, amount: int) -> int:
    return int(db.execute(sql.add_to_counter, (name, amount)).fetchone()[0])


def set_counters(db: DbApiConnection, sql: Statements, rows: int, size: int) -> None:
    db.execute(sql.set_counter, ("dead_letter_rows", rows))
    db.execute(sql.set_counter, ("dead_letter_bytes", size))
