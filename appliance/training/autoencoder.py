"""Train a small dense autoencoder on normal feature vectors and ship it as an int8 model bundle.

Steps (`fit_autoencoder`):

1. Standard scaler over the training rows; a constant feature (std ~ 0) gets scale 1.0 so that
   any later change of it still shows as a residual instead of dividing by zero. Such features
   are listed in the manifest's training info.
2. Dense autoencoder d -> 16 -> 8 -> 4 -> 8 -> 16 -> d (narrower for few features), ReLU hidden
   layers, linear bottleneck and output, MSE loss, Adam. Deterministic for a given seed (seeded
   Python/numpy/TF generators plus TF op determinism).
3. Full-integer int8 conversion (int8 input and output) calibrated on a representative subset of
   the scaled training rows.
4. The fixed threshold is calibrated on the training rows' reconstruction errors computed through
   the int8 model with ai-edge-litert, i.e. what a gateway will compute, not the float model.
5. The bundle is written and read back through `load_bundle`.

TensorFlow comes from the optional `train` extra and is imported only when training runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from appliance.detect.alarms import AlarmSettings
from appliance.detect.bundle import (
    MANIFEST_FORMAT,
    MODEL_FILE,
    DataSpan,
    Manifest,
    ModelBundle,
    Quantization,
    ThresholdDefaults,
    ThresholdRule,
    sha256_hex,
    write_bundle,
)
from appliance.detect.runtime import open_runtime, reconstruction_error
from appliance.detect.thresholds import AdaptiveSettings, calibrate_fixed
from appliance.errors import BundleError
from appliance.records import FloatArray
from appliance.training.dense import DenseLayer, DenseNetwork

_ADAPTIVE_DEFAULTS = AdaptiveSettings()
_ALARM_DEFAULTS = AlarmSettings()
CONSTANT_STD = 1e-12
"""A feature whose std is below this (relative to max(1, |mean|)) counts as constant."""


@dataclass(frozen=True, slots=True)
class TrainSettings:
    epochs: int = 60
    seed: int = 0
    batch_size: int = 64
    learning_rate: float = 5e-3
    encoder_widths: tuple[int, ...] | None = None
    """Encoder layer widths, bottleneck last; None sizes them from the feature count."""
    representative_rows: int = 1000
    """Rows (evenly spaced over the training data) that calibrate the int8 ranges."""
    threshold_quantile: float = 0.995
    threshold_margin: float = 1.0
    rule: ThresholdRule = "fixed"
    k: float = _ADAPTIVE_DEFAULTS.k
    window: int = _ADAPTIVE_DEFAULTS.window
    warmup: int = _ADAPTIVE_DEFAULTS.warmup
    clear_ratio: float = _ALARM_DEFAULTS.clear_ratio
    critical_factor: float = _ALARM_DEFAULTS.critical_factor

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "representative_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate: must be > 0, got {self.learning_rate}")
        if self.encoder_widths is not None and min(self.encoder_widths, default=0) < 1:
            raise ValueError(f"encoder_widths: need widths >= 1, got {self.encoder_widths}")


@dataclass(frozen=True, slots=True)
class TrainedAutoencoder:
    bundle: ModelBundle
    float_network: DenseNetwork
    """The float weights the int8 model was converted from (for comparisons and benches)."""


@dataclass(frozen=True, slots=True)
class Scaler:
    mean: FloatArray
    scale: FloatArray
    constant: tuple[int, ...]
    """Indices of features whose std was ~0 (scale set to 1.0)."""


def train_bundle(
    features: FloatArray,
    feature_names: tuple[str, ...] | list[str],
    *,
    asset: str | None,
    version: str,
    out_dir: Path,
    window_times: FloatArray | None = None,
    settings: TrainSettings | None = None,
) -> ModelBundle:
    """Train on normal rows (n, d) and write an int8 bundle to `out_dir`."""
    return fit_autoencoder(
        features,
        feature_names,
        asset=asset,
        version=version,
        out_dir=out_dir,
        window_times=window_times,
        settings=settings,
    ).bundle


def fit_autoencoder(
    features: FloatArray,
    feature_names: tuple[str, ...] | list[str],
    *,
    asset: str | None,
    version: str,
    out_dir: Path,
    window_times: FloatArray | None = None,
    settings: TrainSettings | None = None,
) -> TrainedAutoencoder:
    """`train_bundle`, also returning the float network the int8 model came from."""
    settings = settings or TrainSettings()
    names = tuple(feature_names)
    rows = _checked_training_rows(features, names)
    times = _checked_window_times(window_times, len(rows))
    scaler = fit_scaler(rows)
    scaled = ((rows - scaler.mean) / scaler.scale).astype(np.float32)
    widths = settings.encoder_widths or encoder_widths(len(names))
    tf = _tensorflow()
    model, final_loss = _train_keras(tf, scaled, widths, settings)
    network = _float_network(model)
    model_bytes = _convert_to_int8(tf, model, _representative_rows(scaled, settings))
    input_quant, output_quant = model_quantization(model_bytes)
    draft = Manifest(
        format=MANIFEST_FORMAT,
        asset=asset,
        version=version,
        created_utc=_utc_iso(datetime.now(UTC).timestamp()),
        feature_names=names,
        scaler_mean=tuple(float(v) for v in scaler.mean),
        scaler_scale=tuple(float(v) for v in scaler.scale),
        input_quant=input_quant,
        output_quant=output_quant,
        threshold=_threshold_defaults(settings, fixed_threshold=1.0),
        data_span=_data_span(times, len(rows)),
        model_file=MODEL_FILE,
        model_sha256=sha256_hex(model_bytes),
        training=_training_info(tf, settings, names, widths, final_loss, scaler),
    )
    errors = _int8_training_errors(ModelBundle(out_dir, draft, model_bytes), rows)
    fixed = calibrate_fixed(errors, settings.threshold_quantile, settings.threshold_margin).value
    manifest = replace(draft, threshold=_threshold_defaults(settings, fixed_threshold=fixed))
    return TrainedAutoencoder(write_bundle(out_dir, manifest, model_bytes), network)


def _training_info(
    tf: Any,
    settings: TrainSettings,
    names: tuple[str, ...],
    widths: tuple[int, ...],
    final_loss: float,
    scaler: Scaler,
) -> dict[str, Any]:
    return {
        "framework": f"tensorflow {tf.__version__}",
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate,
        "seed": settings.seed,
        "layers": [len(names), *widths, *reversed(widths[:-1]), len(names)],
        "activation": "relu (bottleneck and output linear)",
        "loss": "mse",
        "final_loss": final_loss,
        "representative_rows": settings.representative_rows,
        "constant_features": [names[i] for i in scaler.constant],
        "threshold_quantile": settings.threshold_quantile,
        "threshold_margin": settings.threshold_margin,
    }


def encoder_widths(n_features: int) -> tuple[int, ...]:
    """16, 8, 4 for 12 or more features; narrower so that the bottleneck stays below d."""
    bottleneck = max(1, min(4, n_features // 3))
    hidden = tuple(min(width, 2 * n_features) for width in (16, 8))
    return (*hidden, bottleneck)


def fit_scaler(rows: FloatArray) -> Scaler:
    mean = rows.mean(axis=0)
    std = rows.std(axis=0)
    constant = std <= CONSTANT_STD * np.maximum(1.0, np.abs(mean))
    scale = np.where(constant, 1.0, std)
    return Scaler(mean=mean, scale=scale, constant=tuple(int(i) for i in np.flatnonzero(constant)))


def model_quantization(model_bytes: bytes) -> tuple[Quantization, Quantization]:
    """(input, output) quantisation read from a converted model."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    found = []
    for detail in (interpreter.get_input_details()[0], interpreter.get_output_details()[0]):
        scale, zero_point = detail["quantization"]
        found.append(Quantization(scale=float(scale), zero_point=int(zero_point)))
    return found[0], found[1]


def _checked_training_rows(features: FloatArray, names: tuple[str, ...]) -> FloatArray:
    rows = np.asarray(features, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != len(names):
        raise BundleError(
            f"training features: expected shape (n, {len(names)}) for {len(names)} "
            f"feature names, got {rows.shape}"
        )
    if len(set(names)) != len(names):
        raise BundleError(f"training feature_names: names must be unique, got {list(names)}")
    if len(rows) < 2:
        raise BundleError(f"training features: need at least 2 rows, got {len(rows)}")
    if not np.isfinite(rows).all():
        row, column = np.argwhere(~np.isfinite(rows))[0]
        raise BundleError(
            f"training features: non-finite value {rows[row, column]} at row {row}, "
            f"feature {names[column]!r}"
        )
    return rows


def _checked_window_times(times: FloatArray | None, n_rows: int) -> FloatArray | None:
    if times is None:
        return None
    values = np.asarray(times, dtype=np.float64)
    if values.shape != (n_rows,) or not np.isfinite(values).all():
        raise BundleError(
            f"training window_times: expected {n_rows} finite UTC seconds, got shape {values.shape}"
        )
    return values


def _representative_rows(
    scaled: NDArray[np.float32], settings: TrainSettings
) -> NDArray[np.float32]:
    count = min(len(scaled), settings.representative_rows)
    chosen: NDArray[np.float32] = scaled[np.linspace(0, len(scaled) - 1, count).astype(int)]
    return chosen


def _tensorflow() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise BundleError(
            "training needs TensorFlow: pip install 'edge-appliance[train]' (workstation only)"
        ) from exc
    return tf


def _train_keras(
    tf: Any, scaled: NDArray[np.float32], widths: tuple[int, ...], settings: TrainSettings
) -> tuple[Any, float]:
    """Fit the autoencoder; returns the model and its final mean squared error on `scaled`."""
    model = _build_keras_autoencoder(tf, scaled.shape[1], widths, settings.seed)
    optimizer = tf.keras.optimizers.Adam(settings.learning_rate)
    optimizer.build(model.trainable_variables)
    data = tf.constant(scaled)
    rows = len(scaled)
    batch = settings.batch_size
    steps = -(-rows // batch)

    # The whole loop runs as one graph: Keras' fit() spends ~70 ms per epoch on Python overhead,
    # 3x the cost of training a model this small.
    @tf.function  # type: ignore[untyped-decorator]
    def train_all_epochs() -> None:
        for _ in tf.range(settings.epochs):
            order = tf.random.shuffle(tf.range(rows))
            for step in tf.range(steps):
                rows_in_batch = tf.gather(data, order[step * batch : (step + 1) * batch])
                with tf.GradientTape() as tape:
                    output = model(rows_in_batch, training=True)
                    loss = tf.reduce_mean(tf.square(output - rows_in_batch))
                gradients = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))

    train_all_epochs()
    final_loss = float(tf.reduce_mean(tf.square(model(data) - data)))
    return model, final_loss


def _build_keras_autoencoder(tf: Any, n_features: int, widths: tuple[int, ...], seed: int) -> Any:
    # Seeded here so that the initial weights and the shuffles repeat; a fresh Keras session and
    # fixed layer names keep the converted model's bytes identical for a given seed (Keras
    # otherwise numbers layers per process, dense_7, ..., into the model's tensor names).
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    dense = tf.keras.layers.Dense
    inputs = tf.keras.Input(shape=(n_features,), name="features")
    values = inputs
    for i, width in enumerate(widths[:-1], start=1):
        values = dense(width, activation="relu", name=f"encoder_{i}")(values)
    values = dense(widths[-1], name="bottleneck")(values)
    for i, width in enumerate(reversed(widths[:-1]), start=1):
        values = dense(width, activation="relu", name=f"decoder_{i}")(values)
    outputs = dense(n_features, name="reconstruction")(values)
    return tf.keras.Model(inputs, outputs, name="autoencoder")


def _float_network(model: Any) -> DenseNetwork:
    dense_layers = [layer for layer in model.layers if layer.get_weights()]
    return DenseNetwork(
        tuple(
            DenseLayer(
                weights=np.asarray(layer.get_weights()[0], dtype=np.float32),
                bias=np.asarray(layer.get_weights()[1], dtype=np.float32),
                relu=layer.get_config()["activation"] == "relu",
            )
            for layer in dense_layers
        )
    )


def _convert_to_int8(tf: Any, model: Any, representative: NDArray[Any]) -> bytes:
    def representative_dataset() -> Iterator[list[NDArray[Any]]]:
        for row in representative:
            yield [row[np.newaxis, :]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    # The converter prints the exported graph's signature to stdout and warns that no input
    # statistics were given (the representative data give them): noise for a CLI user.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return bytes(converter.convert())


def _int8_training_errors(draft: ModelBundle, rows: FloatArray) -> FloatArray:
    runtime = open_runtime(draft, "ai-edge-litert")
    errors, _ = reconstruction_error(draft, runtime, rows)
    return errors


def _threshold_defaults(settings: TrainSettings, fixed_threshold: float) -> ThresholdDefaults:
    return ThresholdDefaults(
        rule=settings.rule,
        fixed_threshold=fixed_threshold,
        k=settings.k,
        window=settings.window,
        warmup=settings.warmup,
        clear_ratio=settings.clear_ratio,
        critical_factor=settings.critical_factor,
    )


def _data_span(times: FloatArray | None, n_rows: int) -> DataSpan:
    if times is None:
        return DataSpan(start_utc=None, end_utc=None, rows=n_rows)
    return DataSpan(
        start_utc=_utc_iso(float(times.min())), end_utc=_utc_iso(float(times.max())), rows=n_rows
    )


def _utc_iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
