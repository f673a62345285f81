"""Sensor health on the gateway: each channel's raw samples, cut into fixed windows, through the
rules of `appliance.detect.rules` (and CUSUM for slow channels), latched so that one fault is one
alert.

Windows lie on a grid of `window_s` (vibration: the feature window; slow channels: the slow
window) aligned to the epoch. A window closes when a sample past its end arrives, or, if the
channel has gone silent, `grace_s` after its end (`close_overdue`): a dead sensor still produces
windows, all dropout. Samples older than the window being filled (late blocks) are counted and
dropped from the rules, never from the stored data, which does not pass through here.

Each (channel, rule) latches: the first finding raises `<rule>_raised`, a critical finding on a
warning escalates once, and `clear_after` consecutive windows without the finding clear it. Drift
clears only after `drift_clear_after` windows, because CUSUM restarts after each finding and a
persistent shift finds again only every few windows.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from appliance.detect.cusum import Cusum, CusumSettings
from appliance.detect.rules import ChannelSpec, Finding, RuleLimits, check_window
from appliance.detect.thresholds import check_state_header
from appliance.records import Alert, FloatArray, SampleBlock, Severity
from appliance.status import StatusBoard


@dataclass(frozen=True, slots=True)
class HealthSettings:
    limits: RuleLimits = field(default_factory=RuleLimits)
    clear_after: int = 3
    """Consecutive clean windows that clear a sensor-fault alarm."""
    drift_clear_after: int = 30
    grace_s: float = 5.0
    """How long after its end a window of a silent channel waits before it closes empty."""
    cusum: CusumSettings = field(default_factory=CusumSettings)
    cusum_baseline_windows: int = 30
    """Slow-channel windows (without sensor faults) that teach CUSUM the channel's normal."""

    def __post_init__(self) -> None:
        for name in ("clear_after", "drift_clear_after", "cusum_baseline_windows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if not self.grace_s >= 0:
            raise ValueError(f"grace_s: must be >= 0, got {self.grace_s}")


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    channel: str
    end: float
    samples: FloatArray
    expected: int
    full: int
    """Samples a whole window holds (the first window after a start holds fewer)."""


class ChannelWindows:
    """Cuts one channel's blocks into windows on a fixed time grid."""

    def __init__(self, spec: ChannelSpec, window_s: float) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s: must be positive, got {window_s}")
        self.spec = spec
        self.window_s = window_s
        self.late_samples = 0
        self._end: float | None = None
        """End of the window being filled; None before the first sample."""
        self._first_t: float | None = None
        """Time of the first sample ever seen (the first window is only partly expected)."""
        self._parts: list[FloatArray] = []

    def push(self, block: SampleBlock) -> list[ClosedWindow]:
        samples, t0, rate = block.samples, block.t0, block.rate
        if self._end is None:
            self._first_t = t0
            self._end = self._grid_end(t0)
        closed: list[ClosedWindow] = []
        start = self._end - self.window_s
        late = min(len(samples), max(0, math.ceil((start - t0) * rate - 1e-9)))
        self.late_samples += late
        i = late
        while i < len(samples):
            split = max(i, math.ceil((self._end - t0) * rate - 1e-9))
            if split >= len(samples):
                self._parts.append(samples[i:])
                break
            self._parts.append(samples[i:split])
            closed.append(self._close())
            i = split
            # A gap longer than a window leaves empty windows behind: each closes all dropout.
            while t0 + i / rate >= self._end:
                closed.append(self._close())
        return closed

    def close_overdue(self, now: float, grace_s: float) -> list[ClosedWindow]:
        closed = []
        while self._end is not None and now >= self._end + grace_s:
            closed.append(self._close())
        return closed

    def _close(self) -> ClosedWindow:
        assert self._end is not None and self._first_t is not None
        end, start = self._end, self._end - self.window_s
        samples = np.concatenate(self._parts) if self._parts else np.empty(0)
        expected = round((end - max(start, self._first_t)) * self.spec.rate_hz)
        self._parts = []
        self._end = end + self.window_s
        full = round(self.window_s * self.spec.rate_hz)
        return ClosedWindow(self.spec.name, end, samples, expected, full)

    def _grid_end(self, t: float) -> float:
        return (math.floor(t / self.window_s) + 1) * self.window_s


def quantisation_step(samples: FloatArray) -> float:
    """The smallest step between distinct finite values: the sensor's LSB when it is quantised
    (a mostly constant temperature that ticks by one LSB is not a spike)."""
    values = np.unique(samples[np.isfinite(samples)])
    if len(values) < 2:
        return 0.0
    return float(np.diff(values).min())


@dataclass
class RuleLatch:
    severity: Severity | None = None
    clean: int = 0


class AssetHealth:
    """One asset's channels: windows -> findings -> latched alerts (raised/escalated/cleared)."""

    def __init__(
        self,
        asset: str,
        channels: Mapping[str, tuple[ChannelSpec, float, bool]],
        settings: HealthSettings | None = None,
    ) -> None:
        """`channels`: name -> (spec, window_s, slow); slow channels also get CUSUM."""
        self.asset = asset
        self.settings = settings or HealthSettings()
        self._windows = {name: ChannelWindows(spec, w) for name, (spec, w, _) in channels.items()}
        self._slow = {name for name, (_, _, slow) in channels.items() if slow}
        self._latches: dict[tuple[str, str], RuleLatch] = {}
        self._pending: list[ClosedWindow] = []
        self.cusums: dict[str, Cusum] = {}
        self._baselines: dict[str, list[float]] = {name: [] for name in self._slow}
        self.windows_checked = 0

    @property
    def late_samples(self) -> int:
        return sum(w.late_samples for w in self._windows.values())

    def push(self, block: SampleBlock) -> None:
        """Cheap: collect the block; the rules run in `check` (off the feature path)."""
        windows = self._windows.get(block.channel)
        if windows is not None:
            self._pending.extend(windows.push(block))

    def check(self, now: float) -> list[Alert]:
        """Run the rules on every window closed since the last call (and on overdue ones)."""
        for windows in self._windows.values():
            self._pending.extend(windows.close_overdue(now, self.settings.grace_s))
        pending, self._pending = self._pending, []
        alerts: list[Alert] = []
        for window in sorted(pending, key=lambda w: w.end):
            alerts.extend(self._check_window(window))
        return alerts

    def active_faults(self) -> dict[str, list[str]]:
        """Channel -> rules currently alarming on it."""
        faults: dict[str, list[str]] = {}
        for channel, rule in sorted(self.open_alarms()):
            faults.setdefault(channel, []).append(rule)
        return faults

    def open_alarms(self) -> dict[tuple[str, str], Severity]:
        """(channel, rule) -> severity of every alarm open now."""
        return {
            key: latch.severity
            for key, latch in self._latches.items()
            if latch.severity is not None
        }

    def has_channel(self, channel: str) -> bool:
        return channel in self._windows

    def align_alarms(self, open_alarms: Mapping[tuple[str, str], Severity]) -> None:
        """Make the open alarms exactly `open_alarms` ((channel, rule) -> severity), without
        alerts: after a restart the alert stage's record is newer than a saved health state.
        A channel this asset does not have is ignored."""
        for key, latch in self._latches.items():
            if latch.severity is not None and key not in open_alarms:
                latch.severity, latch.clean = None, 0
        for (channel, rule), severity in open_alarms.items():
            known = self._latches.get((channel, rule))
            if channel in self._windows and (known is None or known.severity is None):
                self._latches[channel, rule] = RuleLatch(severity)

    def _check_window(self, window: ClosedWindow) -> list[Alert]:
        self.windows_checked += 1
        spec = self._windows[window.channel].spec
        if spec.resolution == 0.0:
            spec = replace(spec, resolution=quantisation_step(window.samples))
        findings = check_window(
            spec, window.samples, window.expected, self.settings.limits, window.full
        )
        if window.channel in self._slow:
            drift = self._drift(window, findings)
            findings = findings + ([drift] if drift is not None else [])
        found: dict[str, Finding] = {finding.rule: finding for finding in findings}
        rules = {rule for (channel, rule) in self._latches if channel == window.channel}
        alerts = []
        for rule in sorted(rules | found.keys()):
            alert = self._latch(window, rule, found.get(rule))
            if alert is not None:
                alerts.append(alert)
        return alerts

    def _drift(self, window: ClosedWindow, findings: Sequence[Finding]) -> Finding | None:
        """CUSUM on the window mean of a slow channel, once it has learnt a clean baseline."""
        spec = self._windows[window.channel].spec
        low, high = spec.valid_range
        valid = window.samples[
            np.isfinite(window.samples) & (window.samples >= low) & (window.samples <= high)
        ]
        if findings or len(valid) == 0:
            return None
        value = float(valid.mean())
        cusum = self.cusums.get(window.channel)
        if cusum is not None:
            return cusum.update(value)
        baseline = self._baselines[window.channel]
        baseline.append(value)
        if len(baseline) >= self.settings.cusum_baseline_windows:
            try:
                self.cusums[window.channel] = Cusum.learn(
                    window.channel, spec.unit, baseline, self.settings.cusum
                )
            except ValueError:
                baseline.pop(0)  # constant so far (std 0): keep learning on a sliding baseline
        return None

    def _latch(self, window: ClosedWindow, rule: str, finding: Finding | None) -> Alert | None:
        latch = self._latches.setdefault((window.channel, rule), RuleLatch())
        if finding is None:
            if latch.severity is None:
                return None
            latch.clean += 1
            clear_after = (
                self.settings.drift_clear_after if rule == "drift" else self.settings.clear_after
            )
            if latch.clean < clear_after:
                return None
            severity, latch.severity, latch.clean = latch.severity, None, 0
            message = f"{self.asset}: {window.channel} {rule.replace('_', ' ')} cleared"
            return self._alert(window, severity, f"{rule}_cleared", message)
        latch.clean = 0
        if latch.severity is None:
            latch.severity = finding.severity
            return self._alert(window, finding.severity, f"{rule}_raised", finding.message)
        if latch.severity == "warning" and finding.severity == "critical":
            latch.severity = "critical"
            return self._alert(window, "critical", f"{rule}_escalated", finding.message)
        return None

    def _alert(self, window: ClosedWindow, severity: Severity, kind: str, message: str) -> Alert:
        if not message.startswith(f"{self.asset}:"):
            message = f"{self.asset}: {message}"
        return Alert(self.asset, window.end, severity, kind, message, channel=window.channel)

    def to_state(self) -> dict[str, object]:
        """Open alarms and CUSUM baselines, so a restart neither repeats nor forgets an alert."""
        return {
            "version": 1,
            "kind": "health",
            "alarms": {
                f"{channel}/{rule}": latch.severity
                for (channel, rule), latch in self._latches.items()
                if latch.severity is not None
            },
            "cusums": {name: cusum.to_state() for name, cusum in self.cusums.items()},
        }

    def restore(self, state: Mapping[str, object]) -> None:
        """Load `to_state()`; ValueError naming the field if it is off (then nothing changes)."""
        check_state_header(state, "health")
        alarms, cusums = state.get("alarms"), state.get("cusums")
        if not isinstance(alarms, dict) or not isinstance(cusums, dict):
            raise ValueError("alarms, cusums: must be mappings")
        latches = {}
        for key, severity in alarms.items():
            channel, _, rule = str(key).partition("/")
            if severity not in ("warning", "critical") or not rule:
                raise ValueError(f"alarms.{key}: must be 'warning' or 'critical'")
            if channel in self._windows:
                latches[channel, rule] = RuleLatch(severity)
        restored = {
            name: Cusum.from_state(value)
            for name, value in cusums.items()
            if name in self._slow and isinstance(value, dict)
        }
        self._latches.update(latches)
        self.cusums.update(restored)


async def run_health_stage(
    monitors: Mapping[str, AssetHealth],
    alerts_out: asyncio.Queue[Alert],
    board: StatusBoard,
    every_s: float = 1.0,
    clock: Callable[[], float] = time.time,
) -> None:
    """Every `every_s`, run the rules on the windows the feature stage has closed (and on windows
    of silent channels), hand the alerts on and show open faults on each asset; until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        now = clock()
        for asset, monitor in monitors.items():
            for alert in monitor.check(now):
                await alerts_out.put(alert)
            status = board.asset(asset)
            status.sensor_faults = monitor.active_faults()
            status.late_samples = monitor.late_samples
