"""The durable SMS queue's rows and SQL (table `sms_outbox`, migrations 0005_sms_outbox and
0007_sms_outbox_maybe_sent).

Life of a message (one row per alert and recipient):

    queued --(sender takes it: attempts + 1)--> sending --(modem accepted every part)--> sent
      ^                                            |
      +------(failed: next_attempt_at = backoff)---+--(rejected, or give_up_at passed)--> given_up

`sending` is written (committed) before the first byte goes to the modem, and `parts_done`
after each part the modem accepted, so a process killed mid-send leaves the row in `sending`
with the parts that are known to have left: the next start resends it from `parts_done` with
the same `reference` (id % 256), which duplicates at most the one part that was in flight.

`maybe_sent` counts the attempts after which the message may have reached the recipient without
the modem saying so (no answer after the PDU went out, or a stop mid-send): the sender gives the
message up once it reaches the configured `max_copies`, rather than send yet another copy.

`SmsQueue` is what the SMS intake and sender use of the store (over its Database); the rest of this
module is the queue's SQL as plain functions of a sqlite3 connection.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from appliance.errors import StoreError
from appliance.records import Alert, Severity
from appliance.sms.policy import NewSms as NewSms  # the policy's output, queued here
from appliance.store import outbox, states
from appliance.store.codec import encode_record
from appliance.store.database import Database

SmsState = Literal["queued", "sending", "sent", "given_up"]
PENDING_STATES: tuple[SmsState, ...] = ("queued", "sending")


@dataclass(frozen=True, slots=True)
class QueuedSms:
    """One row of `sms_outbox`."""

    id: int
    created: float
    alert_kind: str
    alert_asset: str
    alert_severity: Severity
    alert_t: float
    recipient: str
    text: str
    reference: int
    state: SmsState
    attempts: int
    next_attempt_at: float
    parts_done: int
    last_error: str | None
    sent_at: float | None
    give_up_at: float
    maybe_sent: int
    """Attempts that may have sent it unconfirmed (each a possible copy at the recipient)."""


@dataclass(frozen=True, slots=True)
class SmsQueueStats:
    """Counts by state (since the database was created) and the times the status page shows."""

    queued: int
    """Waiting to be sent, including a message in `sending`."""
    sending: int
    sent: int
    given_up: int
    oldest_pending_created: float | None
    last_sent_at: float | None
    last_given_up: QueuedSms | None


SMS_COLUMNS = (
    "id, created, alert_kind, alert_asset, alert_severity, alert_t, recipient, text, reference,"
    " state, attempts, next_attempt_at, parts_done, last_error, sent_at, give_up_at, maybe_sent"
)
INSERT_SMS = (
    "INSERT INTO sms_outbox (created, alert_kind, alert_asset, alert_severity, alert_t,"
    " recipient, text, reference, state, attempts, next_attempt_at, parts_done, give_up_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, 0, 'queued', 0, ?, 0, ?) RETURNING id"
)
SET_REFERENCE = "UPDATE sms_outbox SET reference = id % 256 WHERE id = ?"
SELECT_PENDING = (
    f"SELECT {SMS_COLUMNS} FROM sms_outbox WHERE state IN ('queued', 'sending') ORDER BY id LIMIT ?"
)
SELECT_ONE = f"SELECT {SMS_COLUMNS} FROM sms_outbox WHERE id = ?"
# Each update changes only a pending row: a message already sent or given up stays so.
MARK_SENDING = (
    "UPDATE sms_outbox SET state = 'sending', attempts = attempts + 1"
    " WHERE id = ? AND state IN ('queued', 'sending')"
)
MARK_PARTS_DONE = (
    "UPDATE sms_outbox SET parts_done = max(parts_done, ?)"
    " WHERE id = ? AND state IN ('queued', 'sending')"
)
MARK_SENT = (
    "UPDATE sms_outbox SET state = 'sent', sent_at = ?, last_error = NULL"
    " WHERE id = ? AND state IN ('queued', 'sending')"
)
MARK_RETRY = (
    "UPDATE sms_outbox SET state = 'queued', next_attempt_at = ?, last_error = ?,"
    " parts_done = max(parts_done, ?), maybe_sent = maybe_sent + ?"
    " WHERE id = ? AND state IN ('queued', 'sending')"
)
MARK_GIVEN_UP = (
    "UPDATE sms_outbox SET state = 'given_up', last_error = ?, sent_at = NULL"
    " WHERE id = ? AND state IN ('queued', 'sending')"
)
COUNT_BY_STATE = "SELECT state, count(*) FROM sms_outbox GROUP BY state"
OLDEST_PENDING = "SELECT min(created) FROM sms_outbox WHERE state IN ('queued', 'sending')"
LAST_SENT = "SELECT max(sent_at) FROM sms_outbox WHERE state = 'sent'"
LAST_GIVEN_UP = (
    f"SELECT {SMS_COLUMNS} FROM sms_outbox WHERE state = 'given_up' ORDER BY id DESC LIMIT 1"
)
CREATED_SINCE = "SELECT recipient, created FROM sms_outbox WHERE created >= ? ORDER BY created, id"
PRUNE_FINISHED = (
    "DELETE FROM sms_outbox WHERE created < ? AND state IN ('sent', 'given_up')"
    # keep the newest row: AUTOINCREMENT would survive anyway, the status page wants one
    " AND id < (SELECT max(id) FROM sms_outbox)"
)
# Messages for one alert (?1 kind, ?2 asset, ?3 t) that were sent or may still be (?4 = now).
COUNT_SMS_FOR_ALERT = """
SELECT count(*) FROM sms_outbox
WHERE alert_kind = ?1 AND alert_asset = ?2 AND alert_t = ?3
  AND (state = 'sent' OR (state IN ('queued', 'sending') AND give_up_at > ?4))
"""


def sms_row(row: Any) -> QueuedSms:
    (
        sms_id, created, kind, asset, severity, alert_t, recipient, text, reference, state,
        attempts, next_attempt_at, parts_done, last_error, sent_at, give_up_at, maybe_sent,
    ) = row  # fmt: skip
    return QueuedSms(
        id=int(sms_id),
        created=float(created),
        alert_kind=str(kind),
        alert_asset=str(asset),
        alert_severity=severity,
        alert_t=float(alert_t),
        recipient=str(recipient),
        text=str(text),
        reference=int(reference),
        state=state,
        attempts=int(attempts),
        next_attempt_at=float(next_attempt_at),
        parts_done=int(parts_done),
        last_error=None if last_error is None else str(last_error),
        sent_at=None if sent_at is None else float(sent_at),
        give_up_at=float(give_up_at),
        maybe_sent=int(maybe_sent),
    )


# --- SQL as plain functions of a connection (writes run inside Database.write's transaction) --


def enqueue(
    db: sqlite3.Connection, messages: Sequence[NewSms], now: float, give_up_after_s: float
) -> list[QueuedSms]:
    """Queue `messages`, due now, giving up at now + give_up_after_s; the rows as stored."""
    rows = []
    for message in messages:
        alert = message.alert
        added = db.execute(
            INSERT_SMS,
            (
                now, alert.kind, alert.asset, alert.severity, alert.t, message.recipient,
                message.text, now, now + give_up_after_s,
            ),
        ).fetchall()  # fmt: skip
        sms_id = int(added[0][0])
        db.execute(SET_REFERENCE, (sms_id,))
        rows.append(sms_row(db.execute(SELECT_ONE, (sms_id,)).fetchone()))
    return rows


def find(db: sqlite3.Connection, sms_id: int) -> QueuedSms | None:
    row = db.execute(SELECT_ONE, (sms_id,)).fetchone()
    return None if row is None else sms_row(row)


def pending(db: sqlite3.Connection, limit: int) -> list[QueuedSms]:
    return [sms_row(row) for row in db.execute(SELECT_PENDING, (limit,)).fetchall()]


def count_for_alert(db: sqlite3.Connection, alert: Alert, now: float) -> int:
    row = db.execute(COUNT_SMS_FOR_ALERT, (alert.kind, alert.asset, alert.t, now)).fetchone()
    return int(row[0] or 0)


def update(db: sqlite3.Connection, sql: str, parameters: tuple[Any, ...]) -> int:
    """One of the MARK_* updates; how many rows changed (0: the message was not pending)."""
    return int(db.execute(sql, parameters).rowcount)


def queue_stats(db: sqlite3.Connection) -> SmsQueueStats:
    counts = {str(state): int(count) for state, count in db.execute(COUNT_BY_STATE).fetchall()}
    oldest = db.execute(OLDEST_PENDING).fetchone()[0]
    last_sent = db.execute(LAST_SENT).fetchone()[0]
    given_up = db.execute(LAST_GIVEN_UP).fetchone()
    return SmsQueueStats(
        queued=counts.get("queued", 0) + counts.get("sending", 0),
        sending=counts.get("sending", 0),
        sent=counts.get("sent", 0),
        given_up=counts.get("given_up", 0),
        oldest_pending_created=None if oldest is None else float(oldest),
        last_sent_at=None if last_sent is None else float(last_sent),
        last_given_up=None if given_up is None else sms_row(given_up),
    )


def created_since(db: sqlite3.Connection, t: float) -> list[tuple[str, float]]:
    rows = db.execute(CREATED_SINCE, (t,)).fetchall()
    return [(str(recipient), float(created)) for recipient, created in rows]


def prune(db: sqlite3.Connection, before: float) -> int:
    return int(db.execute(PRUNE_FINISHED, (before,)).rowcount)


# --- the queue as the SMS intake and sender use it ------------------------------------------

CountWritten = Callable[[sqlite3.Connection, list[int]], None]
"""Told, on the writer thread after COMMIT, the seqs of the outbox rows a write added."""


class SmsQueue:
    """The durable SMS queue, the alert a give-up adds to the outbox, and the device flags the
    sender keeps (e.g. "sms.pin_rejected"). Build it with the store's Database."""

    def __init__(self, db: Database, count_written: CountWritten) -> None:
        self._db = db
        self._count_written = count_written

    async def sms_for_alert(self, alert: Alert, now: float) -> int:
        """How many messages for `alert` (same kind, asset and time) were sent or are still
        queued and not yet due to give up at `now`."""
        return await self._db.read("SMS for an alert", lambda db: count_for_alert(db, alert, now))

    async def enqueue_sms(
        self, messages: Sequence[NewSms], now: float, give_up_after_s: float
    ) -> list[QueuedSms]:
        """Queue `messages` in one transaction (all or none), due now, giving up at
        now + give_up_after_s; the rows as stored (each with its reference, id % 256)."""
        if not messages:
            return []
        return await self._db.write(
            f"queueing {len(messages)} SMS", lambda db: enqueue(db, messages, now, give_up_after_s)
        )

    async def pending_sms(self, limit: int = 1000) -> list[QueuedSms]:
        """Messages still to send (queued or sending), oldest first."""
        return await self._db.read("the SMS queue", lambda db: pending(db, limit))

    async def sms(self, sms_id: int) -> QueuedSms:
        """One message by id; StoreError if there is none."""
        found = await self._db.read(f"SMS {sms_id}", lambda db: find(db, sms_id))
        if found is None:
            raise StoreError(f"store {self._db.path}: no SMS with id {sms_id}")
        return found

    async def mark_sms_sending(self, sms_id: int) -> None:
        """The sender is about to hand the message to the modem (one more attempt)."""
        await self._update(f"marking SMS {sms_id} sending", MARK_SENDING, (sms_id,))

    async def mark_sms_parts_done(self, sms_id: int, parts_done: int) -> None:
        """The modem accepted the message's parts before `parts_done` (never goes down)."""
        await self._update(f"recording SMS {sms_id} parts", MARK_PARTS_DONE, (parts_done, sms_id))

    async def mark_sms_sent(self, sms_id: int, now: float) -> None:
        await self._update(f"marking SMS {sms_id} sent", MARK_SENT, (now, sms_id))

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
        await self._update(
            f"rescheduling SMS {sms_id}",
            MARK_RETRY,
            (next_attempt_at, error, parts_done, int(maybe_sent), sms_id),
        )

    async def give_up_sms(self, sms_id: int, reason: str, alert: Alert) -> int | None:
        """Give up on a pending message and add `alert` (kind sms_given_up) to the outbox, in one
        transaction; the alert's seq, or None (nothing written) if the message was not pending."""
        row = encode_record(alert)

        def give_up(db: sqlite3.Connection) -> int | None:
            if not update(db, MARK_GIVEN_UP, (reason, sms_id)):
                return None
            return outbox.insert_records(db, [row], outbox.FeatureSchemas(), {})[0]

        def committed(db: sqlite3.Connection, seq: int | None) -> None:
            if seq is not None:
                self._count_written(db, [seq])

        return await self._db.write(f"giving up SMS {sms_id}", give_up, on_commit=committed)

    async def sms_stats(self) -> SmsQueueStats:
        return await self._db.read("SMS statistics", queue_stats)

    async def sms_created_since(self, t: float) -> list[tuple[str, float]]:
        """(recipient, created) of every message queued at or after `t`, oldest first (what
        the alert policy's rate limits count after a restart)."""
        return await self._db.read("SMS history", lambda db: created_since(db, t))

    async def prune_sms(self, before: float) -> int:
        """Delete sent and given-up messages created before `before`; how many went."""
        return await self._db.write("pruning old SMS", lambda db: prune(db, before))

    async def flag(self, key: str) -> str | None:
        """A durable fact by key (e.g. "sms.pin_rejected"), None if not set."""
        return await self._db.read(f"flag {key}", lambda db: states.flag(db, key))

    async def set_flag(self, key: str, value: str | None) -> None:
        """Set (or with None, clear) a durable fact."""
        now = time.time()
        await self._db.write(f"setting flag {key}", lambda db: states.set_flag(db, key, value, now))

    async def _update(self, what: str, sql: str, parameters: tuple[object, ...]) -> None:
        await self._db.write(what, lambda db: update(db, sql, parameters))
