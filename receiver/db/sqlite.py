"""SQLite backend (the default: no setup). WAL, synchronous=FULL: an acknowledged record must
survive a power cut of the receiver, because the gateway deletes it on our word."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from appliance.records import FloatArray
from receiver.db.dialect import DbApiConnection, Dialect, Migration, Statements
from receiver.db.drift_tables import SQLITE_MIGRATION
from receiver.db.fleet_tables import SQLITE_MIGRATION as FLEET_MIGRATION
from receiver.db.summary_tables import SQLITE_MIGRATION as SUMMARIES_MIGRATION

BUSY_TIMEOUT_S = 30.0
PAGE_SIZE = 16384
"""For a new database (an existing one keeps its own): a feature row is ~450 bytes, and 16 KiB
pages cut the system time of writing them (bench/RESULTS.md, receiver ingest, 2026-12-07)."""
VALUES_DTYPE = np.dtype("<f8")

TABLES = """
CREATE TABLE feature_schemas (
    id INTEGER PRIMARY KEY,
    names_sha256 TEXT NOT NULL UNIQUE,
    names_json TEXT NOT NULL
);
CREATE TABLE features (
    gateway TEXT NOT NULL,
    seq INTEGER NOT NULL,
    asset TEXT NOT NULL,
    t REAL NOT NULL,
    schema_id INTEGER NOT NULL REFERENCES feature_schemas (id),
    feature_values BLOB NOT NULL,
    PRIMARY KEY (gateway, seq)
);
CREATE INDEX features_by_asset_t ON features (gateway, asset, t);
CREATE TABLE scores (
    gateway TEXT NOT NULL,
    seq INTEGER NOT NULL,
    asset TEXT NOT NULL,
    t REAL NOT NULL,
    model_id TEXT NOT NULL,
    error REAL,
    threshold REAL,
    anomalous INTEGER NOT NULL CHECK (anomalous IN (0, 1)),
    contributors_json TEXT NOT NULL,
    PRIMARY KEY (gateway, seq)
);
CREATE INDEX scores_by_asset_t ON scores (gateway, asset, t);
CREATE TABLE alerts (
    gateway TEXT NOT NULL,
    seq INTEGER NOT NULL,
    asset TEXT NOT NULL,
    t REAL NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('warning', 'critical')),
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    channel TEXT,
    PRIMARY KEY (gateway, seq)
);
CREATE INDEX alerts_by_asset_t ON alerts (gateway, asset, t);
CREATE TABLE parts (
    gateway TEXT NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    part INTEGER NOT NULL,
    kind TEXT NOT NULL,
    asset TEXT NOT NULL,
    records INTEGER NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (gateway, lo, hi, parts, part),
    CHECK (0 <= lo AND lo < hi AND 0 <= part AND part < parts)
) WITHOUT ROWID;
CREATE INDEX parts_by_hi ON parts (gateway, hi);
CREATE TABLE gateways (
    gateway TEXT PRIMARY KEY,
    chain_start INTEGER NOT NULL DEFAULT 0,
    acked_seq INTEGER NOT NULL DEFAULT 0,
    acked_at REAL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    newest_t REAL
)
"""

# Above the ack, complete ranges ordered by lo: a range that starts beyond everything before it
# (and beyond the ack) leaves a hole. Times are UTC epoch seconds; lag_s = now - newest record.
GATEWAY_STATUS_VIEW = """
CREATE VIEW gateway_status AS
WITH base AS (
    SELECT gateway, max(acked_seq, chain_start) AS start FROM gateways
),
pending AS (
    SELECT p.gateway, p.lo, p.hi, p.parts, count(*) AS got
    FROM parts AS p JOIN base AS b ON b.gateway = p.gateway
    WHERE p.hi > b.start
    GROUP BY p.gateway, p.lo, p.hi, p.parts
),
complete AS (
    SELECT c.gateway, c.lo,
        max(coalesce(max(c.hi) OVER (
            PARTITION BY c.gateway ORDER BY c.lo, c.hi
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), b.start), b.start) AS reach
    FROM pending AS c JOIN base AS b ON b.gateway = c.gateway
    WHERE c.got = c.parts
),
holes AS (
    SELECT gateway, count(*) AS holes, sum(lo - reach) AS missing_seqs
    FROM complete WHERE lo > reach GROUP BY gateway
),
incomplete AS (
    SELECT gateway, count(*) AS ranges FROM pending WHERE got < parts GROUP BY gateway
)
SELECT
    g.gateway,
    g.chain_start,
    g.acked_seq,
    g.acked_at,
    (SELECT max(hi) FROM parts AS p WHERE p.gateway = g.gateway) AS received_seq,
    g.first_seen,
    g.last_seen,
    g.newest_t,
    (julianday('now') - 2440587.5) * 86400.0 - g.newest_t AS lag_s,
    coalesce(h.holes, 0) AS holes,
    coalesce(h.missing_seqs, 0) AS missing_seqs,
    coalesce(i.ranges, 0) AS incomplete_ranges
FROM gateways AS g
LEFT JOIN holes AS h ON h.gateway = g.gateway
LEFT JOIN incomplete AS i ON i.gateway = g.gateway
"""

# Refused parts (PROTOCOL.md) and the messages the receiver could not store.
DEAD_LETTERS = """
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY,
    gateway TEXT,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload BLOB NOT NULL,
    payload_bytes INTEGER NOT NULL,
    stored_bytes INTEGER NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX dead_letters_by_gateway ON dead_letters (gateway, id);
CREATE TABLE receiver_counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
ALTER TABLE parts ADD COLUMN refused INTEGER NOT NULL DEFAULT 0 CHECK (refused IN (0, 1));
DROP VIEW gateway_status;
""" + GATEWAY_STATUS_VIEW.replace(
    "    coalesce(i.ranges, 0) AS incomplete_ranges\n",
    "    coalesce(i.ranges, 0) AS incomplete_ranges,\n"
    "    (SELECT count(*) FROM parts AS p WHERE p.gateway = g.gateway AND p.refused = 1)"
    " AS refused_parts,\n"
    "    (SELECT count(*) FROM dead_letters AS d WHERE d.gateway = g.gateway) AS dead_letters\n",
)

MIGRATIONS = (
    Migration("0001_records_parts_gateways", TABLES),
    Migration("0002_gateway_status_view", GATEWAY_STATUS_VIEW),
    Migration("0003_dead_letters_refused_parts", DEAD_LETTERS),
    SQLITE_MIGRATION,
    FLEET_MIGRATION,
    SUMMARIES_MIGRATION,
)

STATEMENTS = Statements(
    insert_schema=(
        "INSERT INTO feature_schemas (names_sha256, names_json) VALUES (?, ?)"
        " ON CONFLICT DO NOTHING"
    ),
    select_schema_id="SELECT id FROM feature_schemas WHERE names_sha256 = ?",
    insert_features=(
        "INSERT INTO features (gateway, seq, asset, t, schema_id, feature_values)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
    ),
    insert_scores=(
        "INSERT INTO scores (gateway, seq, asset, t, model_id, error, threshold, anomalous,"
        " contributors_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
    ),
    insert_alerts=(
        "INSERT INTO alerts (gateway, seq, asset, t, severity, kind, message, channel)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
    ),
    insert_part=(
        "INSERT INTO parts (gateway, lo, hi, parts, part, kind, asset, records, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
    ),
    upsert_gateway=(
        "INSERT INTO gateways (gateway, first_seen, last_seen, newest_t) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (gateway) DO UPDATE SET last_seen = excluded.last_seen,"
        " newest_t = CASE WHEN gateways.newest_t IS NULL OR excluded.newest_t > gateways.newest_t"
        " THEN excluded.newest_t ELSE gateways.newest_t END RETURNING acked_seq, chain_start"
    ),
    update_ack=(
        "UPDATE gateways SET acked_seq = ?, acked_at = ? WHERE gateway = ? AND acked_seq < ?"
    ),
    select_features=(
        "SELECT seq, t, schema_id, feature_values FROM features"
        " WHERE gateway = ? AND asset = ? AND t >= ? AND t < ? ORDER BY t, seq"
    ),
    select_score_flags=(
        "SELECT t, anomalous FROM scores WHERE gateway = ? AND asset = ? AND t >= ? AND t < ?"
    ),
    select_judging_alerts=(
        "SELECT t, severity, kind, message FROM alerts WHERE gateway = ? AND asset = ?"
        " AND kind IN ('anomaly_cleared', 'anomaly_not_a_fault', 'anomaly_real_fault')"
    ),
    select_status="SELECT * FROM gateway_status ORDER BY gateway",
    insert_refused_part=(
        "INSERT INTO parts (gateway, lo, hi, parts, part, kind, asset, records, received_at,"
        " refused) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT DO NOTHING"
    ),
    insert_dead_letter=(
        "INSERT INTO dead_letters (gateway, topic, reason, detail, payload, payload_bytes,"
        " stored_bytes, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
    ),
    select_dead_letters=(
        "SELECT id, gateway, topic, reason, detail, payload, payload_bytes, stored_bytes,"
        " received_at FROM dead_letters ORDER BY id DESC LIMIT ?"
    ),
)

CREATE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
)


def values_to_blob(values: FloatArray) -> bytes:
    """float64 little-endian, as the gateway keeps them: NaN and infinities survive."""
    return np.ascontiguousarray(values, dtype=VALUES_DTYPE).tobytes()


def values_from_blob(blob: Any) -> FloatArray:
    return np.frombuffer(bytes(blob), dtype=VALUES_DTYPE).astype(np.float64)


def is_transient(exc: Exception) -> bool:
    """Locked, busy, disk full or an I/O error may pass; a constraint violation will not."""
    return isinstance(exc, sqlite3.OperationalError)


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative/path.db` or `sqlite:////absolute/path.db` (SQLAlchemy's form)."""
    return Path(url.removeprefix("sqlite:///"))


def connector(path: Path) -> DbApiConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                         timeout=BUSY_TIMEOUT_S)  # fmt: skip
    db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # takes effect on a new database only
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        db.close()
        raise sqlite3.OperationalError(f"cannot use WAL mode here (journal_mode stays {mode})")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
    return db


def sqlite_dialect(url: str) -> tuple[Dialect, str]:
    """The dialect for a sqlite:/// URL, and how messages name the database."""
    path = sqlite_path(url)
    dialect = Dialect(
        name="sqlite",
        connect=lambda: connector(path),
        statements=STATEMENTS,
        migrations=MIGRATIONS,
        create_migrations_table=CREATE_MIGRATIONS_TABLE,
        begin="BEGIN IMMEDIATE",
        errors=(sqlite3.Error,),
        is_transient=is_transient,
        values_param=values_to_blob,
        values_from_db=values_from_blob,
    )
    return dialect, f"database {path}"
