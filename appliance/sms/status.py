"""The SMS entry of the status board (`SmsStatus`): the sender task, the alert stage's intake
and the emulated modem write their parts, the page, /metrics and the summary read it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from appliance.sms.health import ModemHealth
from appliance.sms.policy import PolicyCounts

SHOWN_DELIVERED = 50


class ShownSms(Protocol):
    """An SMS the emulated modem took, as the recipient's phone would show it."""

    @property
    def text(self) -> str: ...

    def describe(self) -> str: ...


@dataclass
class SmsStatus:
    """The status board entry. The sender task writes everything except `policy` and
    `enqueue_failures` (the alert stage's) and `would_have_sent` (the emulated modem's)."""

    modem: ModemHealth
    recipients: int
    emulated: bool = False
    queued: int = 0
    """Messages still to send (sending included)."""
    oldest_queued_utc: float | None = None
    sent: int = 0
    """Messages sent, since the database was created (finished rows are pruned after 30 days)."""
    given_up: int = 0
    last_sent_utc: float | None = None
    last_sent_to: str | None = None
    last_given_up: str | None = None
    """The last message given up, in words (recipient, alert, reason)."""
    last_send_error: str | None = None
    sent_since_start: int = 0
    failed_attempts: int = 0
    """Attempts that failed since start (each is retried or given up)."""
    pin_rejected: bool = False
    """The SIM refused the configured PIN: it is not used until the config's PIN changes."""
    policy: PolicyCounts | None = None
    enqueue_failures: int = 0
    would_have_sent: deque[ShownSms] = field(default_factory=lambda: deque(maxlen=SHOWN_DELIVERED))
    """Emulated modem only (the demo): the last SMS it received, as the recipient would see
    them (written by the emulated modem's callback)."""
