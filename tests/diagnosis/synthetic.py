"""Synthetic vibration with known content: impacts at a defect rate ringing a resonance."""

from __future__ import annotations

import numpy as np

from appliance.records import FloatArray


def impacts(
    rate: float,
    seconds: float,
    defect_hz: float,
    *,
    resonance_hz: float,
    amplitude_g: float,
    shaft_hz: float = 0.0,
    load_zone_depth: float = 0.0,
    jitter: float = 0.01,
    seed: int = 0,
) -> FloatArray:
    """Decaying rings of `resonance_hz` at a `defect_hz` rate with `jitter` (share of a period)
    of random slip; with load_zone_depth > 0 their amplitude follows 1 + depth cos(shaft)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    period = 1.0 / defect_hz
    nominal = np.arange(0.0, seconds, period)
    times = nominal + rng.normal(0.0, jitter * period, len(nominal))
    out = np.zeros_like(t)
    ring_t = np.arange(int(rate * min(period, 0.02))) / rate
    ring = np.exp(-ring_t * 2 * np.pi * resonance_hz * 0.05) * np.sin(
        2 * np.pi * resonance_hz * ring_t
    )
    for time in times:
        start = round(float(time) * rate)
        if 0 <= start < len(t):
            gain = 1.0 + load_zone_depth * np.cos(2 * np.pi * shaft_hz * time)
            stop = min(len(t), start + len(ring))
            out[start:stop] += amplitude_g * gain * ring[: stop - start]
    return out


def shaft(
    rate: float, seconds: float, shaft_hz: float, amplitudes_g: tuple[float, ...]
) -> FloatArray:
    t = np.arange(int(rate * seconds)) / rate
    return sum(
        (a * np.sin(2 * np.pi * k * shaft_hz * t + 0.3 * k) for k, a in enumerate(amplitudes_g, 1)),
        np.zeros_like(t),
    )


def noise(rate: float, seconds: float, sigma_g: float, seed: int = 1) -> FloatArray:
    return np.random.default_rng(seed).normal(0.0, sigma_g, int(rate * seconds))
