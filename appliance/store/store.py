"""The local store: one SQLite file behind one Database (database.py), whose thread is the one
writer. `Store` opens it (pragmas, migrations), writes the outbox for the store writer
(add_records), enforces the limits and keeps StoreStats; each other consumer is handed only its
repository, built on the same Database: `delivery` (the uplink, delivery.py), `sms_queue` (the SMS
intake and sender, sms.py), `detector_states` (detection, states.py) and `history` (stored
records read back, outbox.py). Every operation is one job of plain SQL functions on the writer
thread, a write one transaction.

Tables and their SQL: features, scores and alerts are outbound (outbox.py: seqs from one counter,
read back merged by `outbox`; delivery.py: in ranges by `outbox_range`); detector_state holds each
detector's state across restarts and is never evicted, alert_acks who acknowledged what, and
device_flags a few durable facts (states.py); uplink_state holds the acknowledged seq
(delivery.py); sms_outbox is the durable SMS queue (sms.py; its finished rows leave by
`prune_sms`, never by the limits below).

Delivered rows: `acknowledge(seq)` marks every row with a seq up to `seq` as delivered (the
receiver, or the broker in ack = "broker" mode, confirmed it). Delivered rows are NOT deleted at
once: they stay for the status page, commissioning replay and `appliance train`, and they are the
first to go when space or age requires it. Rows above the acknowledged seq are undelivered.

Eviction (enforce_limits) follows the order in eviction.py, each eviction counted in StoreStats
(by reason, by table, and as delivered or lost before delivery). Every undelivered row evicted is
counted as lost before delivery (StoreStats and, across restarts,
uplink_state.lost_before_delivery, reported by `outbox_stats`); the uplink sends ranges, so the
receiver learns which seqs it will never get. Evicting an undelivered score or alert logs a
warning (store_evicted_records); the writer logs every eviction round, as a warning when it lost
undelivered rows. Evicting delivered rows is housekeeping: counted, not warned about.
After evicting, `PRAGMA incremental_vacuum` returns the free pages and a TRUNCATE checkpoint empties
the WAL, so the file on the SD card really shrinks.

Size is measured as (page_count - freelist_count) * page_size plus the WAL file's size.
Cancelling a caller never leaves a transaction half done: a write, once called, runs to its end
on the writer thread, and its counting in StoreStats happens there right after the COMMIT.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Self, TypeVar

import structlog

from appliance.errors import StoreError
from appliance.records import FeatureVector
from appliance.store import eviction
from appliance.store import outbox as outbox_sql
from appliance.store.codec import StoredRecord, encode_record
from appliance.store.database import (
    Database,
    StorePragmas,
    StoreSize,
    configure,
    fetch_int,
    measure_size,
    read_pragmas,
)
from appliance.store.delivery import Delivery, OutboxRange, OutboxStats
from appliance.store.eviction import EvictionClass, Limits
from appliance.store.migrations import (
    MIGRATIONS,
    Migration,
    applied_migration_names,
    apply_migrations,
)
from appliance.store.outbox import FeatureSchemas, History, SchemaKey
from appliance.store.settings import StoreSettings
from appliance.store.sms import SmsQueue
from appliance.store.states import DetectorStates, StoredAck

__all__ = [
    "EvictionReport",
    "OutboxRange",
    "OutboxStats",
    "Store",
    "StorePragmas",
    "StoreSettings",
    "StoreStats",
    "StoredAck",
    "is_disk_full",
]

T = TypeVar("T")

log = structlog.get_logger(__name__)


@dataclass
class StoreStats:
    """Cumulative since open(); `bytes` is the size measured after the last write or eviction."""

    rows_written: int = 0
    write_transactions: int = 0
    bytes: int = 0
    evicted_by_age: int = 0
    """Rows of every table evicted by age (evicted_by_age + evicted_by_size = all evicted)."""
    evicted_by_size: int = 0
    evicted_features: int = 0
    """The same rows by table: evicted_features + evicted_scores + evicted_alerts."""
    evicted_scores: int = 0
    evicted_alerts: int = 0
    evicted_delivered: int = 0
    """The same rows again: evicted_delivered + lost_before_delivery = all evicted."""
    lost_before_delivery: int = 0
    """Rows evicted before their delivery was acknowledged (total since the database was
    created: outbox_stats().lost_before_delivery)."""
    write_errors: int = 0
    rejected_records: int = 0
    """Malformed records refused by the writer (logged with the reason), never written."""
    last_write_utc: float | None = None

    def count_write_error(self) -> None:
        self.write_errors += 1


@dataclass(frozen=True)
class EvictionReport:
    """What one enforce_limits call evicted (rows of all tables by reason, and by table)."""

    evicted_by_age: int
    evicted_by_size: int
    bytes_after: int
    evicted_features: int
    evicted_scores: int
    evicted_alerts: int
    lost_before_delivery: int
    """Of the rows evicted, those not yet acknowledged (the rest had been delivered)."""


def eviction_report(before: StoreStats, after: StoreStats) -> EvictionReport:
    return EvictionReport(
        evicted_by_age=after.evicted_by_age - before.evicted_by_age,
        evicted_by_size=after.evicted_by_size - before.evicted_by_size,
        bytes_after=after.bytes,
        evicted_features=after.evicted_features - before.evicted_features,
        evicted_scores=after.evicted_scores - before.evicted_scores,
        evicted_alerts=after.evicted_alerts - before.evicted_alerts,
        lost_before_delivery=after.lost_before_delivery - before.lost_before_delivery,
    )


def is_disk_full(error: StoreError) -> bool:
    """True if SQLite reported SQLITE_FULL (disk full, or max_page_count reached)."""
    cause = error.__cause__
    return isinstance(cause, sqlite3.Error) and cause.sqlite_errorcode == sqlite3.SQLITE_FULL


class Store:
    """The store file and its repositories. Build with `await Store.open(settings)`.

    Every operation is one job on the Database's writer thread (a write: one transaction), so no
    two operations ever interleave on the connection. `stats` and the feature-schema cache are
    updated on that thread only.
    """

    def __init__(
        self,
        settings: StoreSettings,
        db: Database,
        default_max_page_count: int,
        stats: StoreStats | None = None,
    ) -> None:
        self.settings = settings
        self.stats = stats or StoreStats()
        self._db = db
        self._default_max_page_count = default_max_page_count
        self._schemas = FeatureSchemas()
        self.delivery = Delivery(db)
        """The outbox as the uplink sees it (its only way into the store)."""
        self.sms_queue = SmsQueue(db, self._count_written)
        """The SMS queue and device flags, for the SMS intake and sender."""
        self.detector_states = DetectorStates(db, self._count_written)
        """Detector states, acknowledgements and the alert stage's writes, for detection."""
        self.history = History(db)
        """Stored records read back (commissioning replay, canary runs, training)."""

    @classmethod
    async def open(
        cls, settings: StoreSettings, *, migrations: Sequence[Migration] = MIGRATIONS
    ) -> Store:
        """Create the parent directory, open, configure and migrate; StoreError names path+reason.

        `migrations` is for tests that build a database as an older release would have.
        """
        path = settings.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"store {path}: cannot create its directory: {exc}") from exc
        stats = StoreStats()
        db = await Database.open(path, on_write_error=stats.count_write_error)

        def set_up(connection: sqlite3.Connection) -> int:
            configure(connection, path, settings.synchronous)
            apply_migrations(connection, migrations, path)
            return fetch_int(connection, "PRAGMA max_page_count")

        try:
            default_max_page_count = await db.run(set_up)
        except sqlite3.Error as exc:
            await db.close()
            raise StoreError(f"store {path}: cannot open: {exc}") from exc
        except BaseException:
            await db.close()
            raise
        store = cls(settings, db, default_max_page_count, stats)
        await db.run(store._refresh_bytes)
        return store

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Let pending writes finish, then close the connection (SQLite checkpoints the WAL)."""
        await self._db.close()

    # --- writes ---------------------------------------------------------------------------

    async def add_records(self, records: Sequence[StoredRecord]) -> list[int]:
        """Store `records` in one transaction; return their seqs, handed out in the given order.

        ValueError (before anything is written) if a record is malformed; StoreError if SQLite
        fails, in which case nothing of the batch is stored.
        """
        rows = [encode_record(record) for record in records]
        if not rows:
            return []
        new_schema_ids: dict[SchemaKey, int] = {}

        def insert(connection: sqlite3.Connection) -> list[int]:
            new_schema_ids.clear()  # what a rolled-back try added is not in the database
            return outbox_sql.insert_records(connection, rows, self._schemas, new_schema_ids)

        def committed(connection: sqlite3.Connection, seqs: list[int]) -> None:
            self._schemas.remember(new_schema_ids)
            self._count_written(connection, seqs)

        return await self._write(f"writing {len(rows)} records", insert, on_commit=committed)

    async def add_features(self, vectors: Sequence[FeatureVector]) -> list[int]:
        """add_records for feature vectors only."""
        return await self.add_records(vectors)

    async def applied_migrations(self) -> list[str]:
        return await self._db.run(applied_migration_names)

    async def pragmas(self) -> StorePragmas:
        return await self._db.run(read_pragmas)

    # --- limits ---------------------------------------------------------------------------

    async def enforce_limits(self, now: float) -> EvictionReport:
        """Evict by age, then by size (order: eviction.py); `now` is UTC epoch seconds.

        One job on the writer thread: it finishes even if the caller is cancelled (close()
        waits for it)."""
        settings = self.settings
        limits = Limits(
            cutoff=None if settings.retention_s is None else now - settings.retention_s,
            max_bytes=settings.max_bytes,
            retain_undelivered=settings.retain_undelivered,
        )
        before = replace(self.stats)

        def enforce(db: sqlite3.Connection) -> None:
            eviction.enforce_limits(db, settings.path, limits, self._count_evicted)
            self._refresh_bytes(db)

        try:
            await asyncio.shield(self._db.run(enforce))
        except sqlite3.Error as exc:
            raise StoreError(f"store {settings.path}: enforcing limits failed: {exc}") from exc
        return eviction_report(before, self.stats)

    def _count_evicted(self, rows: EvictionClass, deleted: int, reason: str) -> None:
        stats = self.stats
        if reason == "age":
            stats.evicted_by_age += deleted
        else:
            stats.evicted_by_size += deleted
        if rows.table == "features":
            stats.evicted_features += deleted
        elif rows.table == "scores":
            stats.evicted_scores += deleted
        else:
            stats.evicted_alerts += deleted
        if rows.delivered:
            stats.evicted_delivered += deleted
        else:
            stats.lost_before_delivery += deleted

    # --- test hooks -----------------------------------------------------------------------

    async def set_max_page_count_for_tests(self, pages: int | None) -> int:
        """Cap the database at `pages` (SQLite raises it to the current size) so the next write
        that needs a new page fails with SQLITE_FULL; None restores the default. Returns the cap."""
        limit = self._default_max_page_count if pages is None else pages
        return await self._db.run(lambda db: fetch_int(db, f"PRAGMA max_page_count = {int(limit)}"))

    # --- plumbing (the callbacks run on the writer thread) --------------------------------

    async def _write(
        self,
        what: str,
        body: Callable[[sqlite3.Connection], T],
        *,
        on_commit: Callable[[sqlite3.Connection, T], None] | None = None,
    ) -> T:
        """`body` in one transaction; StoreError (counted in stats.write_errors) if SQLite fails."""
        return await self._db.write(what, body, on_commit=on_commit)

    def _count_written(self, db: sqlite3.Connection, seqs: list[int]) -> None:
        if not seqs:
            return
        self.stats.rows_written += len(seqs)
        self.stats.write_transactions += 1
        self.stats.last_write_utc = time.time()
        self._refresh_bytes(db)

    def _measure_size(self, db: sqlite3.Connection) -> StoreSize:
        return measure_size(db, self.settings.path)

    def _refresh_bytes(self, db: sqlite3.Connection) -> None:
        """Update stats.bytes; a failed measurement is logged, never raised (data is safe)."""
        try:
            self.stats.bytes = self._measure_size(db).total_bytes
        except (sqlite3.Error, OSError) as exc:
            log.warning("store_size_unknown", path=str(self.settings.path), reason=str(exc))
