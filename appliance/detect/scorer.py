"""The streaming scorer: one asset's feature vectors -> reconstruction error -> threshold -> alarm.

The same object scores on the gateway and in `appliance eval`, one window at a time and strictly
causally: a window is judged against a threshold learned from earlier windows only, then offered
to the baseline (which refuses alarmed windows).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from appliance.detect.alarms import (
    AlarmDecision,
    AlarmSettings,
    AlarmState,
    decide,
    top_contributors,
)
from appliance.detect.bundle import ModelBundle
from appliance.detect.runtime import Reconstructor, reconstruction_error
from appliance.detect.thresholds import (
    AdaptiveSettings,
    AdaptiveThreshold,
    FixedThreshold,
    Threshold,
)
from appliance.errors import BundleError
from appliance.records import FeatureVector, FloatArray, Score

MEASURED_ADAPTIVE = AdaptiveSettings(k=6.0, statistic="mean_std")
"""Chosen on SKAB valve1 (docs/DETECTION.md): the best F1 and the lowest false-alarm rate of the
gated rules measured, close to the published Conv-AE row while strictly causal."""


@dataclass(frozen=True)
class DetectorSettings:
    rule: Literal["fixed", "adaptive"] = "adaptive"
    adaptive: AdaptiveSettings = MEASURED_ADAPTIVE
    alarm: AlarmSettings = field(default_factory=AlarmSettings)
    contributors: int = 3


def build_threshold(
    bundle: ModelBundle, settings: DetectorSettings, seed_errors: Iterable[float] = ()
) -> Threshold:
    """The commissioning threshold from the bundle, or the adaptive rule floored by it.

    Errors from commissioning (`seed_errors`) stand in for the warm-up: a model that has just
    learnt normal from them needs no second warm-up, however few windows there were.
    """
    fixed = bundle.manifest.threshold.fixed_threshold
    if settings.rule == "fixed":
        return FixedThreshold(fixed)
    seed = [float(e) for e in seed_errors]
    adaptive = settings.adaptive
    if seed:
        adaptive = replace(adaptive, warmup=min(adaptive.warmup, len(seed)))
    return CommissionedDuringWarmup(
        AdaptiveThreshold(adaptive, reference=fixed, baseline=seed), fixed
    )


class CommissionedDuringWarmup:
    """The adaptive threshold, with the bundle's commissioning threshold standing in while the
    adaptive one warms up after a start: a gateway that has just booted still raises alarms."""

    def __init__(self, adaptive: AdaptiveThreshold, commissioned: float) -> None:
        self.adaptive = adaptive
        self.commissioned = commissioned

    def current(self) -> float:
        learned = self.adaptive.current()
        return self.commissioned if learned is None else learned

    def observe(self, error: float, *, alarmed: bool) -> bool:
        return self.adaptive.observe(error, alarmed=alarmed)


@dataclass(frozen=True)
class Verdict:
    score: Score
    decision: AlarmDecision


class AssetDetector:
    """Scores one asset's windows with its bundle; owns that asset's threshold and alarm state."""

    def __init__(
        self,
        asset: str,
        bundle: ModelBundle,
        runtime: Reconstructor,
        settings: DetectorSettings,
        threshold: Threshold | None = None,
        alarm: AlarmState | None = None,
    ) -> None:
        self.asset = asset
        self.bundle = bundle
        self._runtime = runtime
        self._settings = settings
        self.threshold = threshold or build_threshold(bundle, settings)
        self.alarm = alarm or AlarmState(settings.alarm)
        self._order: tuple[tuple[str, ...], np.ndarray] | None = None

    def score_vector(self, vector: FeatureVector) -> Verdict:
        return self.score_row(self._in_model_order(vector), vector.window_end)

    def score_row(self, row: FloatArray, t: float) -> Verdict:
        """Score one window given as the model's features in manifest order."""
        errors, per_feature = reconstruction_error(self.bundle, self._runtime, row[None, :])
        error = float(errors[0])
        decision = decide(self.threshold, self.alarm, t, error)
        contributors: tuple[str, ...] = ()
        if decision.anomalous and math.isfinite(error):
            top = top_contributors(
                per_feature[0], self.bundle.manifest.feature_names, self._settings.contributors
            )
            contributors = tuple(c.name for c in top)
        threshold = decision.threshold if decision.threshold is not None else math.nan
        score = Score(
            asset=self.asset,
            t=t,
            model_id=self.bundle.bundle_id,
            error=error,
            threshold=threshold,
            anomalous=decision.anomalous,
            contributors=contributors,
        )
        return Verdict(score, decision)

    def _in_model_order(self, vector: FeatureVector) -> FloatArray:
        if self._order is None or self._order[0] != vector.names:
            self._order = (vector.names, model_column_order(self.bundle, vector.names))
        picked: FloatArray = np.asarray(vector.values, dtype=np.float64)[self._order[1]]
        return picked


def model_column_order(bundle: ModelBundle, names: Sequence[str]) -> np.ndarray:
    """Indices into `names` giving the bundle's features in manifest order; BundleError naming
    the features the bundle needs and the vector lacks."""
    position = {name: i for i, name in enumerate(names)}
    missing = [n for n in bundle.manifest.feature_names if n not in position]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise BundleError(
            f"bundle {bundle.bundle_id} needs {len(missing)} feature(s) this asset does not "
            f"produce: {shown}"
        )
    return np.array([position[n] for n in bundle.manifest.feature_names], dtype=np.intp)
