"""The shaft: its speed estimated from the spectrum, and the 1x / 2x / harmonic pattern in velocity.

Speed: within a configured range, the frequency f whose first harmonics f, 2f, 3f stand highest
above the noise floor of an acceleration spectrum zero-padded to 0.25 Hz bins (a harmonic sum:
one strong line that is not the shaft's, e.g. the mains, rarely has the harmonic family too).

Pattern: the velocity spectrum's lines at 1x..10x and at the half orders 0.5x..2.5x, in mm/s and
in dB above the floor. The rules (verdict.py) follow the usual analyst's chart: imbalance is a
dominant 1x, misalignment a 2x at least half of 1x (with a high axial 1x as a sign too),
mechanical looseness a long series of harmonics or half orders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from appliance.diagnosis.lines import Line, Spectrum, ratio_db
from appliance.diagnosis.severity import STANDARD_GRAVITY
from appliance.records import FloatArray

SPEED_BIN_HZ = 0.25
"""Bin spacing of the spectrum the speed is read from (3 harmonics: about 0.1 Hz of speed)."""
HARMONICS_FOR_SPEED = 3
SHAFT_ORDERS = 10
HALF_ORDERS = (0.5, 1.5, 2.5)


@dataclass(frozen=True)
class ShaftLines:
    """The velocity spectrum's lines at whole and half shaft orders."""

    orders: tuple[Line, ...]
    """1x .. 10x."""
    half_orders: tuple[Line, ...]
    amplitudes_mm_s: FloatArray
    """Peak velocity of each of `orders`."""


def padded_spectrum(
    signal: FloatArray, rate: float, bin_hz: float = SPEED_BIN_HZ, max_hz: float | None = None
) -> Spectrum:
    """Hann-windowed magnitude spectrum (peak amplitude units) up to `max_hz`, zero-padded so
    that its bins are at most `bin_hz` apart (never less than the plain spectrum's)."""
    count = len(signal)
    window = np.hanning(count)
    size = count * max(1, math.ceil(rate / count / bin_hz))
    magnitude = np.abs(np.fft.rfft((signal - np.mean(signal)) * window, n=size))
    magnitude *= 2.0 / float(np.sum(window))
    freqs = np.fft.rfftfreq(size, 1.0 / rate).astype(np.float64)
    if max_hz is not None:
        kept = int(np.searchsorted(freqs, max_hz, side="right")) + 1
        freqs, magnitude = freqs[:kept], magnitude[:kept]
    return Spectrum.with_floor(freqs, magnitude, floor_width_hz=max(20.0, rate / count * 8))


def estimate_shaft_hz(
    signal: FloatArray, rate: float, low_hz: float, high_hz: float
) -> tuple[float, float]:
    """(shaft speed in Hz within [low, high], how far its harmonic family stands above the floor
    in mean dB): the candidate with the largest harmonic sum."""
    top = HARMONICS_FOR_SPEED * high_hz * 1.05 + 20.0
    spectrum = padded_spectrum(signal, rate, max_hz=top)
    freqs = spectrum.freqs
    candidates = freqs[(freqs >= low_hz) & (freqs <= high_hz)]
    if len(candidates) == 0:
        raise ValueError(f"no spectral bin in the speed range {low_hz}-{high_hz} Hz")
    above_floor_db = ratio_db(spectrum.magnitude / spectrum.floor)
    harmonics = np.arange(1, HARMONICS_FOR_SPEED + 1)
    positions = np.clip(
        np.searchsorted(freqs, candidates[:, None] * harmonics[None, :]), 0, len(freqs) - 1
    )
    scores = np.mean(above_floor_db[positions], axis=1)
    best = int(np.argmax(scores))
    return float(candidates[best]), float(scores[best])


def shaft_lines(
    acceleration_g: FloatArray, rate: float, shaft_hz: float, slip: float = 0.02
) -> ShaftLines:
    """Velocity lines at the shaft orders (tolerance: `slip` of the line's frequency)."""
    velocity = _velocity_spectrum(acceleration_g, rate)
    orders = tuple(
        velocity.line(f"{k}x", k * shaft_hz, slip * shaft_hz)
        for k in range(1, SHAFT_ORDERS + 1)
        if k * shaft_hz < rate / 2
    )
    halves = tuple(
        velocity.line(f"{h}x", h * shaft_hz, slip * shaft_hz)
        for h in HALF_ORDERS
        if h * shaft_hz < rate / 2
    )
    indices = np.searchsorted(velocity.freqs, [line.found_hz for line in orders])
    return ShaftLines(orders, halves, velocity.magnitude[indices])


def _velocity_spectrum(acceleration_g: FloatArray, rate: float) -> Spectrum:
    """Peak velocity in mm/s per bin, over 10 Hz and up (below, 1/f would blow up the noise)."""
    accel = padded_spectrum(acceleration_g, rate, bin_hz=rate / len(acceleration_g) / 2)
    freqs = accel.freqs
    per_hz = STANDARD_GRAVITY * 1000.0 / (2 * np.pi * np.maximum(freqs, 1.0))
    scale = np.where(freqs >= 10.0, per_hz, 0.0)
    return Spectrum.with_floor(freqs, accel.magnitude * scale, floor_width_hz=20.0)
