"""Sensor-health rules: tell a broken sensor from a sick machine (pure: values in, values out).

The rules look at one channel's *raw samples* over a window (the samples of the SampleBlocks that
made the window), not at feature vectors: features average the evidence away (one impossible
reading barely moves a window mean, and a single-sample spike vanishes in a band energy). The
dropout rule needs only the expected and received sample counts (the capture counters).

- impossible values: a sample outside the channel's valid_range (or NaN/inf) is a sensor fault;
- flatline: the window's std is (almost) zero, relative to the channel's typical std when it is
  known, otherwise an absolute epsilon: a stuck sensor or a frozen driver;
- spikes: samples whose robust z-score |x - median| / (1.4826 MAD) exceeds a limit, counted as
  runs of neighbouring samples; a few isolated spikes point to a cable or EMI, not to the machine;
- dropout: the fraction of expected samples that did not arrive.

Slow drift (CUSUM) lives in `appliance.detect.cusum` because it keeps state between windows.

Limits are per channel kind in practice. Measured on CWRU at 12 kHz over 1 s windows, the largest
robust z of the healthy drive-end recording was 4.0, of the 0.007 inch ball fault 4.5, of the inner
race fault 7.9 and of the outer race fault 12.0 (periodic impacts): the default spike limit (20)
stays above what a bearing fault does to the signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from appliance.records import FloatArray, Severity

RuleName = Literal["impossible_value", "flatline", "spike", "dropout", "drift"]
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """What the rules need to know about a channel (from its config and its commissioning)."""

    name: str
    unit: str
    rate_hz: float
    valid_range: tuple[float, float]
    typical_std: float | None = None
    """Std of the channel over a window of normal operation, learned at commissioning."""
    resolution: float = 0.0
    """Smallest step the sensor reports (its LSB); a one-step jitter is never a spike."""

    def __post_init__(self) -> None:
        low, high = self.valid_range
        if not low < high:
            raise ValueError(f"valid_range: min {low} must be below max {high}")
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz: must be positive, got {self.rate_hz}")


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule's verdict on one channel; `value` is what was measured against `limit`."""

    rule: RuleName
    channel: str
    severity: Severity
    value: float
    limit: float
    message: str

    @property
    def sensor_fault(self) -> bool:
        """True for the rules that point at the sensor path rather than the machine."""
        return self.rule != "drift"


@dataclass(frozen=True, slots=True)
class RuleLimits:
    """Limits of the window rules; the defaults are a start, to be measured per channel kind."""

    impossible_critical_fraction: float = 0.5
    """Impossible values are critical when at least this fraction of the window is impossible."""
    flat_relative: float = 0.01
    """Flat when std <= flat_relative * typical_std (when the channel's typical std is known)..."""
    flat_absolute: float = 1e-9
    """...or else when std <= flat_absolute (in the channel's unit)."""
    flat_min_samples: int = 3
    flat_min_fraction: float = 0.5
    """...and only over at least this fraction of a whole window: a few seconds of a quantised
    slow sensor (the partial first window after a start) are often one reading repeated."""
    spike_z: float = 20.0
    spike_min_samples: int = 8
    """Fewer samples give no trustworthy median and MAD."""
    spike_max_fraction: float = 0.01
    """Spikes are rare: when more samples than this fraction of the window (and more than
    spike_max_always) are beyond spike_z, the signal changed (e.g. a stuck sensor coming back
    within the window), which is not a spike finding."""
    spike_max_always: int = 3
    dropout_warning: float = 0.05
    dropout_critical: float = 0.5


def check_impossible(spec: ChannelSpec, samples: FloatArray, limits: RuleLimits) -> Finding | None:
    """Samples outside valid_range, or NaN/inf; `value` is their fraction, `limit` 0."""
    low, high = spec.valid_range
    finite = np.isfinite(samples)
    impossible = ~finite | (samples < low) | (samples > high)
    count = int(impossible.sum())
    if count == 0:
        return None
    fraction = count / len(samples)
    severity: Severity = (
        "critical" if fraction >= limits.impossible_critical_fraction else "warning"
    )
    worst = _worst_impossible(samples[impossible], low, high)
    return Finding(
        "impossible_value",
        spec.name,
        severity,
        fraction,
        0.0,
        f"{spec.name} read {worst} {spec.unit} ({count} of {len(samples)} samples outside "
        f"{_num(low)}..{_num(high)} {spec.unit}) - sensor fault, not the machine",
    )


def check_flatline(
    spec: ChannelSpec, samples: FloatArray, limits: RuleLimits, full: int | None = None
) -> Finding | None:
    """Std of the window's valid samples (almost) zero: a stuck sensor. `full`: the samples a
    whole window holds (fewer valid samples than flat_min_fraction of it: not judged)."""
    values = _valid(spec, samples)
    needed = limits.flat_min_samples
    if full is not None:
        needed = max(needed, math.ceil(limits.flat_min_fraction * full))
    if len(values) < needed:
        return None
    std = float(values.std())
    limit = _flat_limit(spec, limits)
    if std > limit:
        return None
    seconds = len(samples) / spec.rate_hz
    return Finding(
        "flatline",
        spec.name,
        "warning",
        std,
        limit,
        f"{spec.name} flat at {float(values.mean()):.2f} {spec.unit} for {seconds:.0f} s "
        "- sensor stuck?",
    )


def check_spikes(spec: ChannelSpec, samples: FloatArray, limits: RuleLimits) -> Finding | None:
    """Robust z-score of the valid samples above spike_z; `value` is the largest z.

    Neighbouring samples above the limit count as one spike. The MAD scale is floored by the
    sensor resolution, so a quantised, mostly constant signal does not make every step a spike.
    """
    values = _valid(spec, samples)
    if len(values) < limits.spike_min_samples:
        return None
    z = robust_z(values, spec.resolution)
    above = z > limits.spike_z
    spikes = count_runs(above)
    allowed = max(limits.spike_max_always, limits.spike_max_fraction * len(values))
    if spikes == 0 or int(above.sum()) > allowed:
        return None
    largest = float(z.max())
    shown = "inf" if math.isinf(largest) else f"{largest:.0f}"
    return Finding(
        "spike",
        spec.name,
        "warning",
        largest,
        limits.spike_z,
        f"{spec.name}: {spikes} spike{'s' if spikes > 1 else ''} in "
        f"{len(samples) / spec.rate_hz:.0f} s (up to {shown} robust sigmas) - cable or EMI?",
    )


def check_dropout(
    spec: ChannelSpec, expected: int, received: int, limits: RuleLimits
) -> Finding | None:
    """The fraction of the `expected` samples that did not arrive."""
    if expected <= 0:
        return None
    missing = max(0.0, 1.0 - received / expected)
    if missing <= limits.dropout_warning:
        return None
    severity: Severity = "critical" if missing > limits.dropout_critical else "warning"
    limit = limits.dropout_critical if severity == "critical" else limits.dropout_warning
    return Finding(
        "dropout",
        spec.name,
        severity,
        missing,
        limit,
        f"{spec.name} lost {100 * missing:.0f} % of its samples ({received} of {expected} "
        f"arrived in {expected / spec.rate_hz:.0f} s) - cable, USB or bus?",
    )


def check_window(
    spec: ChannelSpec,
    samples: FloatArray,
    expected: int | None = None,
    limits: RuleLimits | None = None,
    full: int | None = None,
) -> list[Finding]:
    """All window rules on one channel; `expected`: sample count the window should hold,
    `full`: sample count a whole window holds."""
    limits = limits or RuleLimits()
    received = len(samples)
    findings = [
        check_impossible(spec, samples, limits) if received else None,
        check_flatline(spec, samples, limits, full),
        check_spikes(spec, samples, limits),
        None if expected is None else check_dropout(spec, expected, received, limits),
    ]
    return [finding for finding in findings if finding is not None]


def robust_z(values: FloatArray, resolution: float = 0.0) -> FloatArray:
    """|x - median| / max(1.4826 MAD, resolution); inf for any deviation when that scale is 0."""
    median = float(np.median(values))
    deviations = np.abs(values - median)
    scale = max(MAD_TO_SIGMA * float(np.median(deviations)), resolution)
    if scale == 0.0:
        return np.where(deviations > 0, math.inf, 0.0)
    z: FloatArray = deviations / scale
    return z


def count_runs(flags: npt.NDArray[np.bool_]) -> int:
    """Number of runs of consecutive True values."""
    if len(flags) == 0:
        return 0
    starts = flags[1:] & ~flags[:-1]
    return int(starts.sum()) + int(flags[0])


def _valid(spec: ChannelSpec, samples: FloatArray) -> FloatArray:
    low, high = spec.valid_range
    keep = np.isfinite(samples) & (samples >= low) & (samples <= high)
    valid: FloatArray = samples[keep]
    return valid


def _flat_limit(spec: ChannelSpec, limits: RuleLimits) -> float:
    if spec.typical_std is not None and spec.typical_std > 0:
        return limits.flat_relative * spec.typical_std
    return limits.flat_absolute


def _worst_impossible(values: FloatArray, low: float, high: float) -> str:
    if not np.all(np.isfinite(values)):
        return "NaN" if np.any(np.isnan(values)) else "inf"
    distance = np.maximum(low - values, values - high)
    return _num(float(values[int(np.argmax(distance))]))


def _num(value: float) -> str:
    return f"{value:.4g}"
