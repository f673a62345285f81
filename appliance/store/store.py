"""The local store: one SQLite file behind one aiosqlite connection, whose thread is the one writer.

Connection: WAL journal, an explicit synchronous level (NORMAL or FULL), busy_timeout, foreign keys
on; new databases are created with auto_vacuum=INCREMENTAL so evictions can give space back.

Tables: features, scores and alerts are outbound (seqs from one counter, read back merged by
`outbox` and in ranges by `outbox_range`); detector_state holds each detector's state across
restarts and is never evicted; uplink_state holds the acknowledged seq. sms_outbox is the durable
SMS queue (appliance/store/sms.py; its finished rows leave by `prune_sms`, never by the limits
below) and device_flags a few durable facts (`flag`, `set_flag`).

Delivered rows: `acknowledge(seq)` marks every row with a seq up to `seq` as delivered (the
receiver, or the broker in ack = "broker" mode, confirmed it). Delivered rows are NOT deleted at
once: they stay for the status page, commissioning replay and `appliance train`, and they are the
first to go when space or age requires it. Rows above the acknowledged seq are undelivered.

Eviction order (enforce_limits), each eviction counted in StoreStats (by reason, by table, and as
delivered or lost before delivery):
  1. by age, rows older than `retention_s` (features by window end, scores and alerts by time):
     a. delivered rows of every kind;
     b. undelivered features and routine (non-anomalous) scores, unless `retain_undelivered`
        (set when an uplink is configured: then undelivered rows never leave by age, only by
        size); undelivered anomalous scores and alerts are never evicted by age;
  2. while the store is larger than `max_bytes`, oldest (lowest seq) first, in chunks:
     a. delivered rows: features; once none is left, routine scores; anomalous scores; alerts;
     b. only when no delivered row is left, undelivered rows in the same order: features, routine
        scores, anomalous scores, alerts last of all.
Every undelivered row evicted is counted as lost before delivery (StoreStats and, across restarts,
uplink_state.lost_before_delivery, reported by `outbox_stats`); the uplink sends ranges, so the
receiver learns which seqs it will never get. Evicting an undelivered score or alert logs a
warning (store_evicted_records); the writer logs every eviction round, as a warning when it lost
undelivered rows. Evicting delivered rows is housekeeping: counted, not warned about.
After evicting, `PRAGMA incremental_vacuum` returns the free pages and a TRUNCATE checkpoint empties
the WAL, so the file on the SD card really shrinks.

Size is measured as (page_count - freelist_count) * page_size plus the WAL file's size.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiosqlite
import structlog

from appliance.errors import StoreError
from appliance.records import Alert, FeatureVector, Score
from appliance.store.codec import (
    EncodedRecord,
    FeatureRow,
    ScoreRow,
    StoredRecord,
    decode_alert,
    decode_names,
    decode_score,
    decode_state,
    decode_values,
    encode_names,
    encode_record,
    encode_state,
)
from appliance.store.migrations import (
    MIGRATIONS,
    Migration,
    applied_migration_names,
    apply_migrations,
)
from appliance.store.sms import (
    COUNT_BY_STATE,
    CREATED_SINCE,
    DELETE_FLAG,
    INSERT_SMS,
    LAST_GIVEN_UP,
    LAST_SENT,
    MARK_GIVEN_UP,
    MARK_PARTS_DONE,
    MARK_RETRY,
    MARK_SENDING,
    MARK_SENT,
    OLDEST_PENDING,
    PRUNE_FINISHED,
    SELECT_FLAG,
    SELECT_ONE,
    SELECT_PENDING,
    SET_REFERENCE,
    UPSERT_FLAG,
    NewSms,
    QueuedSms,
    SmsQueueStats,
    sms_row,
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
MAX_SEQ = 2**63 - 1

log = structlog.get_logger(__name__)

INSERT_FEATURE = (
    "INSERT INTO features (seq, asset, window_end, schema_id, values_f64le) VALUES (?, ?, ?, ?, ?)"
)
INSERT_SCORE = (
    "INSERT INTO scores (seq, asset, t, model_id, error, threshold, anomalous, contributors_json)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_ALERT = (
    "INSERT INTO alerts (seq, asset, t, severity, kind, channel, message)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
FEATURE_COLUMNS = "asset, window_end, schema_id, values_f64le"
SCORE_COLUMNS = "asset, t, model_id, error, threshold, anomalous, contributors_json"
ALERT_COLUMNS = "asset, t, severity, kind, channel, message"
# The highest seq among the first `limit` outbound rows with after_seq < seq <= up_to_seq
# (?1 = after_seq, ?2 = limit, ?3 = up_to_seq).
LAST_OUTBOX_SEQ = """
SELECT max(seq) FROM (
    SELECT seq FROM (
        SELECT seq FROM features WHERE seq > ?1 AND seq <= ?3 ORDER BY seq LIMIT ?2)
    UNION ALL SELECT seq FROM (
        SELECT seq FROM scores WHERE seq > ?1 AND seq <= ?3 ORDER BY seq LIMIT ?2)
    UNION ALL SELECT seq FROM (
        SELECT seq FROM alerts WHERE seq > ?1 AND seq <= ?3 ORDER BY seq LIMIT ?2)
    ORDER BY seq LIMIT ?2
)
"""
OUTBOUND_TABLES = ("features", "scores", "alerts")
TIME_COLUMN = {"features": "window_end", "scores": "t", "alerts": "t"}
SELECT_UPLINK_STATE = "SELECT acked_seq, acked_at, lost_before_delivery FROM uplink_state"
# Monotonic (?1 = seq, ?2 = now).
ACKNOWLEDGE = (
    "UPDATE uplink_state SET acked_seq = ?1, acked_at = ?2 WHERE id = 1 AND acked_seq < ?1"
)
COUNT_LOST = "UPDATE uplink_state SET lost_before_delivery = lost_before_delivery + ? WHERE id = 1"
UPSERT_STATE = (
    "INSERT INTO detector_state (asset, kind, state_json, updated_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (asset, kind) DO UPDATE"
    " SET state_json = excluded.state_json, updated_at = excluded.updated_at"
)
SELECT_STATES = "SELECT asset, kind, state_json FROM detector_state ORDER BY asset, kind"
DELETE_STATE = "DELETE FROM detector_state WHERE asset = ? AND kind = ?"
UPSERT_ACK = (
    "INSERT INTO alert_acks (alert_id, alert_t, acked_by, acked_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (alert_id) DO UPDATE SET alert_t = excluded.alert_t,"
    " acked_by = excluded.acked_by, acked_at = excluded.acked_at"
)
SELECT_ACKS = "SELECT alert_id, alert_t, acked_by, acked_at FROM alert_acks ORDER BY alert_id"
# Messages for one alert (?1 kind, ?2 asset, ?3 t) that were sent or may still be (?4 = now).
COUNT_SMS_FOR_ALERT = """
SELECT count(*) FROM sms_outbox
WHERE alert_kind = ?1 AND alert_asset = ?2 AND alert_t = ?3
  AND (state = 'sent' OR (state IN ('queued', 'sending') AND give_up_at > ?4))
"""


def select_sql(table: str, columns: str, *, by_asset: bool) -> str:
    """Rows with after_seq < seq <= up_to_seq (of one asset if `by_asset`), oldest first."""
    where = "asset = ? AND seq > ? AND seq <= ?" if by_asset else "seq > ? AND seq <= ?"
    return f"SELECT seq, {columns} FROM {table} WHERE {where} ORDER BY seq LIMIT ?"


RECENT_NORMAL_FEATURES = f"""
SELECT seq, {FEATURE_COLUMNS} FROM features AS f
WHERE asset = ? AND NOT EXISTS (
    SELECT 1 FROM scores AS s WHERE s.t = f.window_end AND s.asset = f.asset AND s.anomalous = 1
)
ORDER BY seq DESC LIMIT ?
"""


ACKED_SEQ = "(SELECT acked_seq FROM uplink_state WHERE id = 1)"
DELIVERED = f"seq <= {ACKED_SEQ}"
UNDELIVERED = f"seq > {ACKED_SEQ}"


@dataclass(frozen=True)
class EvictionClass:
    """Rows of one table that are evicted together, oldest first (lowest `order_by`).

    `where` may hold one `?` (the age cutoff). `delivered` rows were acknowledged; evicting any
    other row loses it before delivery (counted as such)."""

    name: str
    table: str
    where: str
    delivered: bool
    order_by: str = "seq"

    @property
    def delete_sql(self) -> str:
        return (
            f"DELETE FROM {self.table} WHERE seq IN (SELECT seq FROM {self.table}"
            f" WHERE {self.where} ORDER BY {self.order_by} LIMIT ?)"
        )

    @property
    def count_sql(self) -> str:
        # Feature rows span pages: count them on the narrow (asset, seq) index instead.
        source = "features INDEXED BY features_by_asset" if self.table == "features" else self.table
        return f"SELECT count(*) FROM {source} WHERE {self.where}"


def by_age(name: str, table: str, where: str, *, delivered: bool) -> EvictionClass:
    time_column = TIME_COLUMN[table]
    scope = DELIVERED if delivered else UNDELIVERED
    return EvictionClass(
        name, table, f"{scope} AND {where}{time_column} < ?", delivered, order_by=time_column
    )


DELIVERED_BY_AGE = (
    by_age("delivered features", "features", "", delivered=True),
    by_age("delivered scores", "scores", "", delivered=True),
    by_age("delivered alerts", "alerts", "", delivered=True),
)
UNDELIVERED_BY_AGE = (
    by_age("features", "features", "", delivered=False),
    by_age("routine scores", "scores", "anomalous = 0 AND ", delivered=False),
)
EVICTED_BY_SIZE = (
    EvictionClass("delivered features", "features", DELIVERED, True),
    EvictionClass("delivered routine scores", "scores", f"{DELIVERED} AND anomalous = 0", True),
    EvictionClass("delivered anomalous scores", "scores", f"{DELIVERED} AND anomalous = 1", True),
    EvictionClass("delivered alerts", "alerts", DELIVERED, True),
    EvictionClass("features", "features", UNDELIVERED, False),
    EvictionClass("routine scores", "scores", f"{UNDELIVERED} AND anomalous = 0", False),
    EvictionClass("anomalous scores", "scores", f"{UNDELIVERED} AND anomalous = 1", False),
    EvictionClass("alerts", "alerts", UNDELIVERED, False),
)


def evicted_by_age(retain_undelivered: bool) -> tuple[EvictionClass, ...]:
    return DELIVERED_BY_AGE if retain_undelivered else DELIVERED_BY_AGE + UNDELIVERED_BY_AGE


@dataclass(frozen=True)
class StoreSettings:
    path: Path
    synchronous: str = "NORMAL"
    max_bytes: int | None = None
    retention_s: float | None = None
    retain_undelivered: bool = False
    """True when an uplink delivers the outbox: retention then evicts delivered rows only."""

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


def log_evicted(rows: EvictionClass, count: int, *, reason: str) -> None:
    """Evicted undelivered scores and alerts are never silent (the rest are counted and logged by
    the writer)."""
    if count and rows.table != "features" and not rows.delivered:
        log.warning("store_evicted_records", rows=rows.name, count=count, reason=reason)


def is_disk_full(error: StoreError) -> bool:
    """True if SQLite reported SQLITE_FULL (disk full, or max_page_count reached)."""
    cause = error.__cause__
    return isinstance(cause, sqlite3.Error) and cause.sqlite_errorcode == sqlite3.SQLITE_FULL


def rows_to_evict(excess_bytes: int, live_bytes: int, row_count: int) -> int:
    """Estimate how many of `row_count` rows free `excess_bytes`, from the average row's share
    (an overestimate of a row's size while other rows share the file: never evicts too many)."""
    if row_count == 0 or excess_bytes <= 0:
        return 0
    bytes_per_row = max(1.0, live_bytes / row_count)
    wanted = math.ceil(excess_bytes / bytes_per_row)
    return max(1, min(wanted, row_count, MAX_EVICTION_CHUNK_ROWS))


@dataclass(frozen=True, slots=True)
class StoredAck:
    """An acknowledgement of the open alert `alert_id` as raised at `alert_t`."""

    alert_id: str
    alert_t: float
    by: str
    at: float


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

    async def add_records(self, records: Sequence[StoredRecord]) -> list[int]:
        """Store `records` in one transaction; return their seqs, handed out in the given order.

        ValueError (before anything is written) if a record is malformed; StoreError if SQLite
        fails, in which case nothing of the batch is stored.
        """
        rows = [encode_record(record) for record in records]
        if not rows:
            return []
        return await self._shielded(self._write_records(rows))

    async def add_features(self, vectors: Sequence[FeatureVector]) -> list[int]:
        """add_records for feature vectors only."""
        return await self.add_records(vectors)

    async def _write_records(self, rows: list[EncodedRecord]) -> list[int]:
        new_schema_ids: dict[SchemaKey, int] = {}
        seqs = await self._write(
            f"writing {len(rows)} records", lambda: self._insert_records(rows, new_schema_ids)
        )
        # Only now: ids inserted by a rolled-back transaction must never be cached.
        self._schema_ids.update(new_schema_ids)
        self.stats.rows_written += len(seqs)
        self.stats.write_transactions += 1
        self.stats.last_write_utc = time.time()
        await self._locked(self._refresh_bytes)
        return seqs

    async def _insert_records(
        self, rows: list[EncodedRecord], new_schema_ids: dict[SchemaKey, int]
    ) -> list[int]:
        feature_rows = [row for row in rows if isinstance(row, FeatureRow)]
        schema_ids = await self._schema_ids_of(feature_rows, new_schema_ids)
        seqs = await self._next_seqs(len(rows))
        inserts: dict[str, list[tuple[Any, ...]]] = {
            INSERT_FEATURE: [],
            INSERT_SCORE: [],
            INSERT_ALERT: [],
        }
        for seq, row in zip(seqs, rows, strict=True):
            if isinstance(row, FeatureRow):
                schema_id = schema_ids[row.asset, row.names]
                inserts[INSERT_FEATURE].append(
                    (seq, row.asset, row.window_end, schema_id, row.values_f64le)
                )
            elif isinstance(row, ScoreRow):
                inserts[INSERT_SCORE].append((seq, *row))
            else:
                inserts[INSERT_ALERT].append((seq, *row))
        for sql, parameters in inserts.items():
            if parameters:
                await self._execute_many(sql, parameters)
        return list(seqs)

    async def _schema_ids_of(
        self, rows: list[FeatureRow], new_schema_ids: dict[SchemaKey, int]
    ) -> dict[SchemaKey, int]:
        schema_ids: dict[SchemaKey, int] = {}
        for key in dict.fromkeys((row.asset, row.names) for row in rows):
            cached = self._schema_ids.get(key)
            if cached is None:
                cached = new_schema_ids[key] = await self._find_or_add_schema(*key)
            schema_ids[key] = cached
        return schema_ids

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
        return await self._reading(
            "features", lambda: self._read_features(asset, after_seq, MAX_SEQ, limit)
        )

    async def recent_normal_features(self, asset: str, limit: int) -> list[FeatureVector]:
        """The asset's newest `limit` stored windows that no model scored anomalous, oldest
        first (a new model's canary run, appliance/ota)."""

        async def read() -> list[FeatureVector]:
            rows = list(await self._db.execute_fetchall(RECENT_NORMAL_FEATURES, (asset, limit)))
            rows.reverse()
            return [vector for _, vector in await self._feature_rows(rows)]

        return await self._reading("recent features", read)

    async def scores(
        self, asset: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, Score]]:
        """Stored scores with seq > after_seq, oldest first, at most `limit`."""
        return await self._reading(
            "scores", lambda: self._read_scores(asset, after_seq, MAX_SEQ, limit)
        )

    async def alerts(
        self, asset: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, Alert]]:
        """Stored alerts with seq > after_seq, oldest first, at most `limit`."""
        return await self._reading(
            "alerts", lambda: self._read_alerts(asset, after_seq, MAX_SEQ, limit)
        )

    async def outbox(self, after_seq: int = 0, limit: int = 1000) -> list[tuple[int, StoredRecord]]:
        """Features, scores and alerts with seq > after_seq merged in seq order, at most `limit`."""
        return await self._reading(
            "the outbox", lambda: self._read_outbox(after_seq, limit, MAX_SEQ)
        )

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

        async def read() -> OutboxRange | None:
            bound = await fetch_int(self._db, "SELECT last_seq FROM outbox_sequence")
            if up_to_seq is not None:
                bound = min(bound, up_to_seq)
            if bound <= after_seq:
                return None
            records = await self._read_outbox(after_seq, limit, bound)
            hi = records[-1][0] if len(records) >= limit else bound
            return OutboxRange(after_seq, hi, records)

        return await self._reading("an outbox range", read)

    async def _read_outbox(
        self, after_seq: int, limit: int, up_to_seq: int
    ) -> list[tuple[int, StoredRecord]]:
        last = await fetch_value(self._db, LAST_OUTBOX_SEQ, (after_seq, limit, up_to_seq))
        if last is None:
            return []
        up_to_seq = int(last)
        merged: list[tuple[int, StoredRecord]] = [
            *await self._read_features(None, after_seq, up_to_seq, limit),
            *await self._read_scores(None, after_seq, up_to_seq, limit),
            *await self._read_alerts(None, after_seq, up_to_seq, limit),
        ]
        merged.sort(key=lambda item: item[0])
        return merged

    async def _read_features(
        self, asset: str | None, after_seq: int, up_to_seq: int, limit: int
    ) -> list[tuple[int, FeatureVector]]:
        rows = await self._select("features", FEATURE_COLUMNS, asset, after_seq, up_to_seq, limit)
        return await self._feature_rows(rows)

    async def _feature_rows(self, rows: list[sqlite3.Row]) -> list[tuple[int, FeatureVector]]:
        names_by_id = await self._names_by_schema_id({int(row[3]) for row in rows})
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

    async def _read_scores(
        self, asset: str | None, after_seq: int, up_to_seq: int, limit: int
    ) -> list[tuple[int, Score]]:
        rows = await self._select("scores", SCORE_COLUMNS, asset, after_seq, up_to_seq, limit)
        return [(int(row[0]), decode_score(row[1:])) for row in rows]

    async def _read_alerts(
        self, asset: str | None, after_seq: int, up_to_seq: int, limit: int
    ) -> list[tuple[int, Alert]]:
        rows = await self._select("alerts", ALERT_COLUMNS, asset, after_seq, up_to_seq, limit)
        return [(int(row[0]), decode_alert(row[1:])) for row in rows]

    async def _select(
        self,
        table: str,
        columns: str,
        asset: str | None,
        after_seq: int,
        up_to_seq: int,
        limit: int,
    ) -> list[sqlite3.Row]:
        if asset is None:
            sql = select_sql(table, columns, by_asset=False)
            return list(await self._db.execute_fetchall(sql, (after_seq, up_to_seq, limit)))
        sql = select_sql(table, columns, by_asset=True)
        return list(await self._db.execute_fetchall(sql, (asset, after_seq, up_to_seq, limit)))

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

    # --- delivery -------------------------------------------------------------------------

    async def acknowledge(self, seq: int) -> int:
        """Mark every row with a seq up to `seq` as delivered, in one transaction; return the
        acknowledged seq now in effect.

        Monotonic: a lower seq than the current one changes nothing. ValueError (nothing
        changed) for a negative seq or one beyond the last seq handed out: acknowledging it would
        mark rows as delivered that were never sent.
        """
        if seq < 0:
            raise ValueError(f"cannot acknowledge a negative seq ({seq})")

        async def update() -> int:
            last_seq = await fetch_int(self._db, "SELECT last_seq FROM outbox_sequence")
            if seq > last_seq:
                raise ValueError(
                    f"cannot acknowledge seq {seq}: the last seq handed out is {last_seq}"
                )
            await self._db.execute_fetchall(ACKNOWLEDGE, (seq, time.time()))
            return await fetch_int(self._db, "SELECT acked_seq FROM uplink_state")

        return await self._shielded(self._write(f"acknowledging seq {seq}", update))

    async def renumber_above(self, seq: int) -> int:
        """Put this store's numbering behind `seq`, which a receiver acknowledged although this
        store never handed it out (the store was replaced, or restored from a backup).

        In one transaction: every undelivered row is renumbered (in order) to follow `seq`,
        `seq` becomes the acknowledged seq and the counter moves on by as much, so no record
        reuses a (gateway, seq) the receiver already holds (it would be dropped as a duplicate).
        Returns how many rows were renumbered; nothing changes if `seq` is not beyond the last
        seq handed out.
        """

        async def renumber() -> int:
            last_seq = await fetch_int(self._db, "SELECT last_seq FROM outbox_sequence")
            if seq <= last_seq:
                return 0
            acked = await fetch_int(self._db, "SELECT acked_seq FROM uplink_state")
            offset = seq - acked  # the first undelivered row, acked + 1, becomes seq + 1
            moved = 0
            for table in OUTBOUND_TABLES:
                async with self._db.execute(
                    f"UPDATE {table} SET seq = seq + ? WHERE seq > ?", (offset, acked)
                ) as cursor:
                    moved += cursor.rowcount
            await self._db.execute_fetchall(
                "UPDATE outbox_sequence SET last_seq = ? WHERE id = 1", (last_seq + offset,)
            )
            await self._db.execute_fetchall(ACKNOWLEDGE, (seq, time.time()))
            return moved

        return await self._shielded(self._write(f"renumbering above seq {seq}", renumber))

    async def acked_seq(self) -> int:
        """The highest seq acknowledged so far (0 if none)."""
        return await self._reading(
            "the acknowledged seq",
            lambda: fetch_int(self._db, "SELECT acked_seq FROM uplink_state"),
        )

    async def outbox_stats(self) -> OutboxStats:
        """Size and age of the undelivered outbox, plus the acknowledged and last seqs.

        Counts walk only the undelivered entries of the narrow (asset, seq) indexes, one range per
        asset, so the cost follows the backlog, not the store.
        """
        return await self._reading("outbox statistics", self._read_outbox_stats)

    async def _read_outbox_stats(self) -> OutboxStats:
        rows = await self._db.execute_fetchall(SELECT_UPLINK_STATE)
        acked_seq, acked_at, lost = next(iter(rows))
        records = 0
        oldest: list[float] = []
        for table in OUTBOUND_TABLES:
            records += await self._count_after(table, int(acked_seq))
            first = await self._db.execute_fetchall(
                f"SELECT {TIME_COLUMN[table]} FROM {table} WHERE seq > ? ORDER BY seq LIMIT 1",
                (acked_seq,),
            )
            oldest.extend(float(row[0]) for row in first)
        return OutboxStats(
            records=records,
            oldest_t=min(oldest, default=None),
            last_seq=await fetch_int(self._db, "SELECT last_seq FROM outbox_sequence"),
            acked_seq=int(acked_seq),
            acked_at=None if acked_at is None else float(acked_at),
            lost_before_delivery=int(lost),
        )

    async def _count_after(self, table: str, after_seq: int) -> int:
        """Rows of `table` with seq > after_seq, counted per asset on its (asset, seq) index."""
        count = 0
        asset = await fetch_value(self._db, f"SELECT min(asset) FROM {table}")
        while asset is not None:
            count += int(
                await fetch_value(
                    self._db,
                    f"SELECT count(*) FROM {table} WHERE asset = ? AND seq > ?",
                    (asset, after_seq),
                )
            )
            asset = await fetch_value(
                self._db, f"SELECT min(asset) FROM {table} WHERE asset > ?", (asset,)
            )
        return count

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

    # --- detector state -------------------------------------------------------------------

    async def save_states(self, states: Mapping[tuple[str, str], Mapping[str, object]]) -> None:
        """Upsert each (asset, kind) -> state as JSON, all in one transaction.

        ValueError (before anything is written) if a state cannot be JSON; StoreError if SQLite
        fails, in which case no state of the call is saved.
        """
        now = time.time()
        parameters = [
            (asset, kind, encode_state(state), now) for (asset, kind), state in states.items()
        ]
        if parameters:
            await self._shielded(
                self._write(
                    f"saving {len(parameters)} detector states",
                    lambda: self._execute_many(UPSERT_STATE, parameters),
                )
            )

    async def add_alerts_with_states(
        self, alerts: Sequence[Alert], states: Mapping[tuple[str, str], Mapping[str, object]]
    ) -> list[int]:
        """add_records(alerts) and save_states(states) in one transaction (the alert stage: the
        alerts it passed on and its own state are durable together); the alerts' seqs.
        ValueError (nothing written) if an alert or a state is malformed; StoreError if SQLite
        fails, in which case nothing is stored."""
        rows = [encode_record(alert) for alert in alerts]
        now = time.time()
        parameters = [
            (asset, kind, encode_state(state), now) for (asset, kind), state in states.items()
        ]

        async def write() -> list[int]:
            seqs = await self._insert_records(rows, {}) if rows else []
            if parameters:
                await self._execute_many(UPSERT_STATE, parameters)
            return seqs

        what = f"storing {len(rows)} alerts with their state"
        seqs = await self._shielded(self._write(what, write))
        if seqs:
            self.stats.rows_written += len(seqs)
            self.stats.write_transactions += 1
            self.stats.last_write_utc = time.time()
            await self._locked(self._refresh_bytes)
        return seqs

    async def load_states(self) -> dict[tuple[str, str], dict[str, object]]:
        """Every saved state by (asset, kind); a row that does not parse is logged and skipped."""
        rows = await self._reading(
            "detector state", lambda: self._db.execute_fetchall(SELECT_STATES)
        )
        states: dict[tuple[str, str], dict[str, object]] = {}
        for asset, kind, state_json in rows:
            try:
                states[str(asset), str(kind)] = decode_state(str(state_json))
            except ValueError as exc:
                log.warning("detector_state_unreadable", asset=asset, kind=kind, reason=str(exc))
        return states

    async def delete_state(self, asset: str, kind: str) -> None:
        """Forget one saved state (e.g. after recommissioning); no error if there is none."""
        await self._shielded(
            self._write(
                f"deleting detector state {asset}/{kind}",
                lambda: self._execute_many(DELETE_STATE, [(asset, kind)]),
            )
        )

    # --- acknowledgements -----------------------------------------------------------------

    async def add_acknowledgement(self, ack: StoredAck, record: Alert) -> int:
        """Keep `ack` (replacing an older one of the same alert) and add `record` (the alert
        record that tells the receiver) to the outbox, in one transaction; the record's seq.
        ValueError (nothing written) if the record is malformed; StoreError if SQLite fails."""
        row = encode_record(record)
        parameters = (ack.alert_id, ack.alert_t, ack.by, ack.at)

        async def insert() -> int:
            await self._execute_many(UPSERT_ACK, [parameters])
            return (await self._insert_records([row], {}))[0]

        seq = await self._shielded(self._write(f"acknowledging {ack.alert_id}", insert))
        self.stats.rows_written += 1
        self.stats.write_transactions += 1
        self.stats.last_write_utc = time.time()
        return seq

    async def acknowledgements(self) -> list[StoredAck]:
        rows = await self._reading(
            "acknowledgements", lambda: self._db.execute_fetchall(SELECT_ACKS)
        )
        return [StoredAck(str(a), float(t), str(by), float(at)) for a, t, by, at in rows]

    # --- SMS queue (appliance/store/sms.py) ------------------------------------------------

    async def sms_for_alert(self, alert: Alert, now: float) -> int:
        """How many messages for `alert` (same kind, asset and time) were sent or are still
        queued and not yet due to give up at `now`."""
        parameters = (alert.kind, alert.asset, alert.t, now)
        value = await self._reading(
            "SMS for an alert",
            lambda: fetch_value(self._db, COUNT_SMS_FOR_ALERT, parameters),
        )
        return int(value or 0)

    async def enqueue_sms(
        self, messages: Sequence[NewSms], now: float, give_up_after_s: float
    ) -> list[QueuedSms]:
        """Queue `messages` in one transaction (all or none), due now, giving up at
        now + give_up_after_s; the rows as stored (each with its reference, id % 256)."""
        if not messages:
            return []

        async def insert() -> list[QueuedSms]:
            rows = []
            for message in messages:
                alert = message.alert
                added = await self._db.execute_fetchall(
                    INSERT_SMS,
                    (
                        now, alert.kind, alert.asset, alert.severity, alert.t, message.recipient,
                        message.text, now, now + give_up_after_s,
                    ),
                )  # fmt: skip
                sms_id = int(next(iter(added))[0])
                await self._db.execute_fetchall(SET_REFERENCE, (sms_id,))
                rows.append(await self._sms_by_id(sms_id))
            return rows

        return await self._shielded(self._write(f"queueing {len(messages)} SMS", insert))

    async def pending_sms(self, limit: int = 1000) -> list[QueuedSms]:
        """Messages still to send (queued or sending), oldest first."""
        rows = await self._reading(
            "the SMS queue", lambda: self._db.execute_fetchall(SELECT_PENDING, (limit,))
        )
        return [sms_row(row) for row in rows]

    async def sms(self, sms_id: int) -> QueuedSms:
        """One message by id; StoreError if there is none."""
        return await self._reading(f"SMS {sms_id}", lambda: self._sms_by_id(sms_id))

    async def mark_sms_sending(self, sms_id: int) -> None:
        """The sender is about to hand the message to the modem (one more attempt)."""
        await self._sms_update(f"marking SMS {sms_id} sending", MARK_SENDING, (sms_id,))

    async def mark_sms_parts_done(self, sms_id: int, parts_done: int) -> None:
        """The modem accepted the message's parts before `parts_done` (never goes down)."""
        await self._sms_update(
            f"recording SMS {sms_id} parts", MARK_PARTS_DONE, (parts_done, sms_id)
        )

    async def mark_sms_sent(self, sms_id: int, now: float) -> None:
        await self._sms_update(f"marking SMS {sms_id} sent", MARK_SENT, (now, sms_id))

    async def retry_sms_later(
        self,
        sms_id: int,
        next_attempt_at: float,
        error: str,
        parts_done: int,
        *,
        maybe_sent: bool = False,
    ) -> None:
        """Back to queued, due at `next_attempt_at`, resuming from `parts_done`; `maybe_sent`:
        the attempt may have sent it unconfirmed (counted in the row's `maybe_sent`)."""
        await self._sms_update(
            f"rescheduling SMS {sms_id}",
            MARK_RETRY,
            (next_attempt_at, error, parts_done, int(maybe_sent), sms_id),
        )

    async def give_up_sms(self, sms_id: int, reason: str, alert: Alert) -> int | None:
        """Give up on a pending message and add `alert` (kind sms_given_up) to the outbox, in one
        transaction; the alert's seq, or None (nothing written) if the message was not pending."""
        row = encode_record(alert)

        async def give_up() -> int | None:
            async with self._db.execute(MARK_GIVEN_UP, (reason, sms_id)) as cursor:
                changed = cursor.rowcount
            if not changed:
                return None
            return (await self._insert_records([row], {}))[0]

        seq = await self._shielded(self._write(f"giving up SMS {sms_id}", give_up))
        if seq is not None:
            self.stats.rows_written += 1
            self.stats.write_transactions += 1
            self.stats.last_write_utc = time.time()
        return seq

    async def sms_stats(self) -> SmsQueueStats:
        async def read() -> SmsQueueStats:
            counts = {
                str(state): int(count)
                for state, count in await self._db.execute_fetchall(COUNT_BY_STATE)
            }
            oldest = await fetch_value(self._db, OLDEST_PENDING)
            last_sent = await fetch_value(self._db, LAST_SENT)
            given_up = list(await self._db.execute_fetchall(LAST_GIVEN_UP))
            return SmsQueueStats(
                queued=counts.get("queued", 0) + counts.get("sending", 0),
                sending=counts.get("sending", 0),
                sent=counts.get("sent", 0),
                given_up=counts.get("given_up", 0),
                oldest_pending_created=None if oldest is None else float(oldest),
                last_sent_at=None if last_sent is None else float(last_sent),
                last_given_up=sms_row(given_up[0]) if given_up else None,
            )

        return await self._reading("SMS statistics", read)

    async def sms_created_since(self, t: float) -> list[tuple[str, float]]:
        """(recipient, created) of every message queued at or after `t`, oldest first (what
        the alert policy's rate limits count after a restart)."""
        rows = await self._reading(
            "SMS history", lambda: self._db.execute_fetchall(CREATED_SINCE, (t,))
        )
        return [(str(recipient), float(created)) for recipient, created in rows]

    async def prune_sms(self, before: float) -> int:
        """Delete sent and given-up messages created before `before`; how many went."""

        async def prune() -> int:
            async with self._db.execute(PRUNE_FINISHED, (before,)) as cursor:
                return int(cursor.rowcount)

        return await self._shielded(self._write("pruning old SMS", prune))

    async def _sms_by_id(self, sms_id: int) -> QueuedSms:
        rows = list(await self._db.execute_fetchall(SELECT_ONE, (sms_id,)))
        if not rows:
            raise StoreError(f"store {self.settings.path}: no SMS with id {sms_id}")
        return sms_row(rows[0])

    async def _sms_update(self, what: str, sql: str, parameters: tuple[Any, ...]) -> None:
        await self._shielded(self._write(what, lambda: self._execute_many(sql, [parameters])))

    # --- device flags ---------------------------------------------------------------------

    async def flag(self, key: str) -> str | None:
        """A durable fact by key (e.g. "sms.pin_rejected"), None if not set."""
        rows = await self._reading(
            f"flag {key}", lambda: self._db.execute_fetchall(SELECT_FLAG, (key,))
        )
        return next((str(row[0]) for row in rows), None)

    async def set_flag(self, key: str, value: str | None) -> None:
        """Set (or with None, clear) a durable fact."""
        parameters: tuple[Any, ...]
        if value is None:
            sql, parameters = DELETE_FLAG, (key,)
        else:
            sql, parameters = UPSERT_FLAG, (key, value, time.time())
        await self._shielded(
            self._write(f"setting flag {key}", lambda: self._execute_many(sql, [parameters]))
        )

    # --- limits ---------------------------------------------------------------------------

    async def enforce_limits(self, now: float) -> EvictionReport:
        """Evict by age, then by size (order: module docstring); `now` is UTC epoch seconds."""
        return await self._shielded(self._enforce_limits(now))

    async def _enforce_limits(self, now: float) -> EvictionReport:
        retention_s, max_bytes = self.settings.retention_s, self.settings.max_bytes
        before = replace(self.stats)
        try:
            by_age = 0 if retention_s is None else await self._evict_older_than(now - retention_s)
            by_size = 0 if max_bytes is None else await self._evict_down_to(max_bytes)
            if by_age and not by_size:
                await self._reclaim_space()
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.settings.path}: enforcing limits failed: {exc}") from exc
        async with self._lock:
            await self._refresh_bytes()
        return eviction_report(before, self.stats)

    async def _evict_older_than(self, cutoff: float) -> int:
        evicted = 0
        for rows in evicted_by_age(self.settings.retain_undelivered):
            evicted += await self._evict_class_older_than(rows, cutoff)
        return evicted

    async def _evict_class_older_than(self, rows: EvictionClass, cutoff: float) -> int:
        evicted = 0
        try:
            while True:
                deleted = await self._delete_in_transaction(rows, (cutoff, MAX_EVICTION_CHUNK_ROWS))
                evicted += deleted
                self._count_evicted(rows, deleted, reason="age")
                if deleted < MAX_EVICTION_CHUNK_ROWS:
                    return evicted
        finally:
            log_evicted(rows, evicted, reason="age")

    async def _evict_down_to(self, max_bytes: int) -> int:
        size = await self._locked(self._measure_size)
        if size.total_bytes > max_bytes and size.wal_bytes:
            # A full WAL alone must not cost data: fold it into the database first.
            await self._locked(self._checkpoint)
            size = await self._locked(self._measure_size)
        evicted = 0
        for rows in EVICTED_BY_SIZE:
            if size.total_bytes <= max_bytes or size.wal_bytes:
                break  # fits, or a reader keeps the WAL from emptying: try again next round
            deleted, size = await self._evict_class_down_to(rows, max_bytes, size)
            evicted += deleted
        return evicted

    async def _evict_class_down_to(
        self, rows: EvictionClass, max_bytes: int, size: StoreSize
    ) -> tuple[int, StoreSize]:
        """Evict `rows`, oldest first, in chunks until the store fits or none is left."""
        evicted = 0
        try:
            while size.total_bytes > max_bytes:
                row_count = await self._locked(functools.partial(self._count, rows.count_sql))
                live_bytes = size.live_pages * size.page_size
                chunk = rows_to_evict(size.total_bytes - max_bytes, live_bytes, row_count)
                if chunk == 0:
                    break
                deleted = await self._delete_in_transaction(rows, (chunk,))
                evicted += deleted
                self._count_evicted(rows, deleted, reason="size")
                await self._reclaim_space()
                smaller = await self._locked(self._measure_size)
                # Not smaller with an empty WAL: no whole page freed yet, take the next chunk.
                # Not smaller with a WAL left: a reader keeps it from emptying, try next round.
                stalled = smaller.total_bytes >= size.total_bytes and smaller.wal_bytes > 0
                size = smaller
                if stalled:
                    break
            return evicted, size
        finally:
            log_evicted(rows, evicted, reason="size")

    def _count_evicted(self, rows: EvictionClass, deleted: int, *, reason: str) -> None:
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

    async def _delete_in_transaction(self, rows: EvictionClass, parameters: tuple[Any, ...]) -> int:
        """Delete a chunk of `rows`; undelivered ones are added to the persisted lost count in
        the same transaction."""

        async def delete() -> int:
            async with self._db.execute(rows.delete_sql, parameters) as cursor:
                deleted = cursor.rowcount
            if deleted and not rows.delivered:
                await self._db.execute_fetchall(COUNT_LOST, (deleted,))
            return deleted

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

    async def _count(self, sql: str) -> int:
        return await fetch_int(self._db, sql)

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

    async def _reading(self, what: str, read: Callable[[], Awaitable[T]]) -> T:
        """Run `read` under the lock; StoreError names what was being read if SQLite fails."""
        async with self._lock:
            try:
                return await read()
            except sqlite3.Error as exc:
                raise StoreError(
                    f"store {self.settings.path}: reading {what} failed: {exc}"
                ) from exc

    async def _write(self, what: str, body: Callable[[], Awaitable[T]]) -> T:
        """Run `body` in one transaction under the lock; StoreError (counted) if SQLite fails."""
        async with self._lock:
            try:
                return await self._in_transaction(body)
            except sqlite3.Error as exc:
                self.stats.write_errors += 1
                raise StoreError(f"store {self.settings.path}: {what} failed: {exc}") from exc

    async def _execute_many(self, sql: str, parameters: Iterable[Sequence[Any]]) -> None:
        async with self._db.executemany(sql, parameters):
            pass

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


async def fetch_value(db: aiosqlite.Connection, sql: str, parameters: Sequence[Any] = ()) -> Any:
    rows = await db.execute_fetchall(sql, parameters)
    return next(iter(rows))[0]


async def fetch_int(db: aiosqlite.Connection, sql: str) -> int:
    return int(await fetch_value(db, sql))


def wal_size(path: Path) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return 0
