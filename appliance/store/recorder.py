"""The store writer's part of the store: records into the outbox, one transaction per batch, and
the limits enforced (in eviction.py's order), each counted in StoreStats on the writer thread."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace

from appliance.errors import StoreError
from appliance.records import FeatureVector
from appliance.store import eviction, outbox
from appliance.store.codec import StoredRecord, encode_record
from appliance.store.database import Database
from appliance.store.eviction import Limits
from appliance.store.outbox import FeatureSchemas, SchemaKey
from appliance.store.settings import StoreSettings
from appliance.store.stats import EvictionReport, StoreStats, eviction_report, refresh_bytes

CountWritten = Callable[[sqlite3.Connection, list[int]], None]


class Recorder:
    """Built by Store (`store.recorder`); `stats` is the store's, shared with the status page."""

    def __init__(
        self,
        db: Database,
        settings: StoreSettings,
        stats: StoreStats,
        count_written: CountWritten,
    ) -> None:
        self.stats = stats
        self._db = db
        self._settings = settings
        self._count_written = count_written
        self._schemas = FeatureSchemas()

    @property
    def max_bytes(self) -> int | None:
        """The size cap enforce_limits keeps to (None: none)."""
        return self._settings.max_bytes

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
            return outbox.insert_records(connection, rows, self._schemas, new_schema_ids)

        def committed(connection: sqlite3.Connection, seqs: list[int]) -> None:
            self._schemas.remember(new_schema_ids)
            self._count_written(connection, seqs)

        return await self._db.write(f"writing {len(rows)} records", insert, on_commit=committed)

    async def add_features(self, vectors: Sequence[FeatureVector]) -> list[int]:
        """add_records for feature vectors only."""
        return await self.add_records(vectors)

    async def enforce_limits(self, now: float) -> EvictionReport:
        """Evict by age, then by size (order: eviction.py); `now` is UTC epoch seconds.

        One job on the writer thread: it finishes even if the caller is cancelled (close()
        waits for it)."""
        settings = self._settings
        limits = Limits(
            cutoff=None if settings.retention_s is None else now - settings.retention_s,
            max_bytes=settings.max_bytes,
            retain_undelivered=settings.retain_undelivered,
        )
        before = replace(self.stats)

        def enforce(db: sqlite3.Connection) -> None:
            eviction.enforce_limits(db, settings.path, limits, self.stats.count_evicted)
            refresh_bytes(self.stats, db, settings.path)

        try:
            await asyncio.shield(self._db.run(enforce))
        except sqlite3.Error as exc:
            raise StoreError(f"store {settings.path}: enforcing limits failed: {exc}") from exc
        return eviction_report(before, self.stats)
