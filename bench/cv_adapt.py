"""What-if for bench/cv_skab.py: drift adaptation at the model's input (issue 13, fourth pass).

The model's inputs are standardised against a slowly updated estimate of each adapted feature's
normal level instead of the training mean: the mean (or median) of the last `rows` windows the
threshold admitted. The estimate starts as a prior of `rows` rows with the training mean and
spread (half at mean + scale, half at mean - scale), so the cached int8 models need no
retraining; an alarmed or refused window never updates it (frozen while alarmed). Options:

- which features adapt: `all`, `slow` (lag-1 autocorrelation over the training rows at least
  `slow`; learnable on the gateway from the training rows), or named ones (a reference only);
- `scale`: also divide by the standard deviation of those rows instead of the training spread;
- `recentre`: when the threshold re-baselines after a lasting change, the estimate becomes the
  rows offered since the refused run began, and the run's errors are recomputed against it to be
  the threshold's new baseline (otherwise the estimate stays where the change left it).

Grid axes (read from the setting's name): adapt=all|slow|off|Name+Name, n=ROWS,
centre=mean|median, scale=0|1, recentre=0|1, slow=0.7, gate=1 (a row updates the estimate only
if it is admitted and its error is at most gate x the threshold). `adapt=off` runs this
row-by-row path with nothing adapted (it gives the cached replay's figures exactly).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sweep_skab import Commissioned, Result, Setting, cached_models

from appliance.detect.alarms import AlarmState
from appliance.detect.bundle import ModelBundle
from appliance.detect.runtime import Reconstructor, open_runtime
from appliance.detect.scorer import CommissionedDuringWarmup, build_threshold
from appliance.detect.thresholds import calibrate_fixed
from appliance.evaluation.evaluate import SKAB_TRAIN_ROWS
from appliance.evaluation.metrics import (
    NAB_PROFILES,
    NAB_WINDOW_S,
    nab_tally,
    outlier_counts,
)
from appliance.evaluation.skab import SkabRecording, load_skab_csv
from appliance.training.autoencoder import TrainSettings


@dataclass(frozen=True)
class Adapt:
    features: str
    rows: int
    statistic: str
    scale: bool
    recentre: bool
    slow: float
    gate: float

    @classmethod
    def of(cls, setting: Setting) -> Adapt | None:
        v = dict(item.split("=", 1) for item in setting.name.split())
        if "adapt" not in v:
            return None
        return cls(
            features=v["adapt"],
            rows=int(v.get("n", 200)),
            statistic=v.get("centre", "mean"),
            scale=v.get("scale", "0") == "1",
            recentre=v.get("recentre", "0") == "1",
            slow=float(v.get("slow", 0.7)),
            gate=float(v.get("gate", 1.0)),
        )

    def mask(self, names: Sequence[str], training: np.ndarray) -> np.ndarray:
        if self.features == "off":
            return np.zeros(len(names), dtype=bool)
        if self.features == "all":
            return np.ones(len(names), dtype=bool)
        if self.features == "slow":
            x = training - training.mean(axis=0)
            lag1 = (x[:-1] * x[1:]).sum(axis=0) / np.maximum((x * x).sum(axis=0), 1e-300)
            return np.asarray(lag1 >= self.slow)
        named = self.features.split("+")
        return np.array([name in named for name in names])


class InputCentre:
    """The adapted centre and scale of each feature: a ring of the last `rows` admitted rows,
    seeded with a prior of the training mean and spread; the rows offered lately are kept for a
    re-centring."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, mask: np.ndarray, adapt: Adapt,
                 keep: int) -> None:  # fmt: skip
        self.mask, self.adapt = mask, adapt
        self.base_mean, self.base_scale = mean, scale
        signs = np.where(np.arange(adapt.rows) % 2 == 0, 1.0, -1.0)[:, None]
        self.ring = mean + signs * scale
        self.slot = 0
        self.recent: deque[np.ndarray] = deque(maxlen=max(keep, 1))
        self.mean, self.scale = mean.copy(), scale.copy()
        self._update()

    def offer(self, row: np.ndarray, admitted: bool) -> None:
        self.recent.append(row)
        if admitted and self.mask.any():
            self.ring[self.slot] = row
            self.slot = (self.slot + 1) % len(self.ring)
            self._update()

    def recentre(self, length: int) -> np.ndarray:
        """The estimate becomes the last `length` rows offered (all, if fewer than `rows`)."""
        rows = np.array(list(self.recent)[-length:])
        self.ring = rows[-self.adapt.rows :].copy()
        self.slot = 0
        self._update()
        return rows

    def _update(self) -> None:
        if self.adapt.statistic == "median":
            centre = np.median(self.ring, axis=0)
        else:
            centre = self.ring.mean(axis=0)
        self.mean = np.where(self.mask, centre, self.base_mean)
        if self.adapt.scale:
            spread = self.ring.std(axis=0)
            spread = np.where(spread > 0, spread, self.base_scale)
            self.scale = np.where(self.mask, spread, self.base_scale)


def errors_against(
    runtime: Reconstructor, rows: np.ndarray, mean: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """As appliance.detect.runtime.reconstruction_error, with this centre and scale."""
    scaled = (rows - mean) / scale
    residual = scaled - runtime.reconstruct(scaled.astype(np.float32))
    squared = residual * residual
    errors: np.ndarray = squared.sum(axis=1) / squared.shape[1]
    return errors


@dataclass
class Model:
    bundle: ModelBundle
    runtime: Reconstructor
    recording: SkabRecording


def open_model(path: Path, directory: Path, train: TrainSettings, cache: Path) -> Model:
    bundle, _ = cached_models(path, directory, train, cache)
    return Model(bundle, open_runtime(bundle), load_skab_csv(path))


def replay_adapted(model: Model, setting: Setting, adapt: Adapt) -> np.ndarray:
    """The test rows' anomaly flags, scored row by row with the adapted input centre and the
    scorer's own threshold, alarm and gating (as AutoencoderDetector.learn seeds them)."""
    bundle, runtime, recording = model.bundle, model.runtime, model.recording
    features, rows = recording.features, SKAB_TRAIN_ROWS
    mean, scale = bundle.scaler_mean, bundle.scaler_scale
    seed = errors_against(runtime, features[:rows], mean, scale)
    defaults = TrainSettings()
    fixed = calibrate_fixed(seed, defaults.threshold_quantile, defaults.threshold_margin).value
    threshold = build_threshold(Commissioned(fixed), setting.detector, seed_errors=seed)  # type: ignore[arg-type]
    assert isinstance(threshold, CommissionedDuringWarmup)
    adaptive = threshold.adaptive
    keep = setting.detector.adaptive.rebaseline_after
    centre = InputCentre(mean, scale, adapt.mask(recording.feature_names, features[:rows]),
                         adapt, keep)  # fmt: skip
    alarm = AlarmState(setting.detector.alarm)
    flags = np.zeros(len(features) - rows, dtype=np.bool_)
    for i, (t, row) in enumerate(zip(recording.times[rows:], features[rows:], strict=True)):
        error = float(errors_against(runtime, row[None, :], centre.mean, centre.scale)[0])
        decision = alarm.update(float(t), error, threshold.current())
        flags[i] = decision.anomalous
        run = adaptive.run
        admitted = threshold.observe(error, alarmed=decision.anomalous)
        limit = decision.threshold
        centre.offer(row, admitted and (limit is None or error <= adapt.gate * limit))
        if adapt.recentre and adaptive.run is not run:  # the threshold re-baselined
            length = min(run.length, keep)
            recent = centre.recentre(length)
            rebased = errors_against(runtime, recent, centre.mean, centre.scale)
            # The threshold's baseline replaced by those errors (a what-if, by hand).
            adaptive._count = adaptive._next_slot = 0
            for value in rebased[-adaptive.settings.window :]:
                adaptive._admit(float(value))
    return flags


def evaluate_adapted(models: Sequence[Model], setting: Setting, adapt: Adapt) -> Result:
    """As sweep_skab.evaluate, over `models` scored with the adapted centre."""
    results = []
    for model in models:
        flags = replay_adapted(model, setting, adapt)
        recording = model.recording
        test = slice(SKAB_TRAIN_ROWS, None)
        tallies = {
            profile.name: nab_tally(
                recording.times[test], recording.changepoint[test], flags, profile, NAB_WINDOW_S
            )
            for profile in NAB_PROFILES
        }
        results.append(Result(outlier_counts(recording.anomaly[test], flags), tallies))
    return sum(results[1:], results[0])
