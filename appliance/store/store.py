"""The local store: one SQLite file behind one Database (database.py), whose thread is the one
writer. `Store` opens it (pragmas, migrations) and keeps StoreStats (stats.py); each consumer is
handed only its repository, built on the same Database: `recorder` (the store writer: records
in, limits enforced; recorder.py), `delivery` (the uplink, delivery.py), `sms_queue` (the SMS
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

Eviction (Recorder.enforce_limits) follows the order in eviction.py, each eviction counted in
StoreStats (by reason, by table, and as delivered or lost before delivery). Every undelivered row
evicted is counted as lost before delivery (StoreStats and, across restarts,
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

import sqlite3
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from appliance.errors import StoreError
from appliance.store.database import (
    Database,
    StorePragmas,
    configure,
    fetch_int,
    read_pragmas,
)
from appliance.store.delivery import Delivery, OutboxRange, OutboxStats
from appliance.store.history_query import HistoryQuery
from appliance.store.migrations import (
    MIGRATIONS,
    Migration,
    applied_migration_names,
    apply_migrations,
)
from appliance.store.outbox import History
from appliance.store.recorder import Recorder
from appliance.store.settings import StoreSettings
from appliance.store.sms import SmsQueue
from appliance.store.states import DetectorStates, StoredAck
from appliance.store.stats import EvictionReport, StoreStats, refresh_bytes

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
        self.recorder = Recorder(db, settings, self.stats, self._count_written)
        """Records in and the limits enforced, for the store writer."""
        self.delivery = Delivery(db)
        """The outbox as the uplink sees it (its only way into the store)."""
        self.sms_queue = SmsQueue(db, self._count_written)
        """The SMS queue and device flags, for the SMS intake and sender."""
        self.detector_states = DetectorStates(db, self._count_written)
        """Detector states, acknowledgements and the alert stage's writes, for detection."""
        self.history = History(db)
        """Stored records read back (commissioning replay, canary runs, training)."""
        self.history_query = HistoryQuery(db)
        """One asset's history downsampled for the status page's charts."""

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

    async def applied_migrations(self) -> list[str]:
        return await self._db.run(applied_migration_names)

    async def pragmas(self) -> StorePragmas:
        return await self._db.run(read_pragmas)

    # --- test hooks -----------------------------------------------------------------------

    async def set_max_page_count_for_tests(self, pages: int | None) -> int:
        """Cap the database at `pages` (SQLite raises it to the current size) so the next write
        that needs a new page fails with SQLITE_FULL; None restores the default. Returns the cap."""
        limit = self._default_max_page_count if pages is None else pages
        return await self._db.run(lambda db: fetch_int(db, f"PRAGMA max_page_count = {int(limit)}"))

    # --- plumbing (the callbacks run on the writer thread) --------------------------------

    def _count_written(self, db: sqlite3.Connection, seqs: list[int]) -> None:
        if not seqs:
            return
        self.stats.rows_written += len(seqs)
        self.stats.write_transactions += 1
        self.stats.last_write_utc = time.time()
        self._refresh_bytes(db)

    def _refresh_bytes(self, db: sqlite3.Connection) -> None:
        refresh_bytes(self.stats, db, self.settings.path)
