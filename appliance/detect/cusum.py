"""Two-sided tabular CUSUM for slow drift on one channel (pure: values in, values out).

Values are standardised with the mean and std learned from a baseline period, z = (x - mean) / std,
and two sums are kept:

    upper = max(0, upper + z - k)        lower = max(0, lower - z - k)

Either sum above h is a drift finding, after which both restart from zero. k (in std units) is
half the shift worth detecting; h sets the false-alarm rate. For independent values, k = 0.5 and
h = 10 give a false alarm about every 70,000 values (Siegmund's approximation) and find a 1 std
shift after about 20 values. A per-value threshold at mean + 4 std flags only about one value
in 700 of that shifted series.

Feed one value per step from the same series the baseline was learned on (e.g. a slow channel's
window mean at every stride). Autocorrelated values (overlapping windows) make false alarms more
frequent than the figure above, which assumes independent values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from appliance.detect.rules import Finding
from appliance.detect.thresholds import check_state_header, is_number


@dataclass(frozen=True, slots=True)
class CusumSettings:
    k: float = 0.5
    """Reference value in std units: half the shift worth detecting."""
    h: float = 10.0
    """Decision interval in std units."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.k) and self.k >= 0):
            raise ValueError(f"k: must be finite and >= 0, got {self.k}")
        if not (math.isfinite(self.h) and self.h > 0):
            raise ValueError(f"h: must be finite and positive, got {self.h}")


class Cusum:
    """Drift detector for one channel with a learned mean and std."""

    def __init__(
        self,
        channel: str,
        unit: str,
        mean: float,
        std: float,
        settings: CusumSettings | None = None,
    ) -> None:
        if not math.isfinite(mean):
            raise ValueError(f"mean: must be finite, got {mean}")
        if not (math.isfinite(std) and std > 0):
            raise ValueError(f"std: must be finite and positive, got {std}")
        self.channel = channel
        self.unit = unit
        self.mean = mean
        self.std = std
        self.settings = settings or CusumSettings()
        self.upper = 0.0
        self.lower = 0.0

    @classmethod
    def learn(
        cls,
        channel: str,
        unit: str,
        baseline: Iterable[float],
        settings: CusumSettings | None = None,
    ) -> Cusum:
        """Mean and std from the finite values of a baseline period."""
        values = np.asarray(list(baseline), dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values) < 2:
            raise ValueError("baseline: need at least two finite values")
        std = float(values.std(ddof=1))
        if std == 0.0:
            raise ValueError("baseline: values are all equal, std is 0 (a stuck sensor?)")
        return cls(channel, unit, float(values.mean()), std, settings)

    def update(self, value: float) -> Finding | None:
        """Add one value; a drift finding when a sum crosses h (both sums then restart)."""
        value = float(value)
        if not math.isfinite(value):
            return None
        z = (value - self.mean) / self.std
        self.upper = max(0.0, self.upper + z - self.settings.k)
        self.lower = max(0.0, self.lower - z - self.settings.k)
        statistic = max(self.upper, self.lower)
        if statistic <= self.settings.h:
            return None
        direction = "up" if self.upper >= self.lower else "down"
        self.upper = self.lower = 0.0
        return Finding(
            "drift",
            self.channel,
            "warning",
            statistic,
            self.settings.h,
            f"{self.channel} drifting {direction}: {value:.2f} {self.unit} against a baseline of "
            f"{self.mean:.2f} +/- {self.std:.2f} {self.unit} (CUSUM {statistic:.1f} > "
            f"{self.settings.h:g})",
        )

    def to_state(self) -> dict[str, object]:
        return {
            "version": 1,
            "kind": "cusum",
            "channel": self.channel,
            "unit": self.unit,
            "mean": self.mean,
            "std": self.std,
            "k": self.settings.k,
            "h": self.settings.h,
            "upper": self.upper,
            "lower": self.lower,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> Cusum:
        """Rebuild from `to_state()`; ValueError naming the field if anything is off."""
        check_state_header(state, "cusum")
        channel, unit = _text(state, "channel"), _text(state, "unit")
        numbers = {name: _number(state, name) for name in ("mean", "std", "k", "h")}
        sums = {name: _number(state, name) for name in ("upper", "lower")}
        for name, value in sums.items():
            if value < 0:
                raise ValueError(f"{name}: must be >= 0, got {value}")
        settings = CusumSettings(numbers["k"], numbers["h"])
        cusum = cls(channel, unit, numbers["mean"], numbers["std"], settings)
        cusum.upper, cusum.lower = sums["upper"], sums["lower"]
        return cusum


def _text(state: Mapping[str, object], name: str) -> str:
    value = state.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be a string")
    return value


def _number(state: Mapping[str, object], name: str) -> float:
    value = state.get(name)
    if not (is_number(value) and math.isfinite(value)):
        raise ValueError(f"{name}: must be a finite number")
    return float(value)
