"""Frozen value types passed between pipeline stages.

Times are UTC seconds since the Unix epoch (float). Samples are in physical units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SampleBlock:
    """Consecutive samples of one channel, evenly spaced at `rate` Hz starting at `t0`."""

    asset: str
    channel: str
    t0: float
    rate: float
    samples: FloatArray

    @property
    def t_end(self) -> float:
        """Time just after the last sample (t0 + n / rate)."""
        return self.t0 + len(self.samples) / self.rate


@dataclass(frozen=True, slots=True)
class FeatureVector:
    """One asset's features over one window; `names` is stable across windows."""

    asset: str
    window_end: float
    names: tuple[str, ...]
    values: FloatArray

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.names, (float(v) for v in self.values), strict=True))


@dataclass(frozen=True, slots=True)
class Score:
    """The detector's verdict on one FeatureVector."""

    asset: str
    t: float
    model_id: str
    error: float
    threshold: float
    anomalous: bool
    contributors: tuple[str, ...] = field(default=())


Severity = Literal["warning", "critical"]


@dataclass(frozen=True, slots=True)
class Alert:
    """A change of alarm state worth telling a person about (one per event, not per window).

    `kind` is e.g. anomaly_raised, anomaly_cleared, flatline_raised, systemic_raised; `channel` is
    set for sensor-health and drift alerts, which are about one channel rather than the machine.
    """

    asset: str
    t: float
    severity: Severity
    kind: str
    message: str
    channel: str | None = None


VerdictKind = Literal["not_a_fault", "real_fault"]


@dataclass(frozen=True, slots=True)
class EpisodeVerdict:
    """An operator's word on one anomaly episode of `asset` (the one raised at `raised_t`):
    "not_a_fault" (a false alarm: its windows were normal) or "real_fault"."""

    asset: str
    raised_t: float
    verdict: VerdictKind
    by: str
    at: float
    note: str = ""
