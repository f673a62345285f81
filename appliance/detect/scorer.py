"""The streaming scorer: one asset's feature vectors -> model error -> threshold -> alarm.

The model is anything that gives a reconstruction error (`ErrorModel`): a bundle's int8
autoencoder (`BundleModel`), or the linear model an asset without a bundle commissions on the
gateway itself (appliance/detect/commissioning.py).

The same object scores on the gateway and in `appliance eval`, one window at a time and strictly
causally: a window is judged against a threshold learned from earlier windows only, then offered
to the baseline (which refuses alarmed windows).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np

from appliance.detect.alarms import (
    AlarmDecision,
    AlarmSettings,
    AlarmState,
    Contributor,
    decide,
    top_contributors,
)
from appliance.detect.bundle import ModelBundle
from appliance.detect.runtime import Reconstructor, reconstruction_error
from appliance.detect.thresholds import (
    STATE_VERSION,
    AdaptiveSettings,
    AdaptiveThreshold,
    FixedThreshold,
    Threshold,
    check_state_header,
)
from appliance.errors import BundleError
from appliance.records import FeatureVector, FloatArray, Score

MEASURED_ADAPTIVE = AdaptiveSettings(
    k=6.5,
    statistic="mean_std",
    rebaseline_after=550,
    rebaseline_reset=60,
    rebaseline_after_return=425,
)
"""Chosen on SKAB valve1 with the default AlarmSettings by leave-files-out cross-validation over
5 training seeds (docs/DETECTION.md, bench/cv_skab.py): k 6.5, and a baseline that takes the
error's level after 550 windows refused in a row, so an alarm does not stay up for ever after
a lasting change of operating point. The run survives a return of fewer than 60 admitted windows
in a row, and a run that held such a return re-baselines after 425 refused (an alarm that let go
briefly inside an anomaly no longer restarts the count: valve1 pooled FAR 17.0 -> 14.8 %, NAB
31.5 -> 31.8; docs/DETECTION.md, "Third pass"). A share below 1 (`rebaseline_share`) lowered FAR
but cost MAR on valve1 and was not adopted ("Second pass")."""


@dataclass(frozen=True)
class DetectorSettings:
    rule: Literal["fixed", "adaptive"] = "adaptive"
    adaptive: AdaptiveSettings = MEASURED_ADAPTIVE
    alarm: AlarmSettings = field(default_factory=AlarmSettings)
    contributors: int = 3


class ErrorModel(Protocol):
    """What the scorer needs from a model: reconstruction errors of feature rows."""

    @property
    def model_id(self) -> str:
        """Recorded with every score."""
        ...

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The columns `errors` expects, in order."""
        ...

    @property
    def commissioned_threshold(self) -> float:
        """The fixed threshold calibrated on normal data when the model was made."""
        ...

    def errors(self, rows: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(n, d) rows -> per-row mean squared error (n,) and per-feature squared errors (n, d),
        in scaled units, the residual taken against the UNCLIPPED scaled input."""
        ...


class BundleModel:
    """A bundle's int8 autoencoder, run by `runtime`, as an ErrorModel."""

    def __init__(self, bundle: ModelBundle, runtime: Reconstructor) -> None:
        self.bundle = bundle
        self.runtime = runtime

    @property
    def model_id(self) -> str:
        return self.bundle.bundle_id

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.bundle.manifest.feature_names

    @property
    def commissioned_threshold(self) -> float:
        return self.bundle.manifest.threshold.fixed_threshold

    def errors(self, rows: FloatArray) -> tuple[FloatArray, FloatArray]:
        return reconstruction_error(self.bundle, self.runtime, rows)


def build_threshold(
    model: ErrorModel, settings: DetectorSettings, seed_errors: Iterable[float] = ()
) -> Threshold:
    """The model's commissioning threshold, or the adaptive rule floored by it.

    Errors from commissioning (`seed_errors`) stand in for the warm-up: a model that has just
    learnt normal from them needs no second warm-up, however few windows there were.
    """
    fixed = model.commissioned_threshold
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
    """The adaptive threshold, with the model's commissioning threshold standing in while the
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
    contributors: tuple[Contributor, ...] = ()
    """The features with the largest share of the error (only for an anomalous window)."""


class AssetDetector:
    """Scores one asset's windows with its model; owns that asset's threshold and alarm state."""

    def __init__(
        self,
        asset: str,
        model: ErrorModel,
        settings: DetectorSettings,
        threshold: Threshold | None = None,
        alarm: AlarmState | None = None,
    ) -> None:
        self.asset = asset
        self.model = model
        self._settings = settings
        self.threshold = threshold or build_threshold(model, settings)
        self.alarm = alarm or AlarmState(settings.alarm)
        self._order: tuple[tuple[str, ...], np.ndarray] | None = None

    def to_state(self) -> dict[str, object]:
        """The learnt threshold baseline and the alarm episode, for the store (restarts)."""
        adaptive = (
            self.threshold.adaptive
            if isinstance(self.threshold, CommissionedDuringWarmup)
            else None
        )
        return {
            "version": STATE_VERSION,
            "kind": "detector",
            "model_id": self.model.model_id,
            "threshold": None if adaptive is None else adaptive.to_state(),
            "alarm": self.alarm.to_state(),
        }

    def restore(self, state: Mapping[str, object]) -> None:
        """Continue from `to_state()` of the same model; ValueError naming the field otherwise
        (then nothing changes: a new model starts afresh)."""
        check_state_header(state, "detector")
        if state.get("model_id") != self.model.model_id:
            raise ValueError(
                f"model_id: the state is for {state.get('model_id')!r}, not {self.model.model_id}"
            )
        raw_threshold, raw_alarm = state.get("threshold"), state.get("alarm")
        if not isinstance(raw_alarm, dict):
            raise ValueError("alarm: must be an object")
        alarm = AlarmState.from_state(raw_alarm, self._settings.alarm)
        if isinstance(raw_threshold, dict) and isinstance(self.threshold, CommissionedDuringWarmup):
            self.threshold.adaptive = AdaptiveThreshold.from_state(raw_threshold)
        self.alarm = alarm

    def score_vector(self, vector: FeatureVector) -> Verdict:
        return self.score_row(self._in_model_order(vector), vector.window_end)

    def score_row(self, row: FloatArray, t: float) -> Verdict:
        """Score one window given as the model's features in its order (`feature_names`)."""
        errors, per_feature = self.model.errors(row[None, :])
        error = float(errors[0])
        decision = decide(self.threshold, self.alarm, t, error)
        top: tuple[Contributor, ...] = ()
        if decision.anomalous and math.isfinite(error):
            top = top_contributors(
                per_feature[0], self.model.feature_names, self._settings.contributors
            )
        threshold = decision.threshold if decision.threshold is not None else math.nan
        score = Score(
            asset=self.asset,
            t=t,
            model_id=self.model.model_id,
            error=error,
            threshold=threshold,
            anomalous=decision.anomalous,
            contributors=tuple(c.name for c in top),
        )
        return Verdict(score, decision, top)

    def _in_model_order(self, vector: FeatureVector) -> FloatArray:
        if self._order is None or self._order[0] != vector.names:
            self._order = (vector.names, model_column_order(self.model, vector.names))
        picked: FloatArray = np.asarray(vector.values, dtype=np.float64)[self._order[1]]
        return picked


def model_column_order(model: ErrorModel, names: Sequence[str]) -> np.ndarray:
    """Indices into `names` giving the model's features in its order; BundleError naming the
    features the model needs and the vector lacks."""
    position = {name: i for i, name in enumerate(names)}
    missing = [n for n in model.feature_names if n not in position]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise BundleError(
            f"model {model.model_id} needs {len(missing)} feature(s) this asset does not "
            f"produce: {shown}"
        )
    return np.array([position[n] for n in model.feature_names], dtype=np.intp)
