"""Window statistics of slow channels (temperature, current, pressure, ... at about 1 Hz).

A slow channel keeps its latest samples and their times in a fixed-size ring. Its statistics over
the window [end - slow_window_s, end) are mean, population std, min, max and the least-squares
slope against the sample times in units per second; all NaN while the window holds no sample, and
the slope NaN while it holds fewer than two distinct times.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from appliance.features.settings import SLOW_FEATURES
from appliance.records import FloatArray


class SlowChannel:
    """Ring of (time, value) samples of one slow channel."""

    def __init__(self, rate: float, capacity_s: float) -> None:
        """`capacity_s`: seconds of samples at `rate` to keep (the window plus any backlog)."""
        self.rate = rate
        self.capacity = math.ceil(capacity_s * rate) + 2
        self._times = np.full(self.capacity, np.nan)
        self._values = np.full(self.capacity, np.nan)
        self._written = 0

    @property
    def ring_bytes(self) -> int:
        return self._times.nbytes + self._values.nbytes

    def write(self, t0: float, samples: FloatArray) -> None:
        """Append samples taken at t0, t0 + 1/rate, ...; the oldest are dropped when full."""
        dropped = max(0, len(samples) - self.capacity)
        samples = samples[dropped:]
        times = t0 + (dropped + np.arange(len(samples))) / self.rate
        slots = (self._written + np.arange(len(samples))) % self.capacity
        self._times[slots] = times
        self._values[slots] = samples
        self._written += len(samples)

    def clear(self) -> None:
        self._times.fill(np.nan)
        self._values.fill(np.nan)

    def has_sample_in(self, start: float, end: float) -> bool:
        """Is any sample time in [start, end)?"""
        return bool(np.any((self._times >= start) & (self._times < end)))

    def first_time_from(self, t: float) -> float:
        """Earliest sample time at or after `t`, or inf."""
        later = self._times[self._times >= t]
        return float(later.min()) if len(later) else math.inf

    def window_stats(self, end: float, window_s: float) -> FloatArray:
        """[mean, std, min, max, slope] over the samples with times in [end - window_s, end)."""
        in_window = (self._times >= end - window_s) & (self._times < end)
        if not np.any(in_window):
            return np.full(len(SLOW_FEATURES), np.nan)
        values = self._values[in_window]
        times = self._times[in_window]
        return np.array(
            [values.mean(), values.std(), values.min(), values.max(), _slope(times, values)]
        )


class SlowStrideClock:
    """Stride boundaries k * stride_s of slow-sample time, for assets without vibration channels.

    Boundary B is due once a sample at or after B has arrived (samples are pushed in time order
    per channel, so the window [B - window_s, B) is then complete for that channel). Boundaries
    whose window holds no sample of any channel, as in a gap, are skipped.
    """

    def __init__(self, stride_s: float, window_s: float) -> None:
        self.stride_s = stride_s
        self.window_s = window_s
        self._next_boundary: int | None = None
        self._latest_time = -math.inf

    def observe(self, first_time: float, last_time: float) -> bool:
        """Note the times of samples about to be written; True if the clock had to restart.

        A restart (samples from more than one window before the latest) means the sample clock
        was set back; the caller then clears the rings, whose samples are from the old clock.
        """
        restarted = first_time < self._latest_time - self.window_s
        if restarted:
            self._next_boundary = None
            self._latest_time = -math.inf
        if self._next_boundary is None:
            self._next_boundary = self._first_boundary_after(first_time)
        self._latest_time = max(self._latest_time, last_time)
        return restarted

    def due_window_ends(self, channels: Iterable[SlowChannel]) -> list[float]:
        """End times of the windows now due that hold a sample, oldest first."""
        channels = list(channels)
        ends = []
        while self._next_boundary is not None:
            end = self._next_boundary * self.stride_s
            if end > self._latest_time:
                break
            if any(channel.has_sample_in(end - self.window_s, end) for channel in channels):
                ends.append(end)
                self._next_boundary += 1
            else:
                next_time = min(channel.first_time_from(end) for channel in channels)
                if math.isinf(next_time):
                    break
                self._next_boundary = self._first_boundary_after(next_time)
        return ends

    def _first_boundary_after(self, t: float) -> int:
        """Index of the first boundary later than `t`: the first window holding `t`."""
        return math.floor(t / self.stride_s) + 1


def _slope(times: FloatArray, values: FloatArray) -> float:
    centred_times = times - times.mean()
    spread = float(centred_times @ centred_times)
    if spread == 0.0:
        return math.nan
    return float(centred_times @ (values - values.mean())) / spread
