"""Spectral lines against a robust noise floor: is there a peak near where a line is expected?

The floor under each bin is the running median of the spectrum over `floor_width_hz` (a median
ignores the few lines inside its span, so a family of lines does not raise its own floor). A
line is the largest bin within the tolerance of its expected frequency; its height is reported
in dB above the floor there (20 log10 of the magnitude ratio).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter

from appliance.records import FloatArray


@dataclass(frozen=True)
class Line:
    """One expected line and what was found near it."""

    name: str
    """E.g. "BPFO", "2xBPFO", "BPFI-1x" (lower sideband at shaft speed)."""
    expected_hz: float
    found_hz: float
    db_above_floor: float


@dataclass(frozen=True)
class Spectrum:
    """A one-sided magnitude spectrum and its noise floor, bin by bin."""

    freqs: FloatArray
    magnitude: FloatArray
    floor: FloatArray

    @classmethod
    def with_floor(
        cls, freqs: FloatArray, magnitude: FloatArray, floor_width_hz: float
    ) -> Spectrum:
        step = float(freqs[1] - freqs[0])
        width = max(3, round(floor_width_hz / step) | 1)
        floor = median_filter(magnitude, size=width, mode="nearest")
        tiny = max(float(np.max(floor)), 1e-300) * 1e-12
        return cls(freqs, magnitude, np.maximum(floor, tiny))

    @property
    def resolution_hz(self) -> float:
        return float(self.freqs[1] - self.freqs[0])

    def line(self, name: str, expected_hz: float, tolerance_hz: float) -> Line:
        """The largest bin within +-tolerance (at least one bin) of `expected_hz`."""
        tolerance = max(tolerance_hz, self.resolution_hz)
        low = int(np.searchsorted(self.freqs, expected_hz - tolerance, side="left"))
        high = int(np.searchsorted(self.freqs, expected_hz + tolerance, side="right"))
        low, high = max(low, 1), min(high, len(self.freqs))
        if low >= high:
            return Line(name, expected_hz, expected_hz, 0.0)
        best = low + int(np.argmax(self.magnitude[low:high]))
        ratio = self.magnitude[best] / self.floor[best]
        return Line(name, expected_hz, float(self.freqs[best]), float(ratio_db(ratio)))


MIN_RATIO = 1e-12  # -240 dB: a silent bin (a flat, stuck channel) reads as far below the floor


def ratio_db(ratio: FloatArray | float) -> FloatArray:
    """20 log10 of a magnitude ratio, without -inf for a bin that holds nothing."""
    return np.asarray(20 * np.log10(np.maximum(ratio, MIN_RATIO)), dtype=np.float64)
