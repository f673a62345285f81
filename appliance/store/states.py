"""Detector states, alert acknowledgements and device flags: their SQL as plain functions of a
sqlite3 connection (writes run inside Database.write's transaction), and `DetectorStates`, what
the detection side (asset scorings, the alert stage, acknowledgements, operators' verdicts on
anomaly episodes, whose SQL is in verdicts.py) uses of the store."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from appliance.records import Alert, EpisodeVerdict
from appliance.store import outbox
from appliance.store.codec import decode_state, encode_record, encode_state
from appliance.store.database import Database
from appliance.store.verdicts import episode_errors, load_verdicts, save_verdict

log = structlog.get_logger(__name__)

StateKey = tuple[str, str]  # (asset, kind)

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
SELECT_FLAG = "SELECT value FROM device_flags WHERE key = ?"
UPSERT_FLAG = (
    "INSERT INTO device_flags (key, value, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)
DELETE_FLAG = "DELETE FROM device_flags WHERE key = ?"

StateRow = tuple[str, str, str, float]


@dataclass(frozen=True, slots=True)
class StoredAck:
    """An acknowledgement of the open alert `alert_id` as raised at `alert_t`."""

    alert_id: str
    alert_t: float
    by: str
    at: float


def state_rows(states: Mapping[StateKey, Mapping[str, object]], now: float) -> list[StateRow]:
    """The rows to upsert; ValueError if a state cannot be JSON."""
    return [(asset, kind, encode_state(state), now) for (asset, kind), state in states.items()]


def save_states(db: sqlite3.Connection, rows: list[StateRow]) -> None:
    db.executemany(UPSERT_STATE, rows)


def load_states(db: sqlite3.Connection) -> dict[StateKey, dict[str, object]]:
    """Every saved state by (asset, kind); a row that does not parse is logged and skipped."""
    states: dict[StateKey, dict[str, object]] = {}
    for asset, kind, state_json in db.execute(SELECT_STATES).fetchall():
        try:
            states[str(asset), str(kind)] = decode_state(str(state_json))
        except ValueError as exc:
            log.warning("detector_state_unreadable", asset=asset, kind=kind, reason=str(exc))
    return states


def delete_state(db: sqlite3.Connection, asset: str, kind: str) -> None:
    db.execute(DELETE_STATE, (asset, kind))


def save_acknowledgement(db: sqlite3.Connection, ack: StoredAck) -> None:
    db.execute(UPSERT_ACK, (ack.alert_id, ack.alert_t, ack.by, ack.at))


def acknowledgements(db: sqlite3.Connection) -> list[StoredAck]:
    rows = db.execute(SELECT_ACKS).fetchall()
    return [StoredAck(str(a), float(t), str(by), float(at)) for a, t, by, at in rows]


def flag(db: sqlite3.Connection, key: str) -> str | None:
    rows = db.execute(SELECT_FLAG, (key,)).fetchall()
    return next((str(row[0]) for row in rows), None)


def set_flag(db: sqlite3.Connection, key: str, value: str | None, now: float) -> None:
    if value is None:
        db.execute(DELETE_FLAG, (key,))
    else:
        db.execute(UPSERT_FLAG, (key, value, now))


CountWritten = Callable[[sqlite3.Connection, list[int]], None]
"""Told, on the writer thread after COMMIT, the seqs of the outbox rows a write added."""
States = Mapping[StateKey, Mapping[str, object]]


class DetectorStates:
    """Detector states (never evicted), alert acknowledgements, operators' verdicts, and the
    alert records written together with them. Build it with the store's Database."""

    def __init__(self, db: Database, count_written: CountWritten) -> None:
        self._db = db
        self._count_written = count_written

    async def save_states(self, states: States) -> None:
        """Upsert each (asset, kind) -> state as JSON, all in one transaction.

        ValueError (before anything is written) if a state cannot be JSON; StoreError if SQLite
        fails, in which case no state of the call is saved.
        """
        rows = state_rows(states, time.time())
        if rows:
            await self._db.write(
                f"saving {len(rows)} detector states", lambda db: save_states(db, rows)
            )

    async def add_alerts_with_states(self, alerts: Sequence[Alert], states: States) -> list[int]:
        """Add `alerts` to the outbox and save `states`, in one transaction (the alert stage: the
        alerts it passed on and its own state are durable together); the alerts' seqs.
        ValueError (nothing written) if an alert or a state is malformed; StoreError if SQLite
        fails, in which case nothing is stored."""
        rows = [encode_record(alert) for alert in alerts]
        new_states = state_rows(states, time.time())

        def write(db: sqlite3.Connection) -> list[int]:
            seqs = outbox.insert_records(db, rows, outbox.FeatureSchemas(), {}) if rows else []
            if new_states:
                save_states(db, new_states)
            return seqs

        what = f"storing {len(rows)} alerts with their state"
        return await self._db.write(what, write, on_commit=self._count_written)

    async def load_states(self) -> dict[StateKey, dict[str, object]]:
        """Every saved state by (asset, kind); a row that does not parse is logged and skipped."""
        return await self._db.read("detector state", load_states)

    async def delete_state(self, asset: str, kind: str) -> None:
        """Forget one saved state (e.g. after recommissioning); no error if there is none."""
        await self._db.write(
            f"deleting detector state {asset}/{kind}", lambda db: delete_state(db, asset, kind)
        )

    async def add_acknowledgement(self, ack: StoredAck, record: Alert) -> int:
        """Keep `ack` (replacing an older one of the same alert) and add `record` (the alert
        record that tells the receiver) to the outbox, in one transaction; the record's seq.
        ValueError (nothing written) if the record is malformed; StoreError if SQLite fails."""
        what = f"acknowledging {ack.alert_id}"
        return await self._keep_with_record(what, lambda db: save_acknowledgement(db, ack), record)

    async def acknowledgements(self) -> list[StoredAck]:
        return await self._db.read("acknowledgements", acknowledgements)

    async def add_verdict(self, verdict: EpisodeVerdict, record: Alert) -> int:
        """Keep `verdict` (replacing an earlier one on the same episode) and add `record` (the
        alert record that tells the receiver) to the outbox, in one transaction; the record's
        seq. ValueError (nothing written) if the record is malformed; StoreError if SQLite
        fails."""
        what = f"keeping the verdict on {verdict.asset}'s anomaly of t={verdict.raised_t!r}"
        return await self._keep_with_record(what, lambda db: save_verdict(db, verdict), record)

    async def verdicts(self) -> list[EpisodeVerdict]:
        return await self._db.read("episode verdicts", load_verdicts)

    async def episode_errors(
        self, asset: str, raised_t: float, limit: int
    ) -> list[tuple[float, float]]:
        """(t, error) of the latest `limit` stored windows of the episode, oldest first."""
        return await self._db.read(
            f"the errors of {asset}'s anomaly of t={raised_t!r}",
            lambda db: episode_errors(db, asset, raised_t, limit),
        )

    async def _keep_with_record(
        self, what: str, keep: Callable[[sqlite3.Connection], None], record: Alert
    ) -> int:
        row = encode_record(record)

        def insert(db: sqlite3.Connection) -> int:
            keep(db)
            return outbox.insert_records(db, [row], outbox.FeatureSchemas(), {})[0]

        return await self._db.write(
            what, insert, on_commit=lambda db, seq: self._count_written(db, [seq])
        )
