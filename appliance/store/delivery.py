"""The outbox's delivery: ranges to send, acknowledgements, renumbering and the backlog's size.

Rows up to `uplink_state.acked_seq` are delivered (migrations.py). Plain synchronous functions
of a sqlite3 connection, as in outbox.py; `Delivery` is the part the uplink uses, over the
Database (its only way into the store).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from appliance.store.codec import StoredRecord
from appliance.store.database import Database, fetch_int, fetch_value
from appliance.store.fetching import FetchSpan, fetch_batch, fetch_span, stored_assets
from appliance.store.outbox import FeatureSchemas, read_outbox
from appliance.store.summary_reads import SummaryInputs, read_summary_inputs

OUTBOUND_TABLES = ("features", "scores", "alerts")
TIME_COLUMN = {"features": "window_end", "scores": "t", "alerts": "t"}
SELECT_LAST_SEQ = "SELECT last_seq FROM outbox_sequence"
SELECT_ACKED_SEQ = "SELECT acked_seq FROM uplink_state"
SELECT_UPLINK_STATE = "SELECT acked_seq, acked_at, lost_before_delivery FROM uplink_state"
# Monotonic (?1 = seq, ?2 = now).
ACKNOWLEDGE = (
    "UPDATE uplink_state SET acked_seq = ?1, acked_at = ?2 WHERE id = 1 AND acked_seq < ?1"
)


@dataclass(frozen=True)
class OutboxStats:
    """The undelivered part of the outbox (rows above the acknowledged seq)."""

    records: int
    """Undelivered rows still stored."""
    oldest_t: float | None
    """Dates the backlog (UTC epoch s): the earliest time (window end, score or alert time)
    among the first undelivered row of each table, the ones waiting longest to be sent."""
    last_seq: int
    """The last seq handed out (0 if none yet)."""
    acked_seq: int
    acked_at: float | None
    """When (UTC epoch s) the acknowledged seq last moved; None if never."""
    lost_before_delivery: int
    """Rows evicted before they were acknowledged, since the database was created."""


@dataclass(frozen=True)
class OutboxRange:
    """`records` are all the rows the store still has with lo < seq <= hi, in seq order (rows of
    that span that are not there were evicted, or never existed)."""

    lo: int
    hi: int
    records: list[tuple[int, StoredRecord]]


class Delivery:
    """The outbox as the uplink sees it: ranges to send, acknowledgements, renumbering, stats."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._schemas = FeatureSchemas()  # names of the features read, on the writer thread

    async def outbox_range(
        self, after_seq: int, limit: int, up_to_seq: int | None = None
    ) -> OutboxRange | None:
        """The next range to send: rows with after_seq < seq <= hi, at most `limit` of them.

        hi is the last row's seq when `limit` rows were found, else the last seq handed out (or
        `up_to_seq` if lower), so the range also covers seqs evicted before delivery. None if no
        seq beyond after_seq has been handed out (up to `up_to_seq`). Read in one go: no write
        lands between finding hi and reading the rows.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        return await self._db.read(
            "an outbox range",
            lambda db: read_outbox_range(db, self._schemas, after_seq, limit, up_to_seq),
        )

    async def outbox_stats(self) -> OutboxStats:
        """Size and age of the undelivered outbox, plus the acknowledged and last seqs.

        Counts walk only the undelivered entries of the narrow (asset, seq) indexes, one range per
        asset, so the cost follows the backlog, not the store.
        """
        return await self._db.read("outbox statistics", read_outbox_stats)

    async def latest_seq(self) -> int:
        """The last seq handed out (also if that row has since been evicted); 0 if none yet."""
        return await self._db.read("the last seq", latest_seq)

    async def acked_seq(self) -> int:
        """The highest seq acknowledged so far (0 if none)."""
        return await self._db.read("the acknowledged seq", acked_seq)

    async def fetch_span(self, asset: str, since: float, until: float) -> FetchSpan:
        """How many records of `asset` with since <= t < until are stored (a fetch on demand,
        fetching.py), delivered or not."""
        return await self._db.read("a fetch's span", lambda db: fetch_span(db, asset, since, until))

    async def fetch_batch(
        self, asset: str, since: float, until: float, seqs: tuple[int, int], limit: int
    ) -> list[tuple[int, StoredRecord]]:
        """The next `limit` of those records with seqs[0] < seq <= seqs[1], in seq order."""
        after, up_to = seqs
        return await self._db.read(
            "a fetch's records",
            lambda db: fetch_batch(db, self._schemas, asset, since, until, after, up_to, limit),
        )

    async def stored_assets(self) -> list[str]:
        return await self._db.read("the stored assets", stored_assets)

    async def summary_inputs(self, found: OutboxRange, margin_s: float) -> SummaryInputs:
        """What the summary profile needs beyond the range's records (summary_reads.py)."""
        return await self._db.read(
            "a range's summary",
            lambda db: read_summary_inputs(db, self._schemas, found.lo, found.records, margin_s),
        )

    async def acknowledge(self, seq: int) -> int:
        """Mark every row with a seq up to `seq` as delivered, in one transaction; return the
        acknowledged seq now in effect.

        Monotonic: a lower seq than the current one changes nothing. ValueError (nothing
        changed) for a negative seq or one beyond the last seq handed out: acknowledging it would
        mark rows as delivered that were never sent.
        """
        if seq < 0:
            raise ValueError(f"cannot acknowledge a negative seq ({seq})")
        now = time.time()
        return await self._db.write(
            f"acknowledging seq {seq}", lambda db: acknowledge(db, seq, now)
        )

    async def renumber_above(self, seq: int) -> int:
        """Put this store's numbering behind `seq`, which a receiver acknowledged although this
        store never handed it out (the store was replaced, or restored from a backup).

        In one transaction: every undelivered row is renumbered (in order) to follow `seq`,
        `seq` becomes the acknowledged seq and the counter moves on by as much, so no record
        reuses a (gateway, seq) the receiver already holds (it would be dropped as a duplicate).
        Returns how many rows were renumbered; nothing changes if `seq` is not beyond the last
        seq handed out.
        """
        now = time.time()
        return await self._db.write(
            f"renumbering above seq {seq}", lambda db: renumber_above(db, seq, now)
        )


def acknowledge(db: sqlite3.Connection, seq: int, now: float) -> int:
    """Mark rows up to `seq` delivered (monotonic); the acknowledged seq now in effect.
    ValueError (nothing changed) for a seq beyond the last seq handed out."""
    last_seq = fetch_int(db, SELECT_LAST_SEQ)
    if seq > last_seq:
        raise ValueError(f"cannot acknowledge seq {seq}: the last seq handed out is {last_seq}")
    db.execute(ACKNOWLEDGE, (seq, now))
    return fetch_int(db, SELECT_ACKED_SEQ)


def renumber_above(db: sqlite3.Connection, seq: int, now: float) -> int:
    """Renumber every undelivered row to follow `seq`, acknowledge `seq` and move the counter
    on by as much (Delivery.renumber_above); how many rows moved."""
    last_seq = fetch_int(db, SELECT_LAST_SEQ)
    if seq <= last_seq:
        return 0
    acked = fetch_int(db, SELECT_ACKED_SEQ)
    offset = seq - acked  # the first undelivered row, acked + 1, becomes seq + 1
    moved = 0
    for table in OUTBOUND_TABLES:
        cursor = db.execute(f"UPDATE {table} SET seq = seq + ? WHERE seq > ?", (offset, acked))
        moved += cursor.rowcount
    db.execute("UPDATE outbox_sequence SET last_seq = ? WHERE id = 1", (last_seq + offset,))
    db.execute(ACKNOWLEDGE, (seq, now))
    return moved


def latest_seq(db: sqlite3.Connection) -> int:
    return fetch_int(db, SELECT_LAST_SEQ)


def acked_seq(db: sqlite3.Connection) -> int:
    return fetch_int(db, SELECT_ACKED_SEQ)


def read_outbox_range(
    db: sqlite3.Connection,
    schemas: FeatureSchemas,
    after_seq: int,
    limit: int,
    up_to_seq: int | None,
) -> OutboxRange | None:
    """The next range to send (Delivery.outbox_range)."""
    bound = fetch_int(db, SELECT_LAST_SEQ)
    if up_to_seq is not None:
        bound = min(bound, up_to_seq)
    if bound <= after_seq:
        return None
    records = read_outbox(db, schemas, after_seq, limit, bound)
    hi = records[-1][0] if len(records) >= limit else bound
    return OutboxRange(after_seq, hi, records)


def read_outbox_stats(db: sqlite3.Connection) -> OutboxStats:
    """Size and age of the undelivered outbox, plus the acknowledged and last seqs."""
    acked, acked_at, lost = db.execute(SELECT_UPLINK_STATE).fetchone()
    records = 0
    oldest: list[float] = []
    for table in OUTBOUND_TABLES:
        records += count_after(db, table, int(acked))
        first = db.execute(
            f"SELECT {TIME_COLUMN[table]} FROM {table} WHERE seq > ? ORDER BY seq LIMIT 1",
            (acked,),
        ).fetchall()
        oldest.extend(float(row[0]) for row in first)
    return OutboxStats(
        records=records,
        oldest_t=min(oldest, default=None),
        last_seq=fetch_int(db, SELECT_LAST_SEQ),
        acked_seq=int(acked),
        acked_at=None if acked_at is None else float(acked_at),
        lost_before_delivery=int(lost),
    )


def count_after(db: sqlite3.Connection, table: str, after_seq: int) -> int:
    """Rows of `table` with seq > after_seq, counted per asset on its (asset, seq) index, so the
    cost follows the backlog, not the store."""
    count = 0
    asset = fetch_value(db, f"SELECT min(asset) FROM {table}")
    while asset is not None:
        count += fetch_int(
            db, f"SELECT count(*) FROM {table} WHERE asset = ? AND seq > ?", (asset, after_seq)
        )
        asset = fetch_value(db, f"SELECT min(asset) FROM {table} WHERE asset > ?", (asset,))
    return count
