"""The local store: one SQLite file behind one aiosqlite connection, whose thread is the one writer.

Connection: WAL journal, an explicit synchronous level (NORMAL or FULL), busy_timeout, foreign keys
on; new databases are created with auto_vacuum=INCREMENTAL so evictions can give space back.

Eviction order (enforce_limits), each eviction counted in StoreStats:
  1. features whose window ended more than `retention_s` ago;
  2. while the store is larger than `max_bytes`: the oldest features (lowest seq) first, in chunks.
  Later issues add scores and alerts: they are evicted last, after every feature, and never
  silently (their own counters).
After evicting, `PRAGMA incremental_vacuum` returns the free pages and a TRUNCATE checkpoint empties
the WAL, so the file on the SD card really shrinks.

Size is measured as (page_count - freelist_count) * page_size plus the WAL file's size.
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiosqlite
import structlog

from appliance.errors import StoreError
from appliance.records import FeatureVector
from appliance.store.codec import (
    FeatureRow,
    decode_names,
    decode_values,
    encode_feature_vector,
    encode_names,
)
from appliance.store.migrations import (
    MIGRATIONS,
    Migration,
    applied_migration_names,
    apply_migrations,
)

T = TypeVar("T")
SchemaKey = tuple[str, tuple[str, ...]]  # (asset, feature names)

SYNCHRONOUS_MODES = ("NORMAL", "FULL")
SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
AUTO_VACUUM_NAMES = {0: "NONE", 1: "FULL", 2: "INCREMENTAL"}
BUSY_TIMEOUT_MS = 5_000
# After a checkpoint the WAL file is truncated to this size instead of staying at its peak.
WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024
MAX_EVICTION_CHUNK_ROWS = 5_000

log = structlog.get_logger(__name__)

INSERT_FEATURE = (
    "INSERT INTO features (seq, asset, window_end, schema_id, values_f64le) VALUES (?, ?, ?, ?, ?)"
)
SELECT_FEATURES = (
    "SELECT seq, asset, window_end, schema_id, values_f64le FROM features"
    " WHERE seq > ? ORDER BY seq LIMIT ?"
)
SELECT_ASSET_FEATURES = (
    "SELECT seq, asset, window_end, schema_id, values_f64le FROM features"
    " WHERE asset = ? AND seq > ? ORDER BY seq LIMIT ?"
)
DELETE_FEATURES_OLDER_THAN = (
    "DELETE FROM features WHERE seq IN"
    " (SELECT seq FROM features WHERE window_end < ? ORDER BY seq LIMIT ?)"
)
DELETE_OLDEST_FEATURES = (
    "DELETE FROM features WHERE seq IN (SELECT seq FROM features ORDER BY seq LIMIT ?)"
)


@dataclass(frozen=True)
class StoreSettings:
    path: Path
    synchronous: str = "NORMAL"
    max_bytes: int | None = None
    retention_s: float | None = None

    def __post_init__(self) -> None:
        if self.synchronous not in SYNCHRONOUS_MODES:
            raise StoreError(
                f"store {self.path}: synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, "
                f"not {self.synchronous!r}"
            )
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise StoreError(f"store {self.path}: max_bytes must be positive, not {self.max_bytes}")
        if self.retention_s is not None and not self.retention_s > 0:
            raise StoreError(
                f"store {self.path}: retention_s must be positive, not {self.retention_s}"
            )


@dataclass
class StoreStats:
    """Cumulative since open(); `bytes` is the size measured after the last write or eviction."""

    rows_written: int = 0
    write_transactions: int = 0
    bytes: int = 0
    evicted_by_age: int = 0
    evicted_by_size: int = 0
    write_errors: int = 0
    rejected_vectors: int = 0
    """Malformed vectors refused by the writer (logged with the reason), never written."""
    last_write_utc: float | None = None


@dataclass(frozen=True)
class EvictionReport:
    evicted_by_age: int
    evicted_by_size: int
    bytes_after: int


@dataclass(frozen=True)
class StorePragmas:
    """The connection settings SQLite reports as in effect (for tests, check-config, status)."""

    journal_mode: str
    synchronous: str
    busy_timeout_ms: int
    foreign_keys: bool
    auto_vacuum: str


@dataclass(frozen=True)
class StoreSize:
    page_size: int
    live_pages: int
    wal_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.live_pages * self.page_size + self.wal_bytes


def is_disk_full(error: StoreError) -> bool:
    """True if SQLite reported SQLITE_FULL (disk full, or max_page_count reached)."""
    cause = error.__cause__
    return isinstance(cause, sqlite3.Error) and cause.sqlite_errorcode == sqlite3.SQLITE_FULL


def rows_to_evict(excess_bytes: int, live_bytes: int, row_count: int) -> int:
    """Estimate how many feature rows free `excess_bytes`, from the average row's share."""
    if row_count == 0 or excess_bytes <= 0:
        return 0
    bytes_per_row = max(1.0, live_bytes / row_count)
    wanted = math.ceil(excess_bytes / bytes_per_row)
    return max(1, min(wanted, row_count, MAX_EVICTION_CHUNK_ROWS))


class Store:
    """All SQLite access of the appliance. Build with `await Store.open(settings)`.

    Every operation holds one asyncio.Lock, so a multi-statement transaction is never interleaved
    with another operation on the shared connection. Write transactions run in a shielded task: a
    cancelled caller never leaves a transaction half done (close() waits for such tasks).
    """

    def __init__(
        self, settings: StoreSettings, db: aiosqlite.Connection, default_max_page_count: int
    ) -> None:
        self.settings = settings
        self.stats = StoreStats()
        self._db = db
        self._default_max_page_count = default_max_page_count
        self._lock = asyncio.Lock()
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._schema_ids: dict[SchemaKey, int] = {}
        self._schema_names: dict[int, tuple[str, ...]] = {}

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
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"store {path}: cannot open: {exc}") from exc
        try:
            await configure_connection(db, settings)
            await apply_migrations(db, migrations, path)
            default_max_page_count = await fetch_int(db, "PRAGMA max_page_count")
        except sqlite3.Error as exc:
            await db.close()
            raise StoreError(f"store {path}: cannot open: {exc}") from exc
        except BaseException:
            await db.close()
            raise
        store = cls(settings, db, default_max_page_count)
        await store._refresh_bytes()
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
        """Let in-flight writes finish, then close the connection (SQLite checkpoints the WAL)."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))
        await self._db.close()

    # --- writes ---------------------------------------------------------------------------

    async def add_features(self, vectors: Sequence[FeatureVector]) -> list[int]:
        """Store `vectors` in one transaction; return their seqs in order.

        ValueError (before anything is written) if a vector is malformed; StoreError if SQLite
        fails, in which case nothing of the batch is stored.
        """
        rows = [encode_feature_vector(vector) for vector in vectors]
        if not rows:
            return []
        return await self._shielded(self._write_feature_rows(rows))

    async def _write_feature_rows(self, rows: list[FeatureRow]) -> list[int]:
        async with self._lock:
            new_schema_ids: dict[SchemaKey, int] = {}
            try:
                seqs = await self._in_transaction(
                    lambda: self._insert_feature_rows(rows, new_schema_ids)
                )
            except sqlite3.Error as exc:
                self.stats.write_errors += 1
                raise StoreError(
                    f"store {self.settings.path}: writing {len(rows)} feature vectors failed: {exc}"
                ) from exc
            # Only now: ids inserted by a rolled-back transaction must never be cached.
            self._schema_ids.update(new_schema_ids)
            self.stats.rows_written += len(seqs)
            self.stats.write_transactions += 1
            self.stats.last_write_utc = time.time()
            await self._refresh_bytes()
        return seqs

    async def _insert_feature_rows(
        self, rows: list[FeatureRow], new_schema_ids: dict[SchemaKey, int]
    ) -> list[int]:
        schema_ids: dict[SchemaKey, int] = {}
        for key in dict.fromkeys((row.asset, row.names) for row in rows):
            cached = self._schema_ids.get(key)
            if cached is None:
                cached = new_schema_ids[key] = await self._find_or_add_schema(*key)
            schema_ids[key] = cached
        seqs = await self._next_seqs(len(rows))
        parameters = [
            (
                seq,
                row.asset,
                row.window_end,
                schema_ids[row.asset, row.names],
                row.values_f64le,
            )
            for seq, row in zip(seqs, rows, strict=True)
        ]
        async with self._db.executemany(INSERT_FEATURE, parameters):
            pass
        return list(seqs)

    async def _find_or_add_schema(self, asset: str, names: tuple[str, ...]) -> int:
        names_json = encode_names(names)
        found = await self._db.execute_fetchall(
            "SELECT id FROM feature_schemas WHERE asset = ? AND names_json = ?", (asset, names_json)
        )
        for row in found:
            return int(row[0])
        added = await self._db.execute_fetchall(
            "INSERT INTO feature_schemas (asset, names_json) VALUES (?, ?) RETURNING id",
            (asset, names_json),
        )
        return int(next(iter(added))[0])

    async def _next_seqs(self, count: int) -> range:
        """Take `count` numbers from the outbox sequence shared by every outbound table."""
        rows = await self._db.execute_fetchall(
            "UPDATE outbox_sequence SET last_seq = last_seq + ? WHERE id = 1 RETURNING last_seq",
            (count,),
        )
        last_seq = int(next(iter(rows))[0])
        return range(last_seq - count + 1, last_seq + 1)

    # --- reads ----------------------------------------------------------------------------

    async def features(
        self, asset: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, FeatureVector]]:
        """Stored features with seq > after_seq, oldest first, at most `limit`."""
        async with self._lock:
            try:
                if asset is None:
                    rows = list(
                        await self._db.execute_fetchall(SELECT_FEATURES, (after_seq, limit))
                    )
                else:
                    rows = list(
                        await self._db.execute_fetchall(
                            SELECT_ASSET_FEATURES, (asset, after_seq, limit)
                        )
                    )
                names_by_id = await self._names_by_schema_id({int(row[3]) for row in rows})
            except sqlite3.Error as exc:
                raise StoreError(
                    f"store {self.settings.path}: reading features failed: {exc}"
                ) from exc
        return [
            (
                int(seq),
                FeatureVector(
                    asset=str(row_asset),
                    window_end=float(window_end),
                    names=names_by_id[int(schema_id)],
                    values=decode_values(values_f64le),
                ),
            )
            for seq, row_asset, window_end, schema_id, values_f64le in rows
        ]

    async def _names_by_schema_id(self, schema_ids: set[int]) -> dict[int, tuple[str, ...]]:
        missing = sorted(schema_ids - self._schema_names.keys())
        if missing:
            placeholders = ", ".join("?" * len(missing))
            rows = await self._db.execute_fetchall(
                f"SELECT id, names_json FROM feature_schemas WHERE id IN ({placeholders})", missing
            )
            for schema_id, names_json in rows:
                self._schema_names[int(schema_id)] = decode_names(str(names_json))
        return {schema_id: self._schema_names[schema_id] for schema_id in schema_ids}

    async def latest_seq(self) -> int:
        """The last seq handed out (also if that row has since been evicted); 0 if none yet."""
        async with self._lock:
            return await fetch_int(self._db, "SELECT last_seq FROM outbox_sequence")

    async def applied_migrations(self) -> list[str]:
        async with self._lock:
            return await applied_migration_names(self._db)

    async def pragmas(self) -> StorePragmas:
        async with self._lock:
            return StorePragmas(
                journal_mode=str(await fetch_value(self._db, "PRAGMA journal_mode")).upper(),
                synchronous=SYNCHRONOUS_NAMES[await fetch_int(self._db, "PRAGMA synchronous")],
                busy_timeout_ms=await fetch_int(self._db, "PRAGMA busy_timeout"),
                foreign_keys=bool(await fetch_int(self._db, "PRAGMA foreign_keys")),
                auto_vacuum=AUTO_VACUUM_NAMES[await fetch_int(self._db, "PRAGMA auto_vacuum")],
            )

    # --- limits ---------------------------------------------------------------------------

    async def enforce_limits(self, now: float) -> EvictionReport:
        """Evict by age, then by size (order: module docstring); `now` is UTC epoch seconds."""
        return await self._shielded(self._enforce_limits(now))

    async def _enforce_limits(self, now: float) -> EvictionReport:
        retention_s, max_bytes = self.settings.retention_s, self.settings.max_bytes
        try:
            by_age = 0 if retention_s is None else await self._evict_older_than(now - retention_s)
            by_size = 0 if max_bytes is None else await self._evict_down_to(max_bytes)
            if by_age and not by_size:
                await self._reclaim_space()
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.settings.path}: enforcing limits failed: {exc}") from exc
        async with self._lock:
            await self._refresh_bytes()
        return EvictionReport(by_age, by_size, self.stats.bytes)

    async def _evict_older_than(self, cutoff: float) -> int:
        evicted = 0
        while True:
            deleted = await self._delete_in_transaction(
                DELETE_FEATURES_OLDER_THAN, (cutoff, MAX_EVICTION_CHUNK_ROWS)
            )
            evicted += deleted
            self.stats.evicted_by_age += deleted
            if deleted < MAX_EVICTION_CHUNK_ROWS:
                return evicted

    async def _evict_down_to(self, max_bytes: int) -> int:
        size = await self._locked(self._measure_size)
        if size.total_bytes > max_bytes and size.wal_bytes:
            # A full WAL alone must not cost data: fold it into the database first.
            await self._locked(self._checkpoint)
            size = await self._locked(self._measure_size)
        evicted = 0
        while size.total_bytes > max_bytes:
            row_count = await self._locked(self._count_features)
            live_bytes = size.live_pages * size.page_size
            chunk = rows_to_evict(size.total_bytes - max_bytes, live_bytes, row_count)
            if chunk == 0:
                break
            deleted = await self._delete_in_transaction(DELETE_OLDEST_FEATURES, (chunk,))
            evicted += deleted
            self.stats.evicted_by_size += deleted
            await self._reclaim_space()
            smaller = await self._locked(self._measure_size)
            if smaller.total_bytes >= size.total_bytes:
                break  # no progress (e.g. another reader holds the WAL): try again next round
            size = smaller
        return evicted

    async def _delete_in_transaction(self, sql: str, parameters: tuple[Any, ...]) -> int:
        async def delete() -> int:
            async with self._db.execute(sql, parameters) as cursor:
                return cursor.rowcount

        async with self._lock:
            return await self._in_transaction(delete)

    async def _reclaim_space(self) -> None:
        async with self._lock:
            # executescript runs the pragma to completion; execute() would free a single page.
            async with self._db.executescript("PRAGMA incremental_vacuum;"):
                pass
            await self._checkpoint()

    async def _checkpoint(self) -> None:
        await self._db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")

    async def _count_features(self) -> int:
        return await fetch_int(self._db, "SELECT count(*) FROM features")

    async def _measure_size(self) -> StoreSize:
        rows = await self._db.execute_fetchall(
            "SELECT page_count, freelist_count, page_size"
            " FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
        )
        page_count, freelist_count, page_size = next(iter(rows))
        return StoreSize(
            page_size=int(page_size),
            live_pages=int(page_count) - int(freelist_count),
            wal_bytes=wal_size(self.settings.path),
        )

    async def _refresh_bytes(self) -> None:
        """Update stats.bytes; a failed measurement is logged, never raised (data is safe)."""
        try:
            self.stats.bytes = (await self._measure_size()).total_bytes
        except (sqlite3.Error, OSError) as exc:
            log.warning("store_size_unknown", path=str(self.settings.path), reason=str(exc))

    # --- test hooks -----------------------------------------------------------------------

    async def set_max_page_count_for_tests(self, pages: int | None) -> int:
        """Cap the database at `pages` (SQLite raises it to the current size) so the next write
        that needs a new page fails with SQLITE_FULL; None restores the default. Returns the cap."""
        limit = self._default_max_page_count if pages is None else pages
        async with self._lock:
            return await fetch_int(self._db, f"PRAGMA max_page_count = {int(limit)}")

    # --- plumbing -------------------------------------------------------------------------

    async def _shielded(self, work: Coroutine[Any, Any, T]) -> T:
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return await asyncio.shield(task)

    async def _locked(self, operation: Callable[[], Awaitable[T]]) -> T:
        async with self._lock:
            return await operation()

    async def _in_transaction(self, body: Callable[[], Awaitable[T]]) -> T:
        """BEGIN IMMEDIATE, body, COMMIT; roll back on any failure. The caller holds the lock."""
        await self._db.execute_fetchall("BEGIN IMMEDIATE")
        try:
            result = await body()
            await self._db.execute_fetchall("COMMIT")
        except BaseException:
            # SQLite may already have rolled back by itself (e.g. after SQLITE_FULL).
            if self._db.in_transaction:
                await self._db.execute_fetchall("ROLLBACK")
            raise
        return result


async def configure_connection(db: aiosqlite.Connection, settings: StoreSettings) -> None:
    if await fetch_int(db, "PRAGMA page_count") == 0:
        # Only takes effect before the first table exists.
        await db.execute_fetchall("PRAGMA auto_vacuum = INCREMENTAL")
    journal_mode = str(await fetch_value(db, "PRAGMA journal_mode = WAL"))
    if journal_mode.lower() != "wal":
        raise StoreError(
            f"store {settings.path}: cannot use WAL mode here (journal_mode stays {journal_mode})"
        )
    await db.execute_fetchall(f"PRAGMA synchronous = {settings.synchronous}")
    await db.execute_fetchall(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await db.execute_fetchall("PRAGMA foreign_keys = ON")
    await db.execute_fetchall(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")


async def fetch_value(db: aiosqlite.Connection, sql: str) -> Any:
    rows = await db.execute_fetchall(sql)
    return next(iter(rows))[0]


async def fetch_int(db: aiosqlite.Connection, sql: str) -> int:
    return int(await fetch_value(db, sql))


def wal_size(path: Path) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return 0
