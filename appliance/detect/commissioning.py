"""Commissioning on the gateway: an asset with no bundle learns normal by itself.

The gateway has no TensorFlow, so the model learnt here is linear (`LinearModel`): a per-feature
scaler and a PCA of the scaled features that keeps the components explaining `variance` of it.
The error is the mean squared residual of the reconstruction from that subspace, in scaled units,
so it plugs into the same scorer, thresholds and alarms as a bundle's autoencoder (`ErrorModel`).
Like the int8 autoencoder's calibrated range, the coordinates along each kept component are
clipped to `CLIP_SIGMAS` of their learnt spread before reconstructing: without that, a change
that keeps the learnt correlations (everything louder in proportion, e.g. imbalance) would stay
inside the subspace and leave no residual.

Timeline, in window end times (`Commissioner`):

    [started_at, fit_at)   learning normal: running mean and covariance (Welford, float64)
    [fit_at, ends_at]      calibrating threshold: the fitted model scores each window and only
                           the error is kept; the model never saw these windows (held out), so
                           the threshold is not optimistic
    ends_at                CommissionedModel: the model with its fixed threshold (quantile of the
                           held-out errors x margin) and those errors as the adaptive seed

with fit_at = started_at + fit_fraction * period_s and ends_at = started_at + period_s. A phase
does not end before it has its share of `min_windows` (round(fit_fraction * min_windows) to fit,
the rest to calibrate): an asset that was mostly off keeps commissioning past the period, and
`progress()` says so.

Memory: the learning phase holds O(features^2) floats however long it lasts; the calibration phase
adds one float per window (8 bytes: 138 kB for the last 20 % of a day at a 1 s stride).

Restart: the state is a deterministic function of the vectors offered, in order (no wall clock;
the model id's time is the fit window's end). Replaying an asset's stored vectors since
`started_at` through a new Commissioner rebuilds exactly the state an uninterrupted run has.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import structlog

from appliance.detect.thresholds import STATE_VERSION, check_state_header, is_number
from appliance.records import FeatureVector, FloatArray

log = structlog.get_logger(__name__)

MODEL_KIND = "linear_model"
CONSTANT_STD = 1e-12
"""As appliance.training.autoencoder.fit_scaler: a feature whose std is below this (relative to
max(1, |mean|)) is constant and gets scale 1.0, so a later change of it shows as a residual
instead of dividing by ~0."""
CLIP_SIGMAS = 4.0
"""Coordinates along a kept component beyond this many of its learnt std are clipped."""
MAX_VALUE = 1e100
"""A window with a larger value counts as bad, like a non-finite one: its square would overflow
the covariance (no real feature comes near)."""
MIN_THRESHOLD = 1e-9
"""Floor of the fixed threshold (scaled units squared): perfectly quiet held-out windows (error 0)
must not give a threshold of 0."""

Phase = Literal["learning normal", "calibrating threshold", "commissioned"]


@dataclass(frozen=True, eq=False)
class LinearModel:
    """Scaler + PCA subspace; an ErrorModel (appliance.detect.scorer)."""

    model_id: str
    feature_names: tuple[str, ...]
    mean: FloatArray
    scale: FloatArray
    components: FloatArray
    """(d, k), orthonormal columns in scaled space, k < d."""
    component_std: FloatArray
    """(k,), the spread of normal windows along each component (sqrt of its eigenvalue)."""
    commissioned_threshold: float
    """math.inf while the model is being calibrated."""

    def __post_init__(self) -> None:
        d = len(self.feature_names)
        for name in ("mean", "scale", "components", "component_std"):
            values = np.array(getattr(self, name), dtype=np.float64)
            values.setflags(write=False)
            object.__setattr__(self, name, values)
        if self.mean.shape != (d,) or self.scale.shape != (d,):
            raise ValueError(f"mean, scale: expected {d} values each (one per feature)")
        if self.components.ndim != 2 or self.components.shape[0] != d:
            raise ValueError(f"components: expected {d} rows (one per feature)")
        if self.components.shape[1] >= d:
            raise ValueError(f"components: need fewer than {d} columns (else nothing is left)")
        if self.component_std.shape != (self.components.shape[1],):
            raise ValueError("component_std: expected one value per component")
        if not self.commissioned_threshold > 0:
            raise ValueError(
                f"commissioned_threshold: must be positive, got {self.commissioned_threshold}"
            )

    def errors(self, rows: FloatArray) -> tuple[FloatArray, FloatArray]:
        data = np.asarray(rows, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != len(self.feature_names):
            raise ValueError(
                f"rows: expected shape (n, {len(self.feature_names)}) for model "
                f"{self.model_id}, got {data.shape}"
            )
        scaled = (data - self.mean) / self.scale
        limit = CLIP_SIGMAS * self.component_std
        coordinates = np.clip(scaled @ self.components, -limit, limit)
        residual = scaled - coordinates @ self.components.T
        per_feature: FloatArray = residual * residual
        errors: FloatArray = per_feature.sum(axis=1) / per_feature.shape[1]
        return errors, per_feature

    def to_state(self) -> dict[str, object]:
        """JSON-able; `from_state` gives a model with bit-identical errors."""
        if not math.isfinite(self.commissioned_threshold):
            raise ValueError("commissioned_threshold: the model is not calibrated yet")
        return {
            "version": STATE_VERSION,
            "kind": MODEL_KIND,
            "model_id": self.model_id,
            "feature_names": list(self.feature_names),
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "components": [[float(v) for v in row] for row in self.components],
            "component_std": [float(v) for v in self.component_std],
            "commissioned_threshold": self.commissioned_threshold,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> LinearModel:
        """Rebuild from `to_state()`; ValueError naming the field if anything is off."""
        check_state_header(state, MODEL_KIND)
        model_id = state.get("model_id")
        if not isinstance(model_id, str) or not model_id:
            raise ValueError("model_id: must be a non-empty string")
        names = state.get("feature_names")
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ValueError("feature_names: must be a list of non-empty strings")
        if not names or len(set(names)) != len(names):
            raise ValueError("feature_names: must name at least one feature, each once")
        d = len(names)
        scale = _numbers(state, "scale", d)
        if not all(v > 0 for v in scale):
            raise ValueError("scale: values must be positive")
        components = state.get("components")
        if not isinstance(components, list) or len(components) != d:
            raise ValueError(f"components: must be a list of {d} rows")
        rows = [_numbers({"row": row}, "row", None) for row in components]
        if len({len(row) for row in rows}) != 1:
            raise ValueError("components: rows must have the same length")
        matrix = np.array(rows, dtype=np.float64).reshape(d, len(rows[0]))
        if not np.allclose(matrix.T @ matrix, np.eye(matrix.shape[1]), atol=1e-9):
            raise ValueError("components: columns must be orthonormal")
        component_std = _numbers(state, "component_std", matrix.shape[1])
        if not all(v >= 0 for v in component_std):
            raise ValueError("component_std: values must be >= 0")
        threshold = state.get("commissioned_threshold")
        if not (is_number(threshold) and math.isfinite(threshold) and threshold > 0):
            raise ValueError("commissioned_threshold: must be a finite positive number")
        return cls(
            model_id=model_id,
            feature_names=tuple(names),
            mean=np.array(_numbers(state, "mean", d)),
            scale=np.array(scale),
            components=matrix,
            component_std=np.array(component_std),
            commissioned_threshold=float(threshold),
        )


def _numbers(state: Mapping[str, object], name: str, length: int | None) -> list[float]:
    values = state.get(name)
    if not isinstance(values, list) or not all(is_number(v) for v in values):
        raise ValueError(f"{name}: must be a list of numbers")
    if length is not None and len(values) != length:
        raise ValueError(f"{name}: expected {length} values (one per feature), got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name}: values must be finite")
    return [float(v) for v in values]


def fit_linear_model(
    model_id: str,
    names: tuple[str, ...],
    mean: FloatArray,
    covariance: FloatArray,
    variance: float,
) -> LinearModel:
    """Scaler from the covariance's diagonal, then the fewest principal components of the scaled
    features that explain `variance` of it (at most d - 1); not calibrated yet (threshold inf)."""
    std = np.sqrt(np.maximum(np.diag(covariance), 0.0))
    constant = std <= CONSTANT_STD * np.maximum(1.0, np.abs(mean))
    scale = np.where(constant, 1.0, std)
    correlation = covariance / np.outer(scale, scale)
    eigenvalues, eigenvectors = np.linalg.eigh(correlation)
    order = np.argsort(eigenvalues)[::-1]
    explained = np.maximum(eigenvalues[order], 0.0)
    total = float(explained.sum())
    kept = 0 if total <= 0.0 else int(np.searchsorted(np.cumsum(explained) / total, variance)) + 1
    kept = min(kept, len(names) - 1)
    return LinearModel(
        model_id=model_id,
        feature_names=names,
        mean=mean,
        scale=scale,
        components=eigenvectors[:, order[:kept]],
        component_std=np.sqrt(explained[:kept]),
        commissioned_threshold=math.inf,
    )


@dataclass(frozen=True, slots=True)
class CommissioningSettings:
    period_s: float
    """How long the asset learns normal (learning plus calibration), in window time."""
    min_windows: int
    """Fewest usable windows; commissioning runs past the period until it has them."""
    fit_fraction: float = 0.8
    """Share of the period (and of min_windows) the model is fitted on; the rest calibrates."""
    variance: float = 0.99
    """Share of the scaled features' variance the kept principal components explain."""
    quantile: float = 0.995
    margin: float = 1.5
    """Fixed threshold = quantile of the held-out errors x margin. Above 1 because one period
    under-represents later normal variation (the demo bundles needed 2x); not yet measured."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.period_s) and self.period_s > 0):
            raise ValueError(f"period_s: must be finite and positive, got {self.period_s}")
        if not 0.0 < self.fit_fraction < 1.0:
            raise ValueError(f"fit_fraction: must be in (0, 1), got {self.fit_fraction}")
        if not 0.0 < self.variance <= 1.0:
            raise ValueError(f"variance: must be in (0, 1], got {self.variance}")
        if not 0.0 < self.quantile <= 1.0:
            raise ValueError(f"quantile: must be in (0, 1], got {self.quantile}")
        if not (math.isfinite(self.margin) and self.margin > 0):
            raise ValueError(f"margin: must be finite and positive, got {self.margin}")
        if self.fit_windows < 2 or self.calibration_windows < 1:
            raise ValueError(
                f"min_windows: {self.min_windows} leaves {self.fit_windows} window(s) to fit and "
                f"{self.calibration_windows} to calibrate; need at least 2 and 1"
            )

    @property
    def fit_windows(self) -> int:
        """Fewest windows the model is fitted on."""
        return round(self.fit_fraction * self.min_windows)

    @property
    def calibration_windows(self) -> int:
        """Fewest held-out windows the threshold is calibrated on."""
        return self.min_windows - self.fit_windows


@dataclass(frozen=True, eq=False)
class CommissionedModel:
    model: LinearModel
    seed_errors: FloatArray
    """Held-out errors, oldest first: the adaptive threshold's baseline (no second warm-up)."""
    fit_windows: int
    calibration_windows: int

    @property
    def fixed_threshold(self) -> float:
        return self.model.commissioned_threshold


@dataclass(frozen=True, slots=True)
class CommissioningProgress:
    asset: str
    phase: Phase
    windows: int
    """Usable windows offered since started_at."""
    bad_windows: int
    """Skipped: a non-finite (or absurdly large) value, or not one value per feature name."""
    started_at: float
    ends_at: float
    waiting_for: int
    """Windows still needed after the period is over (min_windows); 0 otherwise."""
    restarts: int
    restart_reason: str | None

    def describe(self) -> str:
        """One line for the status page."""
        text = (
            f"commissioning ({self.phase}): {self.windows} windows since {_utc(self.started_at)}"
            f", until {_utc(self.ends_at)}"
        )
        if self.phase == "commissioned":
            text = f"commissioned from {self.windows} windows since {_utc(self.started_at)}"
        if self.waiting_for:
            text += f"; the period is over, {self.waiting_for} more windows needed (min_windows)"
        if self.bad_windows:
            text += f"; {self.bad_windows} bad windows skipped"
        if self.restart_reason:
            text += f"; restarted {self.restarts}x, last: {self.restart_reason}"
        return text


class Moments:
    """Running mean and covariance (Welford), float64, O(d^2) memory."""

    def __init__(self, n_features: int) -> None:
        self.count = 0
        self.mean = np.zeros(n_features)
        self._m2 = np.zeros((n_features, n_features))

    def add(self, row: FloatArray) -> None:
        self.count += 1
        delta = row - self.mean
        self.mean += delta / self.count
        self._m2 += np.outer(delta, row - self.mean)

    def covariance(self) -> FloatArray:
        """Population covariance (as the training scaler's std), symmetrised."""
        m2 = self._m2 / self.count
        covariance: FloatArray = (m2 + m2.T) / 2.0
        return covariance


class Commissioner:
    """Learns one asset's normal from its feature vectors; see the module docstring."""

    def __init__(self, asset: str, settings: CommissioningSettings, started_at: float) -> None:
        self.asset = asset
        self.settings = settings
        self.restarts = 0
        self.restart_reason: str | None = None
        self._begin(started_at)

    def _begin(self, started_at: float) -> None:
        self.started_at = started_at
        self.names: tuple[str, ...] | None = None
        self.windows = 0
        self.bad_windows = 0
        self.result: CommissionedModel | None = None
        self._moments: Moments | None = None
        self._model: LinearModel | None = None
        self._held_out = array("d")
        self._last_t = started_at

    @property
    def fit_at(self) -> float:
        return self.started_at + self.settings.fit_fraction * self.settings.period_s

    @property
    def ends_at(self) -> float:
        return self.started_at + self.settings.period_s

    def offer(self, vector: FeatureVector) -> CommissionedModel | None:
        """Take one window; the CommissionedModel once commissioning is complete (and again for
        any later offer), else None. Windows ending before started_at are ignored (a replay
        starts there too)."""
        if self.result is not None or vector.window_end < self.started_at:
            return self.result
        if self.names is not None and vector.names != self.names:
            self._restart(vector)
        if self.names is None:
            self.names = vector.names
            self._moments = Moments(len(vector.names))
        assert self._moments is not None
        t = self._last_t = vector.window_end
        values = np.asarray(vector.values, dtype=np.float64)
        if values.shape != (len(self.names),) or not _usable(values):
            self.bad_windows += 1
            return None
        self.windows += 1
        if self._model is None:
            if t < self.fit_at or self._moments.count < self.settings.fit_windows:
                self._moments.add(values)
                return None
            self._model = self._fit(t)
        self._held_out.append(float(self._model.errors(values[None, :])[0][0]))
        if t >= self.ends_at and len(self._held_out) >= self.settings.calibration_windows:
            self.result = self._finish()
        return self.result

    def progress(self) -> CommissioningProgress:
        """Where commissioning stands; "waiting_for" counts from the last window offered."""
        if self.result is not None:
            phase: Phase = "commissioned"
            waiting = 0
        elif self._model is None:
            phase = "learning normal"
            fitted_on = self._moments.count if self._moments is not None else 0
            past_plan = self._last_t >= self.fit_at
            waiting = self.settings.fit_windows - fitted_on if past_plan else 0
            waiting += self.settings.calibration_windows if self._last_t >= self.ends_at else 0
        else:
            phase = "calibrating threshold"
            needed = self.settings.calibration_windows - len(self._held_out)
            waiting = needed if self._last_t >= self.ends_at else 0
        return CommissioningProgress(
            asset=self.asset,
            phase=phase,
            windows=self.windows,
            bad_windows=self.bad_windows,
            started_at=self.started_at,
            ends_at=self.ends_at,
            waiting_for=max(0, waiting),
            restarts=self.restarts,
            restart_reason=self.restart_reason,
        )

    def _restart(self, vector: FeatureVector) -> None:
        assert self.names is not None
        added = [n for n in vector.names if n not in self.names]
        removed = [n for n in self.names if n not in vector.names]
        reason = (
            f"feature names changed at {_utc(vector.window_end)} "
            f"({len(added)} added, {len(removed)} removed"
            f"{', order changed' if not added and not removed else ''})"
        )
        log.warning("commissioning_restarted", asset=self.asset, reason=reason)
        self.restarts += 1
        self.restart_reason = reason
        self._begin(vector.window_end)

    def _fit(self, t: float) -> LinearModel:
        assert self._moments is not None and self.names is not None
        model_id = f"commissioned-{self.asset}-{_utc(t, compact=True)}"
        model = fit_linear_model(
            model_id,
            self.names,
            self._moments.mean.copy(),
            self._moments.covariance(),
            self.settings.variance,
        )
        log.info(
            "commissioning_fitted",
            asset=self.asset,
            model=model_id,
            windows=self._moments.count,
            components=model.components.shape[1],
            features=len(self.names),
        )
        return model

    def _finish(self) -> CommissionedModel:
        assert self._model is not None and self._moments is not None
        errors = np.frombuffer(self._held_out, dtype=np.float64).copy()
        quantile = float(np.quantile(errors, self.settings.quantile))
        threshold = max(quantile * self.settings.margin, MIN_THRESHOLD)
        model = replace(self._model, commissioned_threshold=threshold)
        log.info(
            "commissioned",
            asset=self.asset,
            model=model.model_id,
            threshold=threshold,
            fit_windows=self._moments.count,
            calibration_windows=len(errors),
        )
        errors.setflags(write=False)
        return CommissionedModel(model, errors, self._moments.count, len(errors))


def _usable(values: FloatArray) -> bool:
    """Finite, and small enough that squares and sums of them stay finite."""
    return bool(np.isfinite(values).all()) and float(np.abs(values).max(initial=0.0)) < MAX_VALUE


def _utc(t: float, compact: bool = False) -> str:
    moment = datetime.fromtimestamp(t, UTC)
    return moment.strftime("%Y%m%dT%H%M%SZ" if compact else "%Y-%m-%dT%H:%M:%SZ")
