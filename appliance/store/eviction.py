"""What leaves the outbox when the store is too old or too big: the order as data, and its SQL.

`enforce_limits` runs the whole round as one job on the store's writer thread (so it finishes
even if its caller is cancelled), each chunk in a transaction of its own that also adds the
undelivered rows it deleted to uplink_state.lost_before_delivery; `count` is told of each
committed chunk.

Eviction order (Store.enforce_limits), each class oldest first:
  1. by age, rows older than `retention_s` (features by window end, scores and alerts by time):
     a. delivered rows of every kind;
     b. undelivered features and routine (non-anomalous) scores, unless `retain_undelivered`
        (set when an uplink is configured: then undelivered rows never leave by age, only by
        size); undelivered anomalous scores and alerts are never evicted by age;
  2. while the store is larger than `max_bytes`, oldest (lowest seq) first, in chunks:
     a. delivered rows: features; once none is left, routine scores; anomalous scores; alerts;
     b. only when no delivered row is left, undelivered rows in the same order: features, routine
        scores, anomalous scores, alerts last of all.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from appliance.store.database import (
    StoreSize,
    checkpoint,
    fetch_int,
    measure_size,
    reclaim_space,
    transaction,
)

log = structlog.get_logger(__name__)

MAX_EVICTION_CHUNK_ROWS = 5_000
TIME_COLUMN = {"features": "window_end", "scores": "t", "alerts": "t"}
ACKED_SEQ = "(SELECT acked_seq FROM uplink_state WHERE id = 1)"
DELIVERED = f"seq <= {ACKED_SEQ}"
UNDELIVERED = f"seq > {ACKED_SEQ}"
COUNT_LOST = "UPDATE uplink_state SET lost_before_delivery = lost_before_delivery + ? WHERE id = 1"


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


def rows_to_evict(excess_bytes: int, live_bytes: int, row_count: int) -> int:
    """Estimate how many of `row_count` rows free `excess_bytes`, from the average row's share
    (an overestimate of a row's size while other rows share the file: never evicts too many)."""
    if row_count == 0 or excess_bytes <= 0:
        return 0
    bytes_per_row = max(1.0, live_bytes / row_count)
    wanted = math.ceil(excess_bytes / bytes_per_row)
    return max(1, min(wanted, row_count, MAX_EVICTION_CHUNK_ROWS))


def delete_chunk(db: sqlite3.Connection, rows: EvictionClass, parameters: tuple[Any, ...]) -> int:
    """Delete a chunk of `rows` (in a transaction); undelivered ones are added to the persisted
    lost count in the same transaction. How many went."""
    deleted = db.execute(rows.delete_sql, parameters).rowcount
    if deleted and not rows.delivered:
        db.execute(COUNT_LOST, (deleted,))
    return deleted


def count_rows(db: sqlite3.Connection, rows: EvictionClass) -> int:
    return fetch_int(db, rows.count_sql)


Count = Callable[[EvictionClass, int, str], None]
"""Told (rows, how many deleted, "age" or "size") after each committed chunk."""


@dataclass(frozen=True)
class Limits:
    cutoff: float | None
    """Rows older than this (UTC epoch s) go; None: no age limit."""
    max_bytes: int | None
    retain_undelivered: bool


def enforce_limits(db: sqlite3.Connection, path: Path, limits: Limits, count: Count) -> None:
    """Evict by age, then by size, in the order above; then give the space back."""
    by_age = 0
    if limits.cutoff is not None:
        by_age = evict_older_than(db, limits.cutoff, limits.retain_undelivered, count)
    by_size = 0 if limits.max_bytes is None else evict_down_to(db, path, limits.max_bytes, count)
    if by_age and not by_size:
        reclaim_space(db)


def evict_older_than(
    db: sqlite3.Connection, cutoff: float, retain_undelivered: bool, count: Count
) -> int:
    evicted = 0
    for rows in evicted_by_age(retain_undelivered):
        evicted += evict_class_older_than(db, rows, cutoff, count)
    return evicted


def evict_class_older_than(
    db: sqlite3.Connection, rows: EvictionClass, cutoff: float, count: Count
) -> int:
    evicted = 0
    try:
        while True:
            deleted = delete_chunk_counted(
                db, rows, (cutoff, MAX_EVICTION_CHUNK_ROWS), "age", count
            )
            evicted += deleted
            if deleted < MAX_EVICTION_CHUNK_ROWS:
                return evicted
    finally:
        log_evicted(rows, evicted, reason="age")


def evict_down_to(db: sqlite3.Connection, path: Path, max_bytes: int, count: Count) -> int:
    size = measure_size(db, path)
    if size.total_bytes > max_bytes and size.wal_bytes:
        # A full WAL alone must not cost data: fold it into the database first.
        checkpoint(db)
        size = measure_size(db, path)
    evicted = 0
    for rows in EVICTED_BY_SIZE:
        if size.total_bytes <= max_bytes or size.wal_bytes:
            break  # fits, or a reader keeps the WAL from emptying: try again next round
        deleted, size = evict_class_down_to(db, path, rows, max_bytes, size, count)
        evicted += deleted
    return evicted


def evict_class_down_to(
    db: sqlite3.Connection,
    path: Path,
    rows: EvictionClass,
    max_bytes: int,
    size: StoreSize,
    count: Count,
) -> tuple[int, StoreSize]:
    """Evict `rows`, oldest first, in chunks until the store fits or none is left."""
    evicted = 0
    try:
        while size.total_bytes > max_bytes:
            live_bytes = size.live_pages * size.page_size
            chunk = rows_to_evict(size.total_bytes - max_bytes, live_bytes, count_rows(db, rows))
            if chunk == 0:
                break
            evicted += delete_chunk_counted(db, rows, (chunk,), "size", count)
            reclaim_space(db)
            smaller = measure_size(db, path)
            # Not smaller with an empty WAL: no whole page freed yet, take the next chunk.
            # Not smaller with a WAL left: a reader keeps it from emptying, try next round.
            stalled = smaller.total_bytes >= size.total_bytes and smaller.wal_bytes > 0
            size = smaller
            if stalled:
                break
        return evicted, size
    finally:
        log_evicted(rows, evicted, reason="size")


def delete_chunk_counted(
    db: sqlite3.Connection,
    rows: EvictionClass,
    parameters: tuple[Any, ...],
    reason: str,
    count: Count,
) -> int:
    deleted = transaction(db, lambda db: delete_chunk(db, rows, parameters))
    count(rows, deleted, reason)
    return deleted


def log_evicted(rows: EvictionClass, count: int, *, reason: str) -> None:
    """Evicted undelivered scores and alerts are never silent (the rest are counted and logged by
    the writer)."""
    if count and rows.table != "features" and not rows.delivered:
        log.warning("store_evicted_records", rows=rows.name, count=count, reason=reason)
