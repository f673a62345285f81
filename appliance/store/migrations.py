"""Named schema migrations, applied in order, one transaction each, recorded in schema_migrations.

Never edit or reorder a migration that has shipped: add a new one at the end. A database that has
recorded a name this release does not know was written by a newer release and is refused.

Sequence numbers: every row that must leave the device (features, scores, alerts) takes the next
number from the single `outbox_sequence` counter and keeps it as its INTEGER PRIMARY KEY, so the
uplink can send one ordered stream across tables and the receiver can drop duplicates by
(gateway, seq). The counter only grows: a number is never reused after deletions
(outbox.next_seqs). `detector_state` is not outbound: it is the detectors' own state (threshold,
alarm, CUSUM, commissioning) restored after a restart, one row per (asset, kind).

Uplink bookkeeping (`uplink_state`, one row): `acked_seq` is the highest seq whose delivery was
confirmed (by the receiver, or by the broker in ack = "broker" mode); rows at or below it are
delivered and only kept for local use (status page, commissioning replay, `appliance train`).
`lost_before_delivery` counts, across restarts, rows evicted before they were acknowledged.

SMS (`sms_outbox`): the durable SMS queue, one row per message and recipient, with its state
(queued -> sending -> sent, or given_up), attempts, backoff and the parts already accepted by the
modem (appliance/store/sms.py). It is not part of the outbound sequence: an SMS that gives up
adds an ordinary alert row (kind sms_given_up), which is. `device_flags` holds small durable facts.

Acknowledgements (`alert_acks`): who acknowledged which open alert, one row per alert id
("asset|channel|family", the alert router's key), for the raise at `alert_t` (a later raise of the
same id needs a new acknowledgement). Each acknowledgement also adds an ordinary alert row (kind
<family>_acknowledged) in the same transaction, so it goes over the uplink like any alert.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from appliance.errors import StoreError

MigrationFunction = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Migration:
    """`apply` is a SQL script or a function of the connection; both run inside the migration's
    transaction."""

    name: str
    apply: str | MigrationFunction


OUTBOX_SEQUENCE_AND_FEATURES = """
CREATE TABLE outbox_sequence (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL
);
INSERT INTO outbox_sequence (id, last_seq) VALUES (1, 0);

CREATE TABLE feature_schemas (
    id INTEGER PRIMARY KEY,
    asset TEXT NOT NULL,
    names_json TEXT NOT NULL,
    UNIQUE (asset, names_json)
);

CREATE TABLE features (
    seq INTEGER PRIMARY KEY,
    asset TEXT NOT NULL,
    window_end REAL NOT NULL,
    schema_id INTEGER NOT NULL REFERENCES feature_schemas (id),
    values_f64le BLOB NOT NULL
);
CREATE INDEX features_by_asset ON features (asset, seq);
"""

FEATURES_BY_WINDOW_END = """
CREATE INDEX features_by_window_end ON features (window_end);
"""

SCORES_ALERTS_DETECTOR_STATE = """
CREATE TABLE scores (
    seq INTEGER PRIMARY KEY,
    asset TEXT NOT NULL,
    t REAL NOT NULL,
    model_id TEXT NOT NULL,
    error REAL,
    threshold REAL,
    anomalous INTEGER NOT NULL CHECK (anomalous IN (0, 1)),
    contributors_json TEXT NOT NULL
);
CREATE INDEX scores_by_asset ON scores (asset, seq);
-- Only routine scores are evicted by age.
CREATE INDEX routine_scores_by_t ON scores (t) WHERE anomalous = 0;

CREATE TABLE alerts (
    seq INTEGER PRIMARY KEY,
    asset TEXT NOT NULL,
    t REAL NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('warning', 'critical')),
    kind TEXT NOT NULL,
    channel TEXT,
    message TEXT NOT NULL
);
CREATE INDEX alerts_by_asset ON alerts (asset, seq);

CREATE TABLE detector_state (
    asset TEXT NOT NULL,
    kind TEXT NOT NULL,
    state_json TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (asset, kind)
);
"""

UPLINK_STATE = """
CREATE TABLE uplink_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    acked_seq INTEGER NOT NULL CHECK (acked_seq >= 0),
    acked_at REAL,
    lost_before_delivery INTEGER NOT NULL CHECK (lost_before_delivery >= 0)
);
INSERT INTO uplink_state (id, acked_seq, acked_at, lost_before_delivery) VALUES (1, 0, NULL, 0);

-- Acknowledged scores and alerts of every kind are evicted by age: find them by time.
CREATE INDEX scores_by_t ON scores (t);
CREATE INDEX alerts_by_t ON alerts (t);
"""

SMS_OUTBOX = """
-- One row per (alert, recipient) accepted for SMS. AUTOINCREMENT: an id is never reused, so
-- `reference` (id % 256, the concatenation reference of a multipart message) stays the same
-- for the message across retries and restarts.
CREATE TABLE sms_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    alert_kind TEXT NOT NULL,
    alert_asset TEXT NOT NULL,
    alert_severity TEXT NOT NULL CHECK (alert_severity IN ('warning', 'critical')),
    alert_t REAL NOT NULL,
    recipient TEXT NOT NULL,
    text TEXT NOT NULL,
    reference INTEGER NOT NULL CHECK (reference BETWEEN 0 AND 255),
    state TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'given_up')),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at REAL NOT NULL,
    parts_done INTEGER NOT NULL DEFAULT 0 CHECK (parts_done >= 0),
    last_error TEXT,
    sent_at REAL,
    give_up_at REAL NOT NULL
);
-- The sender reads only the messages still to send.
CREATE INDEX sms_outbox_pending ON sms_outbox (id) WHERE state IN ('queued', 'sending');
-- Rate-limit history after a restart, and pruning of old finished rows.
CREATE INDEX sms_outbox_by_created ON sms_outbox (created);

-- Small durable facts that are not records, e.g. "the SIM refused this PIN" (a salted hash).
CREATE TABLE device_flags (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

ALERT_ACKS = """
CREATE TABLE alert_acks (
    alert_id TEXT PRIMARY KEY,
    alert_t REAL NOT NULL,
    acked_by TEXT NOT NULL,
    acked_at REAL NOT NULL
);
"""

SMS_OUTBOX_MAYBE_SENT = """
-- Attempts after which the message may have reached the recipient unconfirmed (no answer after
-- the PDU went out, or a stop mid-send): the sender stops at a configured number of copies.
ALTER TABLE sms_outbox ADD COLUMN maybe_sent INTEGER NOT NULL DEFAULT 0 CHECK (maybe_sent >= 0);
"""

HISTORY_INDEXES = """
-- The status page's history reads one asset's rows between two times (history_query.py). The
-- scores index covers what a chart needs, so a week of scores is read from the index alone.
CREATE INDEX scores_by_asset_t ON scores (asset, t, error, threshold, anomalous);
CREATE INDEX features_by_asset_window_end ON features (asset, window_end);
CREATE INDEX alerts_by_asset_t ON alerts (asset, t);
"""

EPISODE_VERDICTS = """
-- Operators' verdicts on anomaly episodes (verdicts.py): one per episode, the newest kept.
CREATE TABLE episode_verdicts (
    asset TEXT NOT NULL,
    raised_t REAL NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('not_a_fault', 'real_fault')),
    judged_by TEXT NOT NULL,
    judged_at REAL NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (asset, raised_t)
);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_outbox_sequence_and_features", OUTBOX_SEQUENCE_AND_FEATURES),
    Migration("0002_features_by_window_end", FEATURES_BY_WINDOW_END),
    Migration("0003_scores_alerts_detector_state", SCORES_ALERTS_DETECTOR_STATE),
    Migration("0004_uplink_state", UPLINK_STATE),
    Migration("0005_sms_outbox", SMS_OUTBOX),
    Migration("0006_alert_acks", ALERT_ACKS),
    Migration("0007_sms_outbox_maybe_sent", SMS_OUTBOX_MAYBE_SENT),
    Migration("0008_history_indexes", HISTORY_INDEXES),
    Migration("0009_episode_verdicts", EPISODE_VERDICTS),
)

CREATE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL
)
"""


def apply_migrations(
    db: sqlite3.Connection, migrations: Sequence[Migration], path: Path
) -> list[str]:
    """Bring the database up to `migrations`; return the names applied now (oldest first)."""
    refuse_foreign_database(db, path)
    db.execute(CREATE_SCHEMA_MIGRATIONS)
    applied = applied_migration_names(db)
    known = [migration.name for migration in migrations]
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise StoreError(
            f"store {path} was written by a newer release (unknown migrations: "
            f"{', '.join(unknown)}); refusing to open it with this one"
        )
    pending = [migration for migration in migrations if migration.name not in applied]
    for migration in pending:
        apply_migration(db, migration, path)
    return [migration.name for migration in pending]


def applied_migration_names(db: sqlite3.Connection) -> list[str]:
    rows = db.execute("SELECT name FROM schema_migrations ORDER BY rowid").fetchall()
    return [str(row[0]) for row in rows]


def refuse_foreign_database(db: sqlite3.Connection, path: Path) -> None:
    """A database with tables but no schema_migrations belongs to something else: leave it alone."""
    rows = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    tables = {str(row[0]) for row in rows}
    if tables and "schema_migrations" not in tables:
        raise StoreError(
            f"{path} is an SQLite database but not an appliance store "
            f"(tables: {', '.join(sorted(tables))}); refusing to change it"
        )


def apply_migration(db: sqlite3.Connection, migration: Migration, path: Path) -> None:
    """Apply one migration and record it in the same transaction, or roll both back."""
    try:
        if isinstance(migration.apply, str):
            # executescript() commits any open transaction first, so BEGIN must be in the script.
            db.executescript(f"BEGIN IMMEDIATE;\n{migration.apply}")
        else:
            db.execute("BEGIN IMMEDIATE")
            migration.apply(db)
        db.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
            (migration.name, datetime.now(UTC).isoformat(timespec="seconds")),
        )
        db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"store {path}: migration {migration.name} failed: {exc}") from exc
        raise
