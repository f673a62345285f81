"""An asset's stored records of a time range, read back for a fetch on demand (PROTOCOL.md,
"Fetch on demand"): how many there are, and the next batch in seq order. Plain synchronous
functions of a sqlite3 connection, as in outbox.py; `Delivery` runs them."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from appliance.store.codec import StoredRecord, decode_alert, decode_score
from appliance.store.database import fetch_value
from appliance.store.outbox import (
    ALERT_COLUMNS,
    FEATURE_COLUMNS,
    SCORE_COLUMNS,
    FeatureSchemas,
    feature_rows,
)

TABLES = {  # table: (its time column, the columns outbox.py decodes)
    "features": ("window_end", FEATURE_COLUMNS),
    "scores": ("t", SCORE_COLUMNS),
    "alerts": ("t", ALERT_COLUMNS),
}


@dataclass(frozen=True)
class FetchSpan:
    """The stored records of one asset with since <= t < until."""

    records: int
    first_seq: int
    """0 when there are none."""
    last_seq: int


def fetch_span(db: sqlite3.Connection, asset: str, since: float, until: float) -> FetchSpan:
    count, first, last = 0, None, None
    for table, (time_column, _) in TABLES.items():
        n, low, high = db.execute(
            f"SELECT count(*), min(seq), max(seq) FROM {table} "
            f"WHERE asset = ? AND {time_column} >= ? AND {time_column} < ?",
            (asset, since, until),
        ).fetchone()
        if n:
            count += int(n)
            first = int(low) if first is None else min(first, int(low))
            last = int(high) if last is None else max(last, int(high))
    return FetchSpan(count, first or 0, last or 0)


def stored_assets(db: sqlite3.Connection) -> list[str]:
    """Every asset with a stored record, by name (a skip scan of the (asset, seq) indexes)."""
    assets: set[str] = set()
    for table in TABLES:
        asset = fetch_value(db, f"SELECT min(asset) FROM {table}")
        while asset is not None:
            assets.add(str(asset))
            asset = fetch_value(db, f"SELECT min(asset) FROM {table} WHERE asset > ?", (asset,))
    return sorted(assets)


def fetch_batch(
    db: sqlite3.Connection,
    schemas: FeatureSchemas,
    asset: str,
    since: float,
    until: float,
    after_seq: int,
    up_to_seq: int,
    limit: int,
) -> list[tuple[int, StoredRecord]]:
    """The asset's records with since <= t < until and after_seq < seq <= up_to_seq, at most
    `limit`, in seq order."""
    merged: list[tuple[int, StoredRecord]] = []
    for table, (time_column, columns) in TABLES.items():
        rows = db.execute(
            f"SELECT seq, {columns} FROM {table} WHERE asset = ? AND seq > ? AND seq <= ? "
            f"AND {time_column} >= ? AND {time_column} < ? ORDER BY seq LIMIT ?",
            (asset, after_seq, up_to_seq, since, until, limit),
        ).fetchall()
        if table == "features":
            merged.extend(feature_rows(db, schemas, rows))
        elif table == "scores":
            merged.extend((int(row[0]), decode_score(row[1:])) for row in rows)
        else:
            merged.extend((int(row[0]), decode_alert(row[1:])) for row in rows)
    merged.sort(key=lambda item: item[0])
    return merged[:limit]
