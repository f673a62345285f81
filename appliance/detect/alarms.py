"""From error-versus-threshold to alarms (pure: values in, values out; times are passed in).

`AlarmState` turns one asset's stream of (error, threshold) into per-window decisions with
hysteresis, so that one event is one alarm: it raises after `on_count` consecutive windows above the
threshold and clears only after `off_count` consecutive windows below `clear_ratio` * threshold.
Windows in between (below the threshold but above the clear level) keep the alarm as it is. The
severity of an alarm only goes up (warning -> critical is an "escalated" event); it stays critical
until the alarm clears, so a de-escalation never sends anything.

A window with no threshold (warm-up) or a non-finite error is no evidence either way: it changes no
counter and the decision repeats the current state.

`SystemicCheck` collapses many simultaneous alarms into one systemic alert: when most monitored
members (assets or channels) alarm at once the cause is likely shared (gateway, power, sensor bus).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from appliance.detect.thresholds import Threshold, check_state_header, is_number
from appliance.records import Alert, FloatArray, Severity

EventKind = Literal["raised", "escalated", "cleared"]


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    """Hysteresis and severity rules; the defaults were measured on SKAB valve1 together with the
    adaptive threshold (docs/DETECTION.md): holding an alarm until 10 windows in a row are below
    0.9 * threshold lowers the miss rate more than it raises the false-alarm rate there."""

    on_count: int = 1
    """Consecutive windows above the threshold that raise an alarm."""
    off_count: int = 10
    """Consecutive windows below clear_ratio * threshold that clear it."""
    clear_ratio: float = 0.9
    critical_factor: float = 2.0
    """A window above critical_factor * threshold makes the alarm critical."""
    critical_after: int | None = None
    """Consecutive windows above the threshold that make it critical too (None: never)."""

    def __post_init__(self) -> None:
        if self.on_count < 1:
            raise ValueError(f"on_count: must be at least 1, got {self.on_count}")
        if self.off_count < 1:
            raise ValueError(f"off_count: must be at least 1, got {self.off_count}")
        if not 0.0 < self.clear_ratio <= 1.0:
            raise ValueError(f"clear_ratio: must be in (0, 1], got {self.clear_ratio}")
        if not self.critical_factor >= 1.0:
            raise ValueError(f"critical_factor: must be at least 1, got {self.critical_factor}")
        if self.critical_after is not None and self.critical_after < 1:
            raise ValueError(f"critical_after: must be at least 1, got {self.critical_after}")


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """A change of alarm state; each one becomes one Alert."""

    kind: EventKind
    t: float
    severity: Severity
    """For "cleared": the highest severity the alarm reached."""
    error: float
    threshold: float
    since: float
    """When the alarm was raised."""


@dataclass(frozen=True, slots=True)
class AlarmDecision:
    """The verdict on one window; `event` only on a change of state."""

    anomalous: bool
    severity: Severity | None
    threshold: float | None
    """The threshold the window was compared with (None while warming up)."""
    event: AlarmEvent | None = None


class AlarmState:
    """One asset's alarm with hysteresis."""

    def __init__(self, settings: AlarmSettings | None = None) -> None:
        self.settings = settings or AlarmSettings()
        self.severity: Severity | None = None
        """None while no alarm is active."""
        self.since = math.nan
        self._above_run = 0
        self._clear_run = 0

    @property
    def active(self) -> bool:
        return self.severity is not None

    def update(self, t: float, error: float, threshold: float | None) -> AlarmDecision:
        """Decide on the window ending at `t`; `threshold` must come from earlier windows only."""
        if threshold is None or not math.isfinite(error):
            return self._decision(threshold, None)
        self._count_runs(error, threshold)
        critical = self._looks_critical(error, threshold)
        if self.severity is None:
            if self._above_run < self.settings.on_count:
                return self._decision(threshold, None)
            self.severity = "critical" if critical else "warning"
            self.since = t
            return self._decision(threshold, self._event("raised", t, error, threshold))
        if self._clear_run >= self.settings.off_count:
            event = self._event("cleared", t, error, threshold)
            self.severity = None
            self.since = math.nan
            return self._decision(threshold, event)
        if self.severity == "warning" and critical:
            self.severity = "critical"
            return self._decision(threshold, self._event("escalated", t, error, threshold))
        return self._decision(threshold, None)

    def align(self, severity: Severity | None, since: float) -> None:
        """Open the episode (`severity` since `since`) or, with None, close it, without an
        event: after a restart the alert stage's record of what was passed on is newer than a
        detector state saved before the last raise or clear (appliance/detect/restart.py)."""
        if severity is None:
            self.since = math.nan
        elif self.severity is None:
            self.since = since
        self.severity = severity
        self._clear_run = 0

    def to_state(self) -> dict[str, object]:
        """JSON-able episode state (the settings come from the configuration)."""
        return {
            "version": 1,
            "kind": "alarm_state",
            "severity": self.severity,
            "since": None if self.severity is None else self.since,
            "above_run": self._above_run,
            "clear_run": self._clear_run,
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, object], settings: AlarmSettings | None = None
    ) -> AlarmState:
        """Rebuild from `to_state()`; ValueError naming the field if anything is off."""
        check_state_header(state, "alarm_state")
        severity = _severity_from_state(state)
        since = state.get("since")
        alarm = cls(settings)
        if severity is not None:
            if not (is_number(since) and math.isfinite(since)):
                raise ValueError("since: an active alarm needs a finite number")
            alarm.severity, alarm.since = severity, float(since)
        alarm._above_run = _count_from_state(state, "above_run")
        alarm._clear_run = _count_from_state(state, "clear_run")
        return alarm

    def _count_runs(self, error: float, threshold: float) -> None:
        above = error > threshold
        below_clear_level = error < self.settings.clear_ratio * threshold
        self._above_run = self._above_run + 1 if above else 0
        self._clear_run = self._clear_run + 1 if below_clear_level else 0

    def _looks_critical(self, error: float, threshold: float) -> bool:
        sustained = self.settings.critical_after
        return error > self.settings.critical_factor * threshold or (
            sustained is not None and self._above_run >= sustained
        )

    def _event(self, kind: EventKind, t: float, error: float, threshold: float) -> AlarmEvent:
        assert self.severity is not None
        return AlarmEvent(kind, t, self.severity, error, threshold, self.since)

    def _decision(self, threshold: float | None, event: AlarmEvent | None) -> AlarmDecision:
        return AlarmDecision(self.active, self.severity, threshold, event)


def decide(threshold: Threshold, alarm: AlarmState, t: float, error: float) -> AlarmDecision:
    """One causal step: judge `error` against the threshold learned from earlier errors only,
    then offer it to the baseline (which refuses it if it is alarmed or above the threshold)."""
    decision = alarm.update(t, error, threshold.current())
    threshold.observe(error, alarmed=decision.anomalous)
    return decision


def _severity_from_state(state: Mapping[str, object]) -> Severity | None:
    severity = state.get("severity")
    if severity is None or severity == "warning" or severity == "critical":
        return severity
    raise ValueError(f"severity: must be null, 'warning' or 'critical', got {severity!r}")


def _count_from_state(state: Mapping[str, object], name: str) -> int:
    value = state.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: must be a non-negative integer")
    return value


@dataclass(frozen=True, slots=True)
class Contributor:
    name: str
    share: float
    """Fraction of the window's total squared error."""


def top_contributors(
    squared_errors: FloatArray, names: Sequence[str], k: int = 3
) -> tuple[Contributor, ...]:
    """The k features with the largest share of the squared error, largest first.

    Non-finite entries count as no contribution; an all-zero error has no contributors.
    """
    if len(squared_errors) != len(names):
        raise ValueError(f"names: {len(names)} names for {len(squared_errors)} errors")
    contributions = np.where(np.isfinite(squared_errors), np.abs(squared_errors), 0.0)
    total = float(contributions.sum())
    if total <= 0.0:
        return ()
    order = np.argsort(-contributions, kind="stable")[:k]
    return tuple(
        Contributor(names[i], float(contributions[i]) / total)
        for i in order
        if contributions[i] > 0.0
    )


def describe_contributors(contributors: Sequence[Contributor]) -> str:
    """'rms_x 62 %, band_100_200hz 21 %'."""
    return ", ".join(f"{c.name} {round(100 * c.share)} %" for c in contributors)


def alert_from_event(
    asset: str, event: AlarmEvent, contributors: Sequence[Contributor] = ()
) -> Alert:
    """The Alert a state change becomes; kinds anomaly_raised/_escalated/_cleared."""
    ratio = event.error / event.threshold
    if event.kind == "cleared":
        message = (
            f"{asset}: anomaly cleared after {format_duration(event.t - event.since)} "
            f"(it reached {event.severity})"
        )
    else:
        lead = "anomaly" if event.kind == "raised" else "anomaly now critical"
        message = (
            f"{asset}: {lead}: error {event.error:.3g} is {ratio:.1f}x the threshold "
            f"{event.threshold:.3g}"
        )
        if event.kind == "escalated":
            message += f", alarmed for {format_duration(event.t - event.since)}"
        if contributors:
            message += f"; top features: {describe_contributors(contributors)}"
    return Alert(asset, event.t, event.severity, f"anomaly_{event.kind}", message)


def format_duration(seconds: float) -> str:
    """'45 s', '12 min 5 s', '3 h 20 min'."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


@dataclass(frozen=True, slots=True)
class SystemicSettings:
    fraction: float = 0.5
    """Systemic when more than this fraction of the monitored members alarm..."""
    min_count: int = 3
    """...and at least this many."""
    severity: Severity = "critical"

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction < 1.0:
            raise ValueError(f"fraction: must be in [0, 1), got {self.fraction}")
        if self.min_count < 1:
            raise ValueError(f"min_count: must be at least 1, got {self.min_count}")


def is_systemic(alarming: int, monitored: int, settings: SystemicSettings) -> bool:
    return alarming >= settings.min_count and alarming > settings.fraction * monitored


class SystemicCheck:
    """Replaces the alerts of members alarming together by one systemic alert for `scope`.

    While systemic, every alert about a monitored member is held back. A member whose raise was
    held back stays silent until it clears (its clear is dropped too), so nobody reads a "cleared"
    for an alarm they never got; the systemic clear names the members still alarming.
    Members that alarm before the fraction is reached have already been alerted individually:
    being causal, the check cannot know that more are about to follow.
    """

    def __init__(
        self,
        scope: str,
        settings: SystemicSettings | None = None,
        member_of: Callable[[Alert], str] = lambda alert: alert.asset,
    ) -> None:
        """`member_of`: which member an alert is about (not one of the monitored: passes)."""
        self.scope = scope
        self.settings = settings or SystemicSettings()
        self.member_of = member_of
        self.active = False
        self._silenced: set[str] = set()

    def filter(
        self,
        t: float,
        alarming: Collection[str],
        monitored: Collection[str],
        alerts: Sequence[Alert],
    ) -> list[Alert]:
        """This step's alerts after collapsing; `alarming`: members with an active alarm now."""
        members = set(monitored)
        now_alarming = sorted(set(alarming) & members)
        systemic = is_systemic(len(now_alarming), len(members), self.settings)
        out: list[Alert] = []
        if systemic and not self.active:
            out.append(self._systemic_alert(t, "raised", now_alarming, len(members)))
        elif self.active and not systemic:
            out.append(self._systemic_alert(t, "cleared", now_alarming, len(members)))
        self.active = systemic
        out.extend(alert for alert in alerts if self._passes(alert, members))
        return out

    @property
    def silenced(self) -> frozenset[str]:
        """Members whose raise was held back and that have not cleared yet."""
        return frozenset(self._silenced)

    def set_state(self, active: bool, silenced: Collection[str]) -> None:
        """Continue from a saved state (AlertRouter.restore)."""
        self.active, self._silenced = active, set(silenced)

    def _passes(self, alert: Alert, members: set[str]) -> bool:
        member = self.member_of(alert)
        if member not in members:
            return True
        if self.active:
            if alert.kind.endswith("_raised"):
                self._silenced.add(member)
            elif alert.kind.endswith("_cleared"):
                self._silenced.discard(member)
            return False
        if member in self._silenced and alert.kind.endswith("_cleared"):
            self._silenced.discard(member)
            return False
        return True

    def _systemic_alert(
        self, t: float, kind: Literal["raised", "cleared"], alarming: list[str], monitored: int
    ) -> Alert:
        names = ", ".join(alarming)
        if kind == "raised":
            message = (
                f"{self.scope}: {len(alarming)} of {monitored} alarming at once ({names}) - "
                "likely the gateway, power or sensor bus rather than every machine"
            )
        else:
            still = f"; still alarming: {names}" if alarming else ""
            message = f"{self.scope}: systemic alarm over{still}"
        return Alert(self.scope, t, self.settings.severity, f"systemic_{kind}", message)
