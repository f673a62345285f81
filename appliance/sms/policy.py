"""Which alerts go out by SMS, to whom, and what the SMS says (pure: alerts and times in,
messages out; the clock is passed in).

An alert is an alarm *state change* (the detectors and the alert router already make one alert
per event, never one per window). The policy then:

  * keeps alerts whose family (anomaly, systemic, flatline, dropout, ...) is configured (all by
    default) and whose event is configured (raised, escalated, cleared: all by default);
  * raised/escalated: only configured severities (default: critical). cleared: only for an
    alarm whose raise or escalation went out by SMS (after a restart, when that is not known,
    a cleared alert that reached a configured severity goes);
  * drops a repeat of the same event for the same alarm (e.g. "raised" twice without a clear);
  * a follow-up ("diagnosed": the diagnosis named the fault after the alarm went up,
    appliance/diagnosis/followup.py, which already holds and caps them) goes if the alarm's
    raise or escalation went by SMS (after a restart, when that is not known, if its severity
    is configured); it is no event of its own, so it never counts as a repeat;
  * per recipient, at most `max_per_hour` in any 60 minutes and `max_per_day` in any 24 hours.
    What the limits hold back is counted and summarised in the next SMS that recipient gets
    ("+3 more alerts not sent since 13:40 (SMS limit)") and on the status board.

Text: "<CRITICAL|WARNING|CLEARED> <asset>: <what, value against threshold> (<HH:MM TZ>, gw
<gateway>)", local time in the configured zone. The alert message is shortened step by step
(top features cut to one, then the message truncated with "...") until the SMS fits one part
(`count_parts`); characters outside GSM 03.38 are replaced where a plain equivalent exists
(degree sign -> "deg", en dash -> "-", ...) so the text stays GSM-7 (160 characters, not 70).
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from appliance.records import Alert
from appliance.sms.pdu import count_parts

HOUR_S = 3600.0
DAY_S = 86400.0
EVENTS = ("raised", "escalated", "cleared")
FOLLOW_UP = "diagnosed"
DEFAULT_SEVERITIES = frozenset({"critical"})
GSM_REPLACEMENTS = str.maketrans(
    {
        "…": "...",
        "–": "-",
        "—": "-",
        "−": "-",
        "°": "deg",
        "µ": "u",
        "±": "+/-",
        "×": "x",
        "‘": "'",
        "’": "'",
        "“": '"',
        "”": '"',
        "\t": " ",
    }
)
ELLIPSIS = "..."
AlarmKey = tuple[str, str | None, str]
"""(asset, channel, family) of one alarm."""


@dataclass(frozen=True, slots=True)
class NewSms:
    """A message the alert policy accepted: `text` for `recipient` about `alert`."""

    recipient: str
    text: str
    alert: Alert


TEST_KIND = "sms_test"


@dataclass(frozen=True)
class PolicySettings:
    gateway_id: str
    recipients: tuple[str, ...]
    severities: frozenset[str] = DEFAULT_SEVERITIES
    events: frozenset[str] = frozenset(EVENTS)
    families: frozenset[str] | None = None
    """Alert families that may go by SMS (anomaly, systemic, flatline, ...); None: all."""
    max_per_hour: int = 6
    max_per_day: int = 30
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not self.recipients:
            raise ValueError("recipients: at least one is needed")
        if not 1 <= self.max_per_hour <= self.max_per_day:
            raise ValueError(
                f"need 1 <= max_per_hour ({self.max_per_hour}) <= max_per_day ({self.max_per_day})"
            )
        unknown = self.events - set(EVENTS)
        if unknown:
            raise ValueError(f"events: unknown {sorted(unknown)}")
        ZoneInfo(self.timezone)  # ZoneInfoNotFoundError (a KeyError) if unknown


@dataclass
class PolicyCounts:
    """What the policy did with the alerts it saw, since start (the status board shows it)."""

    alerts: int = 0
    queued: int = 0
    """Messages accepted (one per alert and recipient)."""
    not_eligible: int = 0
    """Alerts whose family, event or severity does not go by SMS."""
    repeated: int = 0
    """Alerts that repeated the last event of the same alarm."""
    suppressed_hourly: int = 0
    """Messages held back by max_per_hour (per recipient)."""
    suppressed_daily: int = 0
    """Messages held back by max_per_day (per recipient)."""

    @property
    def suppressed(self) -> int:
        return self.suppressed_hourly + self.suppressed_daily


@dataclass
class Suppressed:
    """Messages held back for one recipient since the last SMS it got."""

    count: int
    since: float
    what: Counter[str] = field(default_factory=Counter)


def alarm_key(alert: Alert) -> AlarmKey:
    return (alert.asset, alert.channel, family_of(alert.kind))


def family_of(kind: str) -> str:
    return kind.rsplit("_", 1)[0]


def event_of(kind: str) -> str:
    return kind.rsplit("_", 1)[-1]


class SmsPolicy:
    """Owned by the alert stage (one writer). `history`: (recipient, queued at) of messages
    queued in the last 24 h, so a restart does not reset the rate limits."""

    def __init__(self, settings: PolicySettings, history: Iterable[tuple[str, float]] = ()) -> None:
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone)
        self.counts = PolicyCounts()
        self.suppressed: dict[str, Suppressed] = {}
        """Per recipient: held back since its last SMS (cleared when the summary goes)."""
        self._sent: dict[str, deque[float]] = {r: deque() for r in settings.recipients}
        for recipient, at in sorted(history, key=lambda item: item[1]):
            if recipient in self._sent:
                self._sent[recipient].append(at)
        self._last_event: dict[AlarmKey, str] = {}
        self._notified: dict[AlarmKey, bool] = {}
        """Alarms open with an eligible raise/escalation: True if it went to anyone."""

    def decide(self, alert: Alert, now: float) -> list[NewSms]:
        """The messages `alert` becomes now (none, or one per recipient within its limits)."""
        self.counts.alerts += 1
        key, event = alarm_key(alert), event_of(alert.kind)
        if event == FOLLOW_UP:
            return self._follow_up(alert, key, now)
        if not self._eligible(alert, key, event):
            self.counts.not_eligible += 1
            self._forget_if_cleared(key, event)
            return []
        if self._last_event.get(key) == event:
            self.counts.repeated += 1
            return []
        self._last_event[key] = event
        messages = []
        for recipient in self.settings.recipients:
            message = self._for_recipient(recipient, alert, now)
            if message is not None:
                messages.append(message)
        if event == "cleared":
            self._forget_if_cleared(key, event)
        else:
            self._notified[key] = self._notified.get(key, False) or bool(messages)
        return messages

    def test_messages(self, requested_by: str, now: float) -> list[NewSms]:
        """A test SMS to every recipient (asked for on the status page), within the same
        per-recipient limits as alerts, so a button cannot flood a phone."""
        alert = Alert(
            asset=self.settings.gateway_id,
            t=now,
            severity="warning",
            kind=TEST_KIND,
            message=f"test message requested by {requested_by}; no action needed",
        )
        messages = [self._for_recipient(r, alert, now) for r in self.settings.recipients]
        return [message for message in messages if message is not None]

    def _follow_up(self, alert: Alert, key: AlarmKey, now: float) -> list[NewSms]:
        s = self.settings
        notified = self._notified.get(key)
        family_ok = s.families is None or family_of(alert.kind) in s.families
        if notified is None:  # not seen since start: the severity decides
            notified = alert.severity in s.severities
        if not (family_ok and notified):
            self.counts.not_eligible += 1
            return []
        messages = [self._for_recipient(r, alert, now) for r in s.recipients]
        return [message for message in messages if message is not None]

    def _eligible(self, alert: Alert, key: AlarmKey, event: str) -> bool:
        s = self.settings
        if event not in EVENTS or event not in s.events:
            return False
        if s.families is not None and family_of(alert.kind) not in s.families:
            return False
        if event != "cleared":
            return alert.severity in s.severities
        notified = self._notified.get(key)
        if notified is None:  # not seen since start: the severity it reached decides
            return alert.severity in s.severities
        return notified

    def _forget_if_cleared(self, key: AlarmKey, event: str) -> None:
        if event == "cleared":
            self._notified.pop(key, None)
            self._last_event.pop(key, None)

    def _for_recipient(self, recipient: str, alert: Alert, now: float) -> NewSms | None:
        sent = self._sent[recipient]
        while sent and sent[0] <= now - DAY_S:
            sent.popleft()
        last_hour = sum(1 for at in sent if at > now - HOUR_S)
        if last_hour >= self.settings.max_per_hour:
            self.counts.suppressed_hourly += 1
            self._hold_back(recipient, alert, now)
            return None
        if len(sent) >= self.settings.max_per_day:
            self.counts.suppressed_daily += 1
            self._hold_back(recipient, alert, now)
            return None
        sent.append(now)
        self.counts.queued += 1
        note = self.suppressed.pop(recipient, None)
        return NewSms(recipient, compose_text(alert, self.settings, self.zone, note), alert)

    def _hold_back(self, recipient: str, alert: Alert, now: float) -> None:
        held = self.suppressed.setdefault(recipient, Suppressed(0, now))
        held.count += 1
        held.what[f"{alert.asset} {family_of(alert.kind)}"] += 1


# --- text ----------------------------------------------------------------------------------


def compose_text(
    alert: Alert,
    settings: PolicySettings,
    zone: ZoneInfo | None = None,
    suppressed: Suppressed | None = None,
) -> str:
    """The SMS for `alert`: one part whenever the required fields leave room."""
    zone = zone or ZoneInfo(settings.timezone)
    when = datetime.fromtimestamp(alert.t, zone)
    label = "CLEARED" if event_of(alert.kind) == "cleared" else alert.severity.upper()
    if alert.kind == TEST_KIND:
        label = "TEST"
    head = f"{label} {alert.asset}: "
    tail = f" ({when:%H:%M} {when.tzname()}, gw {settings.gateway_id})"
    if suppressed is not None and suppressed.count:
        since = datetime.fromtimestamp(suppressed.since, zone)
        plural = "s" if suppressed.count > 1 else ""
        tail += f" +{suppressed.count} more alert{plural} not sent since {since:%H:%M} (SMS limit)"
    head, tail = gsm_friendly(head), gsm_friendly(tail)
    body = gsm_friendly(_body(alert))
    for candidate in _shorter_bodies(body):
        text = head + candidate + tail
        if count_parts(text) == 1:
            return text
    return _truncated(head, candidate, tail)


def gsm_friendly(text: str) -> str:
    """Plain equivalents for common characters outside GSM 03.38 (keeps an SMS GSM-7)."""
    return text.translate(GSM_REPLACEMENTS)


def _body(alert: Alert) -> str:
    message = alert.message.strip()
    return message.removeprefix(f"{alert.asset}:").strip() or alert.kind.replace("_", " ")


_CONTRIBUTORS = re.compile(r"; top features: ([^,;]+?)(?:, [^;]*?)?(?= - while |$)")
_COMPACTIONS: tuple[tuple[str, str], ...] = (
    (" the threshold ", " threshold "),
    ("check those sensors before the machine", "check those sensors first"),
)


def _compact(body: str, *, contributors: bool = True) -> str:
    """Shorter wording; the top features cut to the first one (or dropped)."""
    body = _CONTRIBUTORS.sub(r"; top \1" if contributors else "", body)
    for long, short in _COMPACTIONS:
        body = body.replace(long, short)
    return body


_DIAGNOSIS_ZONE = re.compile(r", velocity [\d.]+ mm/s zone [A-D]")
_DIAGNOSIS_DETAIL = re.compile(r", \d+ dB above the floor, [^)]*\)")
_DIAGNOSIS_WHERE = re.compile(r" in the (?:envelope|velocity spectrum)\)")
_ANOMALY_ERROR = re.compile(r"; anomaly(?: now critical)?: error [^;]*?(?=; |$| - while )")


def _shorter_bodies(body: str) -> Iterable[str]:
    """Each shorter than the one before; a diagnosis ("outer-race defect likely (BPFO 106 Hz +
    2 lines in the envelope, 32 dB above the floor, accel_y), velocity 6.1 mm/s zone D; anomaly:
    ...") keeps its verdict, first line, velocity and zone longest."""
    yield body
    yield _compact(body)
    short = _compact(body, contributors=False)
    yield short
    if not _DIAGNOSIS_ZONE.search(short):
        return  # no diagnosis: the anomaly's numbers are the message
    short = _DIAGNOSIS_DETAIL.sub(")", short)
    yield short
    short = _ANOMALY_ERROR.sub("", short)
    yield short
    yield _DIAGNOSIS_WHERE.sub(")", short)


def _truncated(head: str, body: str, tail: str) -> str:
    """The longest prefix of `body` (+ "...") that fits one part; all of it if none does."""
    if count_parts(head + ELLIPSIS + tail) > 1:
        return head + body + tail  # the fixed fields alone need more: send several parts
    low, high = 0, len(body)  # invariant: a prefix of `low` characters fits
    while low < high:
        middle = (low + high + 1) // 2
        if count_parts(head + body[:middle].rstrip() + ELLIPSIS + tail) == 1:
            low = middle
        else:
            high = middle - 1
    return head + body[:low].rstrip() + ELLIPSIS + tail
