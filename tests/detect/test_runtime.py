"""Runtime backends on real int8 models: shapes, batching, quantisation, refusals, agreement.

The model is a tiny autoencoder trained here (two epochs: these tests need a real int8 model, not
a good one; tests/training checks detection quality). tflite-runtime needs numpy < 2, so it runs
in its own cached venv (.venv-tflite/ at the repository root, built on first use in ~10-20 s)
and the test compares its outputs with ai-edge-litert's bit for bit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from appliance.detect.bundle import ModelBundle, Quantization, load_bundle, sha256_hex, write_bundle
from appliance.detect.runtime import (
    MAX_BATCH_ROWS,
    dequantize,
    open_runtime,
    quantize,
    reconstruction_error,
)
from appliance.errors import BundleError
from appliance.training.autoencoder import TrainSettings, train_bundle
from appliance.training.synthetic import LatentFactorSource

REPO = Path(__file__).resolve().parents[2]
TFLITE_VENV = REPO / ".venv-tflite"
TFLITE_REQUIREMENTS = ("tflite-runtime==2.14.0", "numpy==1.26.4")

N_FEATURES = 8


@pytest.fixture(scope="module")
def source() -> LatentFactorSource:
    return LatentFactorSource.create(seed=3, n_features=N_FEATURES, n_factors=2)


@pytest.fixture(scope="module")
def bundle(source: LatentFactorSource, tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    rows = source.normal_rows(np.random.default_rng(0), 300)
    return train_bundle(
        rows,
        source.feature_names,
        asset="test-rig",
        version="runtime-test",
        out_dir=tmp_path_factory.mktemp("runtime") / "bundle",
        settings=TrainSettings(epochs=2, seed=1),
    )


def scaled_rows(bundle: ModelBundle, rows: np.ndarray) -> np.ndarray:
    return ((rows - bundle.scaler_mean) / bundle.scaler_scale).astype(np.float32)


def test_reconstruct_maps_rows_to_rows(bundle: ModelBundle, source: LatentFactorSource) -> None:
    runtime = open_runtime(bundle)
    scaled = scaled_rows(bundle, source.normal_rows(np.random.default_rng(1), 5))
    reconstruction = runtime.reconstruct(scaled)
    assert runtime.backend == "ai-edge-litert"
    assert runtime.n_features == N_FEATURES
    assert reconstruction.shape == (5, N_FEATURES)
    assert reconstruction.dtype == np.float32
    assert runtime.last_invoke_s > 0.0
    # Outputs lie on the output quantisation grid.
    quant = bundle.manifest.output_quant
    steps = reconstruction.astype(np.float64) / quant.scale + quant.zero_point
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)


def test_a_batch_gives_exactly_the_row_by_row_results(
    bundle: ModelBundle, source: LatentFactorSource
) -> None:
    runtime = open_runtime(bundle)
    rows = MAX_BATCH_ROWS + 37  # two batches of different sizes
    scaled = scaled_rows(bundle, source.normal_rows(np.random.default_rng(2), rows))
    batch = runtime.reconstruct(scaled)
    one_by_one = np.vstack([runtime.reconstruct(scaled[i : i + 1]) for i in range(rows)])
    np.testing.assert_array_equal(batch, one_by_one)
    np.testing.assert_array_equal(runtime.reconstruct(scaled[:3]), batch[:3])


def test_empty_input_gives_empty_output(bundle: ModelBundle) -> None:
    runtime = open_runtime(bundle)
    assert runtime.reconstruct(np.zeros((0, N_FEATURES), np.float32)).shape == (0, N_FEATURES)


def test_quantize_rounds_and_clips_and_dequantize_inverts() -> None:
    quant = Quantization(scale=0.5, zero_point=-10)
    values = np.array([[0.0, 0.24, 0.26, -5.0, 1000.0, -1000.0]], np.float32)
    assert quantize(values, quant).tolist() == [[-10, -10, -9, -20, 127, -128]]
    np.testing.assert_array_equal(
        dequantize(np.array([[-10, -9, 127]], np.int8), quant), [[0.0, 0.5, 68.5]]
    )


def test_reconstruct_refuses_bad_rows(bundle: ModelBundle) -> None:
    runtime = open_runtime(bundle)
    with pytest.raises(ValueError, match=r"expected shape \(n, 8\), got \(8,\)"):
        runtime.reconstruct(np.zeros(N_FEATURES, np.float32))
    rows = np.zeros((3, N_FEATURES), np.float32)
    rows[2, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite value at row 2, feature 5"):
        runtime.reconstruct(rows)


def test_error_is_measured_against_the_unclipped_input(
    bundle: ModelBundle, source: LatentFactorSource
) -> None:
    runtime = open_runtime(bundle)
    rows = source.normal_rows(np.random.default_rng(3), 2)
    # Feature 0 of row 1 lies 100 standard deviations out: far beyond the int8 input range.
    rows[1, 0] = bundle.scaler_mean[0] + 100.0 * bundle.scaler_scale[0]
    errors, per_feature = reconstruction_error(bundle, runtime, rows)
    assert errors.shape == (2,)
    assert per_feature.shape == (2, N_FEATURES)
    np.testing.assert_allclose(errors, per_feature.mean(axis=1))
    largest_input = (
        127 - bundle.manifest.input_quant.zero_point
    ) * bundle.manifest.input_quant.scale
    largest_output = (
        127 - bundle.manifest.output_quant.zero_point
    ) * bundle.manifest.output_quant.scale
    assert largest_input < 20.0  # so the clipped value would hide most of the excursion
    # Against the clipped input the residual could be at most largest_input + |largest_output|.
    assert per_feature[1, 0] >= (100.0 - abs(largest_output)) ** 2
    assert per_feature[1, 0] > (largest_input + abs(largest_output)) ** 2


def test_reconstruction_error_refuses_the_wrong_feature_count(bundle: ModelBundle) -> None:
    runtime = open_runtime(bundle)
    with pytest.raises(ValueError, match=r"expected shape \(n, 8\) for bundle runtime-test-"):
        reconstruction_error(bundle, runtime, np.zeros((4, 7)))


# --- refusals ---------------------------------------------------------------------------------


def test_unknown_backend_is_refused(bundle: ModelBundle) -> None:
    with pytest.raises(BundleError, match="unknown runtime backend 'coral'; known: ai-edge-litert"):
        open_runtime(bundle, "coral")


def test_missing_backend_package_is_refused(
    bundle: ModelBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    expected = r"backend 'tflite-runtime' is not installed.*pip install tflite-runtime"
    with pytest.raises(BundleError, match=expected):
        open_runtime(bundle, "tflite-runtime")


def test_a_model_with_fewer_inputs_than_feature_names_is_refused(
    bundle: ModelBundle, tmp_path: Path
) -> None:
    manifest = bundle.manifest
    wider = replace(
        manifest,
        feature_names=(*manifest.feature_names, "extra"),
        scaler_mean=(*manifest.scaler_mean, 0.0),
        scaler_scale=(*manifest.scaler_scale, 1.0),
    )
    mismatched = write_bundle(tmp_path / "wider", wider, bundle.model_bytes)
    with pytest.raises(BundleError) as caught:
        open_runtime(mismatched)
    message = str(caught.value)
    assert "wider/model.tflite (ai-edge-litert)" in message
    assert "input shape (1, 8) does not match the manifest's 9 feature_names" in message


def test_a_truncated_model_with_a_matching_hash_is_refused(
    bundle: ModelBundle, tmp_path: Path
) -> None:
    truncated = bundle.model_bytes[: len(bundle.model_bytes) // 2]
    manifest = replace(bundle.manifest, model_sha256=sha256_hex(truncated))
    broken = write_bundle(tmp_path / "truncated", manifest, truncated)
    with pytest.raises(
        BundleError, match=r"truncated/model.tflite \(ai-edge-litert\): model does not load"
    ):
        open_runtime(broken)


def test_quantisation_that_disagrees_with_the_model_is_refused(
    bundle: ModelBundle, tmp_path: Path
) -> None:
    quant = bundle.manifest.input_quant
    wrong = replace(bundle.manifest, input_quant=replace(quant, scale=quant.scale * 2))
    mismatched = write_bundle(tmp_path / "quant", wrong, bundle.model_bytes)
    with pytest.raises(BundleError, match=r"manifest input_quant .* does not match the model's"):
        open_runtime(mismatched)


def test_a_float_model_is_refused(bundle: ModelBundle, tmp_path: Path) -> None:
    import tensorflow as tf

    inputs = tf.keras.Input(shape=(N_FEATURES,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(N_FEATURES)(inputs))
    float_model = bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    manifest = replace(bundle.manifest, model_sha256=sha256_hex(float_model))
    floating = write_bundle(tmp_path / "float", manifest, float_model)
    with pytest.raises(BundleError, match="model input is float32, expected int8"):
        open_runtime(floating)


# --- tflite-runtime in its own environment ----------------------------------------------------

TFLITE_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
from appliance.detect.bundle import load_bundle
from appliance.detect.runtime import open_runtime

bundle = load_bundle(Path(sys.argv[1]))
rows = np.array(json.loads(Path(sys.argv[2]).read_text()), dtype=np.float32)
runtime = open_runtime(bundle, "tflite-runtime")
print(json.dumps({
    "numpy": np.__version__,
    "backend": runtime.backend,
    "batch": runtime.reconstruct(rows).tolist(),
    "single": runtime.reconstruct(rows[:1]).tolist(),
}))
"""


def tflite_runtime_python() -> Path:
    """The cached venv's python with tflite-runtime and numpy 1.26, built once (idempotent)."""
    python = TFLITE_VENV / "bin" / "python"
    marker = TFLITE_VENV / "installed.txt"
    wanted = "\n".join(TFLITE_REQUIREMENTS)
    if marker.exists() and marker.read_text() == wanted and python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(TFLITE_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *TFLITE_REQUIREMENTS],
        check=True,
        timeout=300,
    )
    marker.write_text(wanted)
    return python


@pytest.mark.timeout(400)
def test_tflite_runtime_matches_ai_edge_litert_exactly(
    bundle: ModelBundle, source: LatentFactorSource, tmp_path: Path
) -> None:
    rows = scaled_rows(bundle, source.normal_rows(np.random.default_rng(4), 50))
    rows[0, 0] = 50.0  # clipped at the input by both
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(rows.tolist()))
    script = tmp_path / "run_tflite_runtime.py"
    script.write_text(TFLITE_SCRIPT)
    completed = subprocess.run(
        [str(tflite_runtime_python()), str(script), str(bundle.path), str(rows_file)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["numpy"] == "1.26.4"
    assert result["backend"] == "tflite-runtime"
    litert = open_runtime(load_bundle(bundle.path), "ai-edge-litert")
    expected = litert.reconstruct(rows)
    np.testing.assert_array_equal(np.array(result["batch"], np.float32), expected)
    np.testing.assert_array_equal(np.array(result["single"], np.float32), expected[:1])
