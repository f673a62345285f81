"""Acknowledgements of open alerts: who took charge of which alarm.

Kept in the store (alert_acks) and sent over the uplink as an ordinary alert record of kind
<family>_acknowledged (asset, channel and severity of the alert acknowledged; the message names
the alert's id, kind and raise time and who acknowledged it), both in one transaction: an
acknowledgement the page confirmed survives a restart and reaches the receiver. An
acknowledgement is for one raise: a later raise of the same alarm (a new time) needs a new one.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from appliance.detect.routing import alert_family
from appliance.records import Alert
from appliance.store import DetectorStates, StoredAck

log = structlog.get_logger(__name__)

MAX_BY_CHARS = 64


@dataclass(frozen=True, slots=True)
class Ack:
    by: str
    at: float
    alert_t: float


class AlertAcks:
    """The acknowledgements by alert id; with a store they are durable (without one, tests and
    a page without an alert stage, they live in memory)."""

    def __init__(
        self,
        store: DetectorStates | None = None,
        on_stored: Callable[[], None] | None = None,
        stored: Iterable[StoredAck] = (),
    ) -> None:
        """`on_stored` is called once an acknowledgement's record is in the outbox (it wakes
        the uplink)."""
        self._store = store
        self._on_stored = on_stored
        self._acks = {row.alert_id: Ack(row.by, row.at, row.alert_t) for row in stored}

    @classmethod
    async def load(
        cls, store: DetectorStates, on_stored: Callable[[], None] | None = None
    ) -> AlertAcks:
        return cls(store, on_stored, await store.acknowledgements())

    def of(self, alert_id: str, alert: Alert) -> Ack | None:
        """The acknowledgement of `alert` as raised at its time, if any."""
        ack = self._acks.get(alert_id)
        return ack if ack is not None and ack.alert_t == alert.t else None

    async def acknowledge(self, alert_id: str, alert: Alert, by: str, at: float) -> Ack:
        """Record that `by` acknowledged `alert` (open under `alert_id`) at `at`. ValueError
        naming the problem if `by` is not a short printable name; StoreError (nothing kept) if
        the store fails."""
        by = check_name(by)
        ack = Ack(by, at, alert.t)
        if self._store is not None:
            record = acknowledgement_record(alert_id, alert, by, at)
            await self._store.add_acknowledgement(StoredAck(alert_id, alert.t, by, at), record)
            if self._on_stored is not None:
                self._on_stored()
        self._acks[alert_id] = ack
        return ack


def check_name(by: str) -> str:
    """`by` as given, if it is 1..64 printable characters that can be stored and sent."""
    if not by or len(by) > MAX_BY_CHARS:
        raise ValueError(f"by: must be 1 to {MAX_BY_CHARS} characters, got {len(by)}")
    for char in by:
        if unicodedata.category(char) in ("Cc", "Cs", "Cn", "Zl", "Zp"):
            raise ValueError(f"by: character {char!a} is not allowed in a name")
    return by


def acknowledgement_record(alert_id: str, alert: Alert, by: str, at: float) -> Alert:
    """The alert record that carries an acknowledgement over the uplink."""
    raised = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(alert.t))
    message = (
        f"{alert.asset}: {alert.kind} of {raised} acknowledged by {by} "
        f"(alert {alert_id}, raised at t={alert.t!r})"
    )
    kind = f"{alert_family(alert.kind)}_acknowledged"
    return Alert(alert.asset, at, alert.severity, kind, message, alert.channel)
