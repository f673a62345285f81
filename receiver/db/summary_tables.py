"""The `summary` uplink profile's per-minute aggregates (PROTOCOL.md, "Uplink profiles"): their
table (one migration per backend), how a summary part is stored and how they are read back.

A minute's aggregate is keyed (gateway, asset, minute): the gateway computes it from what its
store held up to the window that closed the minute, the same figures whenever it is sent again,
so a re-sent one is a duplicate (ignored). A summary part's `parts` row counts the seqs it
summarises (`records`), so a complete range accounts for every seq of it: in full, summarised,
or absent on the gateway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from appliance.records import FloatArray
from appliance.uplink.schema import Part
from appliance.uplink.schema.summary_part import MinuteSummary
from receiver.db.dialect import DbApiConnection, Dialect, Migration

NAME = "0006_uplink_summaries"

SQLITE = """
CREATE TABLE summaries (
    gateway TEXT NOT NULL,
    asset TEXT NOT NULL,
    minute INTEGER NOT NULL,
    windows INTEGER NOT NULL,
    schema_id INTEGER REFERENCES feature_schemas (id),
    min_values BLOB NOT NULL,
    mean_values BLOB NOT NULL,
    max_values BLOB NOT NULL,
    scores INTEGER NOT NULL,
    max_error REAL,
    threshold REAL,
    anomalous INTEGER NOT NULL,
    alarm INTEGER NOT NULL CHECK (alarm IN (0, 1)),
    received_at REAL NOT NULL,
    PRIMARY KEY (gateway, asset, minute)
) WITHOUT ROWID
"""

POSTGRES = """
CREATE TABLE summaries (
    gateway text NOT NULL,
    asset text NOT NULL,
    minute bigint NOT NULL,
    windows integer NOT NULL,
    schema_id bigint REFERENCES feature_schemas (id),
    min_values float8[] NOT NULL,
    mean_values float8[] NOT NULL,
    max_values float8[] NOT NULL,
    scores integer NOT NULL,
    max_error float8,
    threshold float8,
    anomalous integer NOT NULL,
    alarm boolean NOT NULL,
    received_at float8 NOT NULL,
    PRIMARY KEY (gateway, asset, minute)
)
"""

SQLITE_MIGRATION = Migration(NAME, SQLITE)
POSTGRES_MIGRATION = Migration(NAME, POSTGRES)

COLUMNS = (
    "gateway, asset, minute, windows, schema_id, min_values, mean_values, max_values, scores,"
    " max_error, threshold, anomalous, alarm, received_at"
)
INSERT = {
    "sqlite": f"INSERT INTO summaries ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
    " ?) ON CONFLICT DO NOTHING",
    "postgresql": f"INSERT INTO summaries ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s::float8[],"
    " %s::float8[], %s::float8[], %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
}
SELECT = {
    "sqlite": f"SELECT {COLUMNS} FROM summaries WHERE gateway = ? AND asset = ?"
    " AND minute >= ? AND minute < ? ORDER BY minute",
    "postgresql": f"SELECT {COLUMNS} FROM summaries WHERE gateway = %s AND asset = %s"
    " AND minute >= %s AND minute < %s ORDER BY minute",
}


def summary_row(
    dialect: Dialect, part: Part, minute: MinuteSummary, schema_id: int | None, received_at: float
) -> tuple[Any, ...]:
    values = dialect.values_param
    alarm: Any = minute.alarm if dialect.name == "postgresql" else int(minute.alarm)
    return (
        part.gateway,
        minute.asset,
        minute.minute,
        minute.windows,
        schema_id,
        values(minute.minimum),
        values(minute.mean),
        values(minute.maximum),
        minute.scores,
        none_if_nan(minute.max_error),
        none_if_nan(minute.threshold),
        minute.anomalous,
        alarm,
        received_at,
    )


def none_if_nan(value: float) -> float | None:
    return None if value != value else value


def insert_summaries(
    db: DbApiConnection,
    dialect: Dialect,
    part: Part,
    schema_ids: dict[tuple[str, ...], int],
    received_at: float,
) -> int:
    """The part's minutes (a minute already stored is a duplicate, ignored); how many were new."""
    if part.summary is None or not part.summary.minutes:
        return 0
    rows = [
        summary_row(dialect, part, minute, schema_ids.get(minute.names), received_at)
        for minute in part.summary.minutes
    ]
    cursor = db.cursor()
    try:
        cursor.executemany(INSERT[dialect.name], rows)
        return int(cursor.rowcount)
    finally:
        cursor.close()


@dataclass(frozen=True, eq=False)
class StoredSummary:
    asset: str
    minute: int
    windows: int
    schema_id: int | None
    minimum: FloatArray
    mean: FloatArray
    maximum: FloatArray
    scores: int
    max_error: float | None
    threshold: float | None
    anomalous: int
    alarm: bool


def stored_summaries(dialect: Dialect, rows: Sequence[Sequence[Any]]) -> list[StoredSummary]:
    to_array = dialect.values_from_db
    return [
        StoredSummary(
            asset=str(row[1]),
            minute=int(row[2]),
            windows=int(row[3]),
            schema_id=None if row[4] is None else int(row[4]),
            minimum=to_array(row[5]),
            mean=to_array(row[6]),
            maximum=to_array(row[7]),
            scores=int(row[8]),
            max_error=None if row[9] is None else float(row[9]),
            threshold=None if row[10] is None else float(row[10]),
            anomalous=int(row[11]),
            alarm=bool(row[12]),
        )
        for row in rows
    ]
