"""Maps MCU microsecond timestamps to UTC seconds. Pure: callers pass in the host times.

Every frame gives one observation: the MCU time at which its data was complete and the host
monotonic time at which it arrived. Their difference (host - mcu) is the clock offset plus a
delay that is never negative (USB polling, scheduler). So the offset is estimated from the
*minimum* difference per bucket of MCU time, and a line through a sliding window of those minima
(Theil-Sen, robust to a bucket where everything was late) also tracks crystal drift.

Host times are time.monotonic(), which never steps; UTC is derived from it with an offset
tracked separately (UtcOffsetTracker) so that an NTP step does not tear the timeline.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

MICROSECOND = 1e-6


@dataclass(frozen=True, slots=True)
class OffsetLine:
    """host_mono - mcu_s ~= intercept + slope * mcu_s, with mcu_s relative to the session anchor."""

    intercept: float
    slope: float

    def at(self, x: float) -> float:
        return self.intercept + self.slope * x


@dataclass(slots=True)
class _Bucket:
    index: int
    x: float
    offset: float


def theil_sen(points: list[tuple[float, float]], max_slope: float) -> OffsetLine:
    """Median of pairwise slopes (clamped to +-max_slope), then median intercept."""
    slopes = [
        (y2 - y1) / (x2 - x1)
        for i, (x1, y1) in enumerate(points)
        for x2, y2 in points[i + 1 :]
        if x2 != x1
    ]
    slope = statistics.median(slopes) if slopes else 0.0
    slope = min(max(slope, -max_slope), max_slope)
    intercept = statistics.median(y - slope * x for x, y in points)
    return OffsetLine(intercept, slope)


class UtcOffsetTracker:
    """Tracks (wall clock - monotonic clock) so UTC can be computed from monotonic times.

    Small changes of the measured offset (NTP slewing, small steps) are followed at a bounded
    rate so mapped times stay monotonic. A change larger than `step_threshold_s` (e.g. a Pi
    without RTC getting its first NTP fix) is taken at once and counted in `steps`.
    """

    def __init__(self, max_slew_ppm: float = 5000.0, step_threshold_s: float = 1.0) -> None:
        self._max_slew = max_slew_ppm * MICROSECOND
        self._step_threshold_s = step_threshold_s
        self._offset: float | None = None
        self._last_mono = 0.0
        self.steps = 0

    def update(self, host_mono: float, host_wall: float) -> None:
        measured = host_wall - host_mono
        if self._offset is None:
            self._offset, self._last_mono = measured, host_mono
            return
        elapsed = max(0.0, host_mono - self._last_mono)
        self._last_mono = max(self._last_mono, host_mono)
        error = measured - self._offset
        if abs(error) > self._step_threshold_s:
            self._offset = measured
            self.steps += 1
            return
        max_change = elapsed * self._max_slew
        self._offset += min(max(error, -max_change), max_change)

    def utc(self, host_mono: float) -> float:
        if self._offset is None:
            raise RuntimeError("UtcOffsetTracker.utc() called before any update()")
        return host_mono + self._offset


class McuClock:
    """Maps one MCU's timestamps (µs since its boot) to UTC.

    A *session* is one stretch of continuous MCU time. A new one starts on reanchor() (call it
    on HELLO) or when observe() sees a discontinuity: MCU time going backwards, jumping ahead of
    host time by more than `jump_tolerance_s`, or arriving later than predicted by more than
    that for `late_buckets_for_reset` buckets in a row (an MCU that rebooted unseen while the
    link was down). Output never goes backwards, across sessions too: a backward correction of
    the estimate is absorbed by letting output time run at (1 - correction_slew) of MCU time.
    """

    def __init__(
        self,
        *,
        window_s: float = 60.0,
        bucket_s: float = 1.0,
        max_drift_ppm: float = 200.0,
        jump_tolerance_s: float = 1.0,
        late_buckets_for_reset: int = 3,
        min_fit_buckets: int = 3,
        correction_slew: float = 0.05,
        utc: UtcOffsetTracker | None = None,
    ) -> None:
        self._bucket_s = bucket_s
        self._window_buckets = max(1, math.ceil(window_s / bucket_s))
        self._max_slope = max_drift_ppm * MICROSECOND
        self._jump_tolerance_s = jump_tolerance_s
        self._late_buckets_for_reset = late_buckets_for_reset
        self._min_fit_buckets = min_fit_buckets
        self._correction_slew = correction_slew
        self.utc_offset = utc if utc is not None else UtcOffsetTracker()
        self.sessions = 0
        self.discontinuities = 0
        self._floor_mono: float | None = None
        self._anchor_us: int | None = None
        self._buckets: deque[_Bucket] = deque()
        self._current: _Bucket | None = None
        self._line: OffsetLine | None = None
        self._session_min_offset = math.inf
        self._late_buckets = 0
        self._last_observation: tuple[float, float] | None = None
        self._last_output: tuple[float, float] | None = None

    @property
    def drift_ppm(self) -> float:
        """Estimated host-seconds-per-MCU-second minus one, in ppm (0 until enough data)."""
        return self._line.slope / MICROSECOND if self._line else 0.0

    def reanchor(self) -> None:
        """Forget the current session: the MCU's time base restarted (e.g. HELLO received)."""
        self._start_session(None)

    def observe(self, mcu_time_us: int, host_mono: float, host_wall: float) -> bool:
        """Record that data complete at `mcu_time_us` arrived at `host_mono` (wall: `host_wall`).

        Returns True if this observation revealed a discontinuity and started a new session.
        """
        self.utc_offset.update(host_mono, host_wall)
        discontinuities_before = self.discontinuities
        if self._anchor_us is None:
            self._start_session(mcu_time_us)
        elif self._is_discontinuous(self._x(mcu_time_us), host_mono):
            self._restart_after_discontinuity(mcu_time_us)
        x = self._x(mcu_time_us)
        if self._add_observation(x, host_mono - x):
            self._restart_after_discontinuity(mcu_time_us)
            x = 0.0
            self._add_observation(x, host_mono)
        self._last_observation = (x, host_mono)
        return self.discontinuities != discontinuities_before

    def to_mono(self, mcu_time_us: int) -> float:
        """Host monotonic time of `mcu_time_us`; never earlier than a previous later-MCU result."""
        if self._anchor_us is None:
            raise RuntimeError("McuClock.to_mono() called before any observation")
        x = self._x(mcu_time_us)
        estimate = x + self._offset_at(x)
        if self._last_output is not None:
            last_x, last_mono = self._last_output
            if x < last_x:
                return estimate
            estimate = max(estimate, last_mono + (x - last_x) * (1.0 - self._correction_slew))
        elif self._floor_mono is not None:
            estimate = max(estimate, self._floor_mono)
        self._last_output = (x, estimate)
        self._floor_mono = estimate
        return estimate

    def to_utc(self, mcu_time_us: int) -> float:
        return self.utc_offset.utc(self.to_mono(mcu_time_us))

    # --- internals ------------------------------------------------------------------------

    def _start_session(self, anchor_us: int | None) -> None:
        self._anchor_us = anchor_us
        self._buckets = deque()
        self._current = None
        self._line = None
        self._session_min_offset = math.inf
        self._late_buckets = 0
        self._last_observation = None
        self._last_output = None
        if anchor_us is not None:
            self.sessions += 1

    def _restart_after_discontinuity(self, mcu_time_us: int) -> None:
        self.discontinuities += 1
        self._start_session(mcu_time_us)

    def _x(self, mcu_time_us: int) -> float:
        # Relative to the session anchor: a u64 µs count near 2**63 has no µs left as a float.
        assert self._anchor_us is not None
        return (mcu_time_us - self._anchor_us) * MICROSECOND

    def _is_discontinuous(self, x: float, host_mono: float) -> bool:
        if self._last_observation is None:
            return False
        last_x, last_mono = self._last_observation
        mcu_elapsed = x - last_x
        return mcu_elapsed < 0 or mcu_elapsed - (host_mono - last_mono) > self._jump_tolerance_s

    def _add_observation(self, x: float, offset: float) -> bool:
        """Min-filter one offset into its bucket; True if the stream is persistently late."""
        self._session_min_offset = min(self._session_min_offset, offset)
        index = math.floor(x / self._bucket_s)
        current = self._current
        if current is not None and index == current.index:
            if offset < current.offset:
                current.x, current.offset = x, offset
            return False
        persistently_late = current is not None and self._complete_bucket(current)
        self._current = _Bucket(index, x, offset)
        return persistently_late

    def _complete_bucket(self, bucket: _Bucket) -> bool:
        late = self._line is not None and (
            bucket.offset - self._line.at(bucket.x) > self._jump_tolerance_s
        )
        self._late_buckets = self._late_buckets + 1 if late else 0
        self._buckets.append(bucket)
        while self._buckets and self._buckets[0].index <= bucket.index - self._window_buckets:
            self._buckets.popleft()
        if len(self._buckets) >= self._min_fit_buckets:
            points = [(b.x, b.offset) for b in self._buckets]
            self._line = theil_sen(points, self._max_slope)
        return self._late_buckets >= self._late_buckets_for_reset

    def _offset_at(self, x: float) -> float:
        if self._line is not None:
            return self._line.at(x)
        return self._session_min_offset
