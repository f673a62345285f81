"""Follow-up alerts: the diagnosis names a fault after an asset's anomaly alarm went up.

An alarm's text carries the diagnosis of the window that raised it (appliance/detect/routing.py).
When the fault shows only later (an imbalance grows into zone C seconds after the detector saw
it), the crew would never hear of it. So, while an asset's anomaly alarm is open, each diagnosis
is compared with what the crew was told in this episode (the alarm's text, read back: the fault
it leads with and its zone, then each follow-up). News is a fault named where none or another
was, or the same fault in a worse ISO zone. News that holds for `hold` diagnosed windows in a row
becomes one follow-up alert ("anomaly_diagnosed", the alarm's severity, so it reaches the crew the
way the alarm did); at most `cap` per episode, so a diagnosis flickering between two verdicts
cannot flood a phone. Pure: alarms and diagnoses in, alerts out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo

from appliance.diagnosis.asset import WORDS
from appliance.records import Alert

FOLLOW_UP_KIND = "anomaly_diagnosed"
HOLD_WINDOWS = 3
"""Diagnosed windows in a row the news must hold before it is told (one odd window is not)."""
MAX_PER_EPISODE = 3
"""Follow-ups per alarm episode at most."""
NO_FAULT = frozenset({"none", "unknown"})
ZONES = "ABCD"
_ZONE = re.compile(r"velocity [\d.]+ mm/s zone ([A-D])")


@dataclass(frozen=True)
class Told:
    """What the crew was told in an episode: the fault named (None: none) and the ISO zone."""

    verdict: str | None
    zone: str | None


def told_by(message: str, asset: str) -> Told:
    """What an alarm's text tells: the fault it leads with, the zone it names."""
    body = message.removeprefix(f"{asset}:").strip()
    faults = (v for v, words in WORDS.items() if v not in NO_FAULT and body.startswith(words))
    zone = _ZONE.search(message)
    return Told(next(faults, None), zone.group(1) if zone else None)


def is_news(told: Told, verdict: str, zone: str) -> bool:
    """A fault the crew was not told of, or the told fault in a worse zone."""
    if verdict in NO_FAULT:
        return False
    if verdict != told.verdict:
        return True
    return told.zone is None or ZONES.index(zone) > ZONES.index(told.zone)


@dataclass
class _Episode:
    raised_at: float
    alarm_message: str
    told: Told
    sent: int = 0
    candidate: str | None = None
    held: int = 0


class FollowUps:
    """One asset's follow-up rule (owned by its diagnosis stage)."""

    def __init__(
        self,
        asset: str,
        zone: tzinfo,
        hold: int = HOLD_WINDOWS,
        cap: int = MAX_PER_EPISODE,
    ) -> None:
        if hold < 1 or cap < 0:
            raise ValueError(f"need hold >= 1 ({hold}) and cap >= 0 ({cap})")
        self.asset, self.zone, self.hold, self.cap = asset, zone, hold, cap
        self._episode: _Episode | None = None
        self.held_back = 0
        """News that held but found the episode's cap reached (counted, not told)."""

    def observe(
        self, alarm: Alert | None, t: float, verdict: str, zone: str, text: str
    ) -> Alert | None:
        """The follow-up this diagnosis (at `t`, its verdict, ISO zone and words) makes, given
        the asset's open anomaly alarm (None: no episode); None if none is due."""
        episode = self._follow(alarm)
        if alarm is None or episode is None:
            return None
        if not is_news(episode.told, verdict, zone):
            episode.candidate, episode.held = None, 0
            return None
        if verdict != episode.candidate:
            episode.candidate, episode.held = verdict, 0
        episode.held += 1
        if episode.held < self.hold:
            return None
        episode.candidate, episode.held = None, 0
        if episode.sent >= self.cap:
            self.held_back += 1
            return None
        episode.sent += 1
        episode.told = Told(verdict, zone)
        when = datetime.fromtimestamp(episode.raised_at, self.zone)
        message = f"{self.asset}: {text} (alarm raised {when:%H:%M} {when.tzname()})"
        return Alert(self.asset, t, alarm.severity, FOLLOW_UP_KIND, message)

    def _follow(self, alarm: Alert | None) -> _Episode | None:
        """The episode `alarm` belongs to: a new one at each raise; an escalation's text is
        what the crew was told last."""
        episode = self._episode
        if alarm is None:
            self._episode = None
        elif episode is None or (alarm.kind.endswith("_raised") and alarm.t != episode.raised_at):
            told = told_by(alarm.message, self.asset)
            self._episode = _Episode(alarm.t, alarm.message, told)
        elif alarm.message != episode.alarm_message:
            episode.alarm_message, episode.told = alarm.message, told_by(alarm.message, self.asset)
            episode.candidate, episode.held = None, 0
        return self._episode
