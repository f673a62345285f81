"""Training: the bundle it writes, the threshold it calibrates, and what the int8 model detects."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from appliance.detect.bundle import ModelBundle, load_bundle
from appliance.detect.runtime import dequantize, open_runtime, quantize, reconstruction_error
from appliance.errors import BundleError
from appliance.records import FloatArray
from appliance.training.autoencoder import (
    TrainedAutoencoder,
    TrainSettings,
    encoder_widths,
    fit_scaler,
    train_bundle,
)
from appliance.training.dense import FloatReconstructor
from appliance.training.synthetic import LatentFactorSource

from .conftest import TRAINING_ROWS

BUNDLE_SIZE_LIMIT = 64 * 1024


def int8_errors(bundle: ModelBundle, rows: FloatArray) -> FloatArray:
    errors, _ = reconstruction_error(bundle, open_runtime(bundle), rows)
    return errors


def fraction_alarmed(bundle: ModelBundle, rows: FloatArray) -> float:
    threshold = bundle.manifest.threshold.fixed_threshold
    return float((int8_errors(bundle, rows) > threshold).mean())


# --- the bundle -------------------------------------------------------------------------------


def test_bundle_describes_its_model_and_data(
    trained: TrainedAutoencoder,
    source: LatentFactorSource,
    training_rows: FloatArray,
    bundle_dir: Path,
) -> None:
    bundle = trained.bundle
    manifest = bundle.manifest
    assert load_bundle(bundle_dir) == bundle
    assert manifest.feature_names == source.feature_names
    assert manifest.asset == "synthetic-pump"
    assert bundle.bundle_id.startswith("test-1-")
    np.testing.assert_allclose(bundle.scaler_mean, training_rows.mean(axis=0))
    np.testing.assert_allclose(bundle.scaler_scale, training_rows.std(axis=0))
    assert manifest.data_span.start_utc == "2026-01-01T00:00:00.000Z"
    assert manifest.data_span.end_utc == "2026-01-01T00:33:19.000Z"
    assert manifest.data_span.rows == TRAINING_ROWS
    assert manifest.training["layers"] == [12, 16, 8, 4, 8, 16, 12]
    assert manifest.training["epochs"] == 40
    assert manifest.training["constant_features"] == []
    assert manifest.threshold.rule == "fixed"
    assert len(bundle.model_bytes) < BUNDLE_SIZE_LIMIT


def test_quantisation_in_the_manifest_is_the_models(trained: TrainedAutoencoder) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=trained.bundle.model_bytes)
    (input_detail,) = interpreter.get_input_details()
    (output_detail,) = interpreter.get_output_details()
    assert input_detail["dtype"] == np.int8 and output_detail["dtype"] == np.int8
    manifest = trained.bundle.manifest
    assert (manifest.input_quant.scale, manifest.input_quant.zero_point) == input_detail[
        "quantization"
    ]
    assert (manifest.output_quant.scale, manifest.output_quant.zero_point) == output_detail[
        "quantization"
    ]


def test_fixed_threshold_is_a_high_quantile_of_the_int8_training_errors(
    trained: TrainedAutoencoder, training_rows: FloatArray
) -> None:
    errors = int8_errors(trained.bundle, training_rows)
    assert trained.bundle.manifest.threshold.fixed_threshold == np.quantile(errors, 0.995)


# --- detection --------------------------------------------------------------------------------


def test_held_out_normal_rows_stay_below_the_threshold(
    trained: TrainedAutoencoder, source: LatentFactorSource
) -> None:
    held_out = source.normal_rows(np.random.default_rng(20), 2000)
    assert fraction_alarmed(trained.bundle, held_out) <= 0.02


def test_rows_that_break_the_correlations_are_flagged(
    trained: TrainedAutoencoder, source: LatentFactorSource
) -> None:
    broken = source.broken_rows(np.random.default_rng(21), 500)
    assert fraction_alarmed(trained.bundle, broken) >= 0.95


def test_rows_beyond_the_trained_range_are_flagged_thanks_to_the_unclipped_residual(
    trained: TrainedAutoencoder, source: LatentFactorSource
) -> None:
    bundle = trained.bundle
    # Correlations intact, but every row lies partly outside the int8 input range.
    extreme = source.extreme_rows(np.random.default_rng(22), 1000, factor_norm=6.0)
    unclipped = fraction_alarmed(bundle, extreme)
    assert unclipped >= 0.95

    scaled = ((extreme - bundle.scaler_mean) / bundle.scaler_scale).astype(np.float32)
    quant = bundle.manifest.input_quant
    clipped_input = dequantize(quantize(scaled, quant), quant)
    assert (np.abs(scaled - clipped_input) > quant.scale).any(axis=1).all()
    reconstruction = open_runtime(bundle).reconstruct(scaled)
    clipped_errors = ((clipped_input - reconstruction) ** 2).mean(axis=1)
    clipped = float((clipped_errors > bundle.manifest.threshold.fixed_threshold).mean())
    assert clipped < unclipped - 0.05  # what measuring against the clipped input would miss


def test_int8_model_follows_its_float_original(
    trained: TrainedAutoencoder, source: LatentFactorSource
) -> None:
    bundle = trained.bundle
    rows = source.normal_rows(np.random.default_rng(23), 1000)
    scaled = ((rows - bundle.scaler_mean) / bundle.scaler_scale).astype(np.float32)
    int8 = open_runtime(bundle).reconstruct(scaled)
    floating = FloatReconstructor(trained.float_network).reconstruct(scaled)
    output_step = bundle.manifest.output_quant.scale
    assert np.abs(int8 - floating).mean() < 2 * output_step
    float_errors, _ = reconstruction_error(bundle, FloatReconstructor(trained.float_network), rows)
    ratio = np.median(int8_errors(bundle, rows)) / np.median(float_errors)
    assert 0.8 < ratio < 1.5


# --- training behaviour -----------------------------------------------------------------------


def small_training(
    source: LatentFactorSource, out_dir: Path, seed: int, rows: FloatArray | None = None
) -> ModelBundle:
    features = source.normal_rows(np.random.default_rng(30), 300) if rows is None else rows
    return train_bundle(
        features,
        source.feature_names,
        asset=None,
        version="small",
        out_dir=out_dir,
        settings=TrainSettings(epochs=3, seed=seed),
    )


def test_training_is_deterministic_for_a_seed(source: LatentFactorSource, tmp_path: Path) -> None:
    first = small_training(source, tmp_path / "a", seed=5)
    again = small_training(source, tmp_path / "b", seed=5)
    other = small_training(source, tmp_path / "c", seed=6)
    assert first.model_bytes == again.model_bytes
    assert first.manifest == replace(again.manifest, created_utc=first.manifest.created_utc)
    assert other.model_bytes != first.model_bytes
    assert first.manifest.asset is None
    assert first.manifest.data_span.start_utc is None


def test_a_constant_feature_gets_unit_scale_and_still_counts(
    source: LatentFactorSource, tmp_path: Path
) -> None:
    rows = source.normal_rows(np.random.default_rng(31), 300)
    rows[:, 2] = 7.5
    bundle = small_training(source, tmp_path, seed=0, rows=rows)
    assert bundle.manifest.scaler_scale[2] == 1.0
    assert bundle.manifest.training["constant_features"] == [source.feature_names[2]]
    changed = rows[:5].copy()
    changed[:, 2] += 20.0  # 20 units off a value that never moved
    errors = int8_errors(bundle, changed)
    assert (errors > 20.0**2 / 12 / 2).all()


def test_scaler_guards_zero_spread() -> None:
    rows = np.array([[1.0, 5.0, 1e9], [3.0, 5.0, 1e9]])
    scaler = fit_scaler(rows)
    assert scaler.mean.tolist() == [2.0, 5.0, 1e9]
    assert scaler.scale.tolist() == [1.0, 1.0, 1.0]
    assert scaler.constant == (1, 2)


@pytest.mark.parametrize(
    ("n_features", "widths"),
    [(40, (16, 8, 4)), (12, (16, 8, 4)), (6, (12, 8, 2)), (3, (6, 6, 1)), (1, (2, 2, 1))],
)
def test_encoder_is_sized_from_the_feature_count(n_features: int, widths: tuple[int, ...]) -> None:
    assert encoder_widths(n_features) == widths


def test_bad_training_input_is_refused(source: LatentFactorSource, tmp_path: Path) -> None:
    names = source.feature_names
    rows = source.normal_rows(np.random.default_rng(32), 20)

    def train(
        features: FloatArray,
        feature_names: tuple[str, ...] = names,
        times: FloatArray | None = None,
    ) -> None:
        train_bundle(
            features,
            feature_names,
            asset="a",
            version="v",
            out_dir=tmp_path,
            window_times=times,
        )

    with pytest.raises(BundleError, match=r"expected shape \(n, 12\) for 12 feature names"):
        train(rows[:, :11])
    with pytest.raises(BundleError, match="names must be unique"):
        train(rows, (*names[:-1], names[0]))
    with pytest.raises(BundleError, match="need at least 2 rows"):
        train(rows[:1])
    broken = rows.copy()
    broken[4, 3] = np.nan
    with pytest.raises(BundleError, match="non-finite value nan at row 4, feature 'feature_03'"):
        train(broken)
    with pytest.raises(BundleError, match="window_times: expected 20 finite UTC seconds"):
        train(rows, times=np.arange(19.0))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"epochs": 0}, "epochs: must be at least 1"),
        ({"batch_size": 0}, "batch_size: must be at least 1"),
        ({"learning_rate": 0.0}, "learning_rate: must be > 0"),
        ({"encoder_widths": (8, 0)}, "encoder_widths: need widths >= 1"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, object], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        TrainSettings(**changes)  # type: ignore[arg-type]
