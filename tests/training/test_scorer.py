"""The streaming scorer (the gateway's) on a real int8 bundle, and the evaluation adapter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.detect.runtime import open_runtime, reconstruction_error
from appliance.detect.scorer import (
    AssetDetector,
    BundleModel,
    CommissionedDuringWarmup,
    DetectorSettings,
    build_threshold,
)
from appliance.detect.thresholds import AdaptiveSettings
from appliance.errors import BundleError
from appliance.evaluation.autoencoder_detector import AutoencoderDetector
from appliance.records import FeatureVector, FloatArray
from appliance.training.autoencoder import TrainedAutoencoder, TrainSettings
from appliance.training.synthetic import LatentFactorSource

SETTINGS = DetectorSettings(rule="fixed")


def detector_for(
    trained: TrainedAutoencoder, settings: DetectorSettings = SETTINGS
) -> AssetDetector:
    bundle = trained.bundle
    return AssetDetector("pump-1", BundleModel(bundle, open_runtime(bundle)), settings)


def as_vector(row: FloatArray, names: tuple[str, ...], t: float) -> FeatureVector:
    """The row as the feature stage would give it: other order, an extra feature the model
    does not use."""
    order = np.arange(len(names))[::-1]
    return FeatureVector(
        "pump-1",
        t,
        (*(names[i] for i in order), "accel_x.extra"),
        np.append(row[order], 123.0),
    )


def test_vector_features_are_put_in_manifest_order(
    trained: TrainedAutoencoder, source: LatentFactorSource
) -> None:
    rows = source.normal_rows(np.random.default_rng(5), 20)
    detector = detector_for(trained)
    expected, _ = reconstruction_error(trained.bundle, open_runtime(trained.bundle), rows)

    scores = [
        detector.score_vector(as_vector(row, source.feature_names, float(t))).score
        for t, row in enumerate(rows)
    ]

    np.testing.assert_allclose([s.error for s in scores], expected, rtol=1e-6)
    assert {s.model_id for s in scores} == {trained.bundle.bundle_id}


def test_broken_correlation_raises_one_alarm_naming_the_broken_features(
    trained: TrainedAutoencoder, source: LatentFactorSource
) -> None:
    rng = np.random.default_rng(9)
    normal = source.normal_rows(rng, 50)
    broken = normal[-1].copy()
    spread = source.unit * np.sqrt((source.mixing**2).sum(axis=0) + source.noise**2)
    broken[[2, 7]] += 8.0 * spread[[2, 7]]
    detector = detector_for(trained)

    quiet = [detector.score_row(row, float(t)) for t, row in enumerate(normal)]
    anomalous = [detector.score_row(broken, 100.0 + t) for t in range(3)]

    assert sum(v.score.anomalous for v in quiet) <= 1
    assert all(v.score.anomalous for v in anomalous)
    events = [v.decision.event for v in anomalous if v.decision.event is not None]
    assert [e.kind for e in events] == ["raised"]
    assert {"feature_02", "feature_07"} <= set(anomalous[0].score.contributors)


def test_a_feature_the_asset_does_not_produce_is_named(trained: TrainedAutoencoder) -> None:
    names = trained.bundle.manifest.feature_names[1:]
    vector = FeatureVector("pump-1", 0.0, names, np.zeros(len(names)))
    with pytest.raises(BundleError, match="feature_00"):
        detector_for(trained).score_vector(vector)


def test_commissioning_errors_replace_the_warm_up(trained: TrainedAutoencoder) -> None:
    settings = DetectorSettings(rule="adaptive", adaptive=AdaptiveSettings(warmup=100))
    model = BundleModel(trained.bundle, open_runtime(trained.bundle))
    unseeded = build_threshold(model, settings)
    seeded = build_threshold(model, settings, seed_errors=[0.1] * 30)
    assert isinstance(unseeded, CommissionedDuringWarmup)
    assert isinstance(seeded, CommissionedDuringWarmup)
    assert unseeded.adaptive.warming_up and not seeded.adaptive.warming_up
    assert unseeded.current() == trained.bundle.manifest.threshold.fixed_threshold


def test_evaluation_adapter_learns_then_scores_causally(
    source: LatentFactorSource, tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    detector = AutoencoderDetector(
        source.feature_names,
        DetectorSettings(adaptive=AdaptiveSettings(k=6.0)),
        TrainSettings(epochs=20, seed=1),
        tmp_path,
    )
    detector.learn(source.normal_rows(rng, 400))
    normal = [detector.step(row, float(t)) for t, row in enumerate(source.normal_rows(rng, 100))]
    extreme = [detector.step(row, 1000.0 + t) for t, row in enumerate(source.extreme_rows(rng, 5))]

    # Windows above the learned threshold, not alarmed ones: how long a false alarm is held is
    # the alarm rule's business (AlarmSettings.off_count), tested in tests/detect.
    assert sum(error > threshold for error, threshold, _ in normal) <= 10
    assert all(anomaly for _, _, anomaly in extreme)
    assert all(error > threshold for error, threshold, _ in extreme)


class LevelModel:
    """An ErrorModel whose error is the row's single value (so a test sets the error directly)."""

    model_id = "level"
    feature_names = ("level",)
    commissioned_threshold = 1.5

    def errors(self, rows: FloatArray) -> tuple[FloatArray, FloatArray]:
        return rows[:, 0].copy(), rows**2


def test_the_default_detector_lets_go_of_a_level_held_for_550_windows() -> None:
    rng = np.random.default_rng(5)
    model = LevelModel()
    settings = DetectorSettings()
    seed = np.abs(rng.normal(1.0, 0.1, 400))
    detector = AssetDetector("pump-1", model, settings, build_threshold(model, settings, seed))
    new_level = np.abs(rng.normal(3.0, 0.3, 700))

    alarmed = [
        detector.score_row(np.array([e]), float(t)).score.anomalous for t, e in enumerate(new_level)
    ]

    # Raised at once and held through 550 refused windows; those then are the baseline and
    # the alarm clears after 10 windows below 0.9 x the new threshold (3 + 6.5 x 0.3). An error
    # far quieter than its level (sd < 1.7 % of the mean) would not get below 0.9 x mean + 6.5 sd.
    assert settings.adaptive.rebaseline_after == 550
    assert all(alarmed[:550])
    assert not any(alarmed[560:])
