"""What the store counts (StoreStats, on the status page) and what one eviction round removed.

Counted on the Database's writer thread only, right after the COMMIT of what is counted."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import structlog

from appliance.store.database import measure_size
from appliance.store.eviction import EvictionClass

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

    def count_evicted(self, rows: EvictionClass, deleted: int, reason: str) -> None:
        if reason == "age":
            self.evicted_by_age += deleted
        else:
            self.evicted_by_size += deleted
        if rows.table == "features":
            self.evicted_features += deleted
        elif rows.table == "scores":
            self.evicted_scores += deleted
        else:
            self.evicted_alerts += deleted
        if rows.delivered:
            self.evicted_delivered += deleted
        else:
            self.lost_before_delivery += deleted


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


def refresh_bytes(stats: StoreStats, db: sqlite3.Connection, path: Path) -> None:
    """Update stats.bytes; a failed measurement is logged, never raised (data is safe)."""
    try:
        stats.bytes = measure_size(db, path).total_bytes
    except (sqlite3.Error, OSError) as exc:
        log.warning("store_size_unknown", path=str(path), reason=str(exc))
