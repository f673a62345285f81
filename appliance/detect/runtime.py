"""Run a bundle's int8 autoencoder: interchangeable TFLite backends behind `Reconstructor`.

Backends, keyed by name:

- "ai-edge-litert" (default): `ai_edge_litert.interpreter`, works with numpy 1.26 and 2.x.
- "tflite-runtime": `tflite_runtime.interpreter`; 2.14.0 is the last release for Python 3.11 and
  needs numpy < 2 (it imports under numpy 2 but cannot build an Interpreter).

Both run TFLite's built-in int8 kernels without the default XNNPACK delegate. ai-edge-litert's
XNNPACK int8 kernels round differently (up to 2 LSB on ~3 % of outputs, measured), which would
make the backends disagree and make the threshold calibrated at training time (through
ai-edge-litert) differ from what a gateway computes. With the built-in kernels both backends give
bit-identical outputs.

A `Reconstructor` is not thread-safe: one owner (the detect stage, or an executor job it awaits)
calls it at a time.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from appliance.detect.bundle import ModelBundle, Quantization
from appliance.errors import BundleError
from appliance.records import FloatArray

DEFAULT_BACKEND = "ai-edge-litert"
MAX_BATCH_ROWS = 1024
"""Most rows per invoke (bounds the interpreter's tensor memory)."""


@dataclass(frozen=True, slots=True)
class BackendModule:
    """Where a backend's Interpreter lives and how to install it."""

    module: str
    install_hint: str


BACKENDS: Mapping[str, BackendModule] = MappingProxyType(
    {
        "ai-edge-litert": BackendModule("ai_edge_litert.interpreter", "pip install ai-edge-litert"),
        "tflite-runtime": BackendModule(
            "tflite_runtime.interpreter", "pip install tflite-runtime==2.14.0 'numpy<2'"
        ),
    }
)


class Reconstructor(Protocol):
    """Maps scaled feature rows to the model's reconstruction of them."""

    backend: str
    n_features: int
    last_invoke_s: float
    """Wall time of the last `reconstruct` call (for the status board)."""

    def reconstruct(self, scaled: NDArray[np.float32]) -> NDArray[np.float32]:
        """(n, d) scaled rows -> (n, d) reconstructions, through the int8 model."""
        ...


class InterpreterReconstructor:
    """A `Reconstructor` over a TFLite Interpreter of either backend (same Python API).

    Many rows go through one invoke (the input tensor is resized to the row count, up to
    MAX_BATCH_ROWS): measured ~20x cheaper per row than one invoke per row, with identical
    outputs (the int8 kernels work row by row).
    """

    def __init__(
        self,
        backend: str,
        interpreter: Any,
        input_quant: Quantization,
        output_quant: Quantization,
        n_features: int,
    ) -> None:
        self.backend = backend
        self.n_features = n_features
        self.last_invoke_s = 0.0
        self._interpreter = interpreter
        self._input_index: int = interpreter.get_input_details()[0]["index"]
        self._output_index: int = interpreter.get_output_details()[0]["index"]
        self._batch_rows = 1
        self._input_quant = input_quant
        self._output_quant = output_quant

    def reconstruct(self, scaled: NDArray[np.float32]) -> NDArray[np.float32]:
        started = time.perf_counter()
        quantized = quantize(_checked_rows(scaled, self.n_features), self._input_quant)
        if len(quantized) <= MAX_BATCH_ROWS:
            output = self._invoke(quantized)
        else:
            chunks = range(0, len(quantized), MAX_BATCH_ROWS)
            output = np.concatenate(
                [self._invoke(quantized[i : i + MAX_BATCH_ROWS]) for i in chunks]
            )
        reconstruction = dequantize(output, self._output_quant)
        self.last_invoke_s = time.perf_counter() - started
        return reconstruction

    def _invoke(self, quantized: NDArray[np.int8]) -> NDArray[np.int8]:
        if len(quantized) == 0:
            return quantized
        if len(quantized) != self._batch_rows:
            self._interpreter.resize_tensor_input(self._input_index, list(quantized.shape))
            self._interpreter.allocate_tensors()
            self._batch_rows = len(quantized)
        # set_tensor/get_tensor (copies) measured faster here than writing through tensor() views.
        self._interpreter.set_tensor(self._input_index, quantized)
        self._interpreter.invoke()
        output: NDArray[np.int8] = self._interpreter.get_tensor(self._output_index)
        return output


def open_runtime(bundle: ModelBundle, backend: str = DEFAULT_BACKEND) -> Reconstructor:
    """Build an interpreter for the bundle's model; BundleError if it cannot serve this bundle."""
    interpreter_class = _interpreter_class(backend)
    where = f"{bundle.path / bundle.manifest.model_file} ({backend})"
    try:
        interpreter = interpreter_class(
            model_content=bundle.model_bytes,
            experimental_op_resolver_type=_builtin_kernels(backend),
            num_threads=1,
        )
        interpreter.allocate_tensors()
    except Exception as exc:  # the backends raise ValueError/RuntimeError/ImportError alike
        raise BundleError(f"{where}: model does not load: {exc}") from exc
    n_features = bundle.manifest.n_features
    _check_single_tensor(interpreter.get_input_details(), "input", n_features, where)
    _check_single_tensor(interpreter.get_output_details(), "output", n_features, where)
    input_quant = _tensor_quantization(interpreter.get_input_details()[0])
    output_quant = _tensor_quantization(interpreter.get_output_details()[0])
    _check_quantization_matches(input_quant, bundle.manifest.input_quant, "input_quant", where)
    _check_quantization_matches(output_quant, bundle.manifest.output_quant, "output_quant", where)
    _check_runs_batches(interpreter, n_features, where)
    return InterpreterReconstructor(backend, interpreter, input_quant, output_quant, n_features)


def reconstruction_error(
    bundle: ModelBundle, runtime: Reconstructor, features: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-row mean squared residual (n,) and per-feature squared residuals (n, d).

    The residual is taken against the scaled input *before* int8 clipping: a value far outside the
    range calibrated on normal data is clipped on its way into the model, and measuring against the
    clipped value would hide exactly the anomalies that matter.
    """
    rows = np.asarray(features, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != bundle.manifest.n_features:
        raise ValueError(
            f"features: expected shape (n, {bundle.manifest.n_features}) for bundle "
            f"{bundle.bundle_id}, got {rows.shape}"
        )
    scaled = (rows - bundle.scaler_mean) / bundle.scaler_scale
    with np.errstate(over="ignore"):  # an overflow to inf is refused by reconstruct, by name
        scaled32 = scaled.astype(np.float32)
    reconstruction = runtime.reconstruct(scaled32)
    residual = scaled - reconstruction
    per_feature_sq = residual * residual
    errors = per_feature_sq.sum(axis=1) / per_feature_sq.shape[1]  # cheaper than .mean(axis=1)
    return errors, per_feature_sq


def quantize(values: NDArray[np.float32], quant: Quantization) -> NDArray[np.int8]:
    """Float -> int8, rounding half to even and clipping to [-128, 127] (the only clipping).

    float32 arithmetic, as TFLite's own quantize kernel; written with in-place ufuncs because it
    runs once per scored window and np.clip's overhead is a sizeable part of that call.
    """
    q = np.rint(np.asarray(values, dtype=np.float32) / np.float32(quant.scale))
    q += np.float32(quant.zero_point)
    np.maximum(q, -128, out=q)
    np.minimum(q, 127, out=q)
    quantized: NDArray[np.int8] = q.astype(np.int8)
    return quantized


def dequantize(values: NDArray[np.int8], quant: Quantization) -> NDArray[np.float32]:
    real = values.astype(np.float32)
    real -= np.float32(quant.zero_point)
    real *= np.float32(quant.scale)
    return real


def _checked_rows(scaled: NDArray[np.float32], n_features: int) -> NDArray[np.float32]:
    rows = np.asarray(scaled, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != n_features:
        raise ValueError(f"scaled: expected shape (n, {n_features}), got {rows.shape}")
    if not np.isfinite(rows).all():
        row, column = np.argwhere(~np.isfinite(rows))[0]
        raise ValueError(f"scaled: non-finite value at row {row}, feature {column}")
    return rows


def _interpreter_class(backend: str) -> Any:
    if backend not in BACKENDS:
        raise BundleError(f"unknown runtime backend {backend!r}; known: {', '.join(BACKENDS)}")
    spec = BACKENDS[backend]
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise BundleError(
            f"runtime backend {backend!r} is not installed ({exc}); {spec.install_hint}"
        ) from exc
    return module.Interpreter


def _builtin_kernels(backend: str) -> Any:
    module = importlib.import_module(BACKENDS[backend].module)
    return module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def _check_single_tensor(
    details: list[dict[str, Any]], role: str, n_features: int, where: str
) -> None:
    if len(details) != 1:
        raise BundleError(f"{where}: model has {len(details)} {role} tensors, expected 1")
    shape = tuple(int(s) for s in details[0]["shape"])
    if shape != (1, n_features):
        raise BundleError(
            f"{where}: model {role} shape {shape} does not match the manifest's "
            f"{n_features} feature_names (expected (1, {n_features}))"
        )
    if details[0]["dtype"] != np.int8:
        dtype = np.dtype(details[0]["dtype"]).name
        raise BundleError(f"{where}: model {role} is {dtype}, expected int8 (full-integer model)")


def _check_runs_batches(interpreter: Any, n_features: int, where: str) -> None:
    """Refuse a model that cannot take several rows per invoke; leave it set up for one row."""
    input_index = interpreter.get_input_details()[0]["index"]
    try:
        for rows in (2, 1):
            interpreter.resize_tensor_input(input_index, [rows, n_features])
            interpreter.allocate_tensors()
            interpreter.set_tensor(input_index, np.zeros((rows, n_features), np.int8))
            interpreter.invoke()
    except Exception as exc:  # backends raise ValueError/RuntimeError alike
        raise BundleError(f"{where}: model cannot run a batch of rows: {exc}") from exc


def _tensor_quantization(detail: dict[str, Any]) -> Quantization:
    scale, zero_point = detail["quantization"]
    return Quantization(scale=float(scale), zero_point=int(zero_point))


def _check_quantization_matches(
    actual: Quantization, declared: Quantization, name: str, where: str
) -> None:
    same_scale = np.isclose(actual.scale, declared.scale, rtol=1e-6, atol=0.0)
    if not (same_scale and actual.zero_point == declared.zero_point):
        raise BundleError(
            f"{where}: manifest {name} {declared} does not match the model's {actual}"
        )
