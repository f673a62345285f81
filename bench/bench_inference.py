"""Inference latency: the int8 model through `Reconstructor.reconstruct` vs a float numpy baseline.

Trains the synthetic 12-feature autoencoder (d -> 16 -> 8 -> 4 -> 8 -> 16 -> d, as the tests do),
then times, per row:

- `reconstruct()` on one row with ai-edge-litert (quantise, invoke, dequantise: what the scorer
  calls once per feature window), and `BundleModel.errors()` (adds scaling and the residual:
  what `AssetDetector` calls through the `ErrorModel` seam);
- the bare interpreter invoke on one pre-quantised row, with the built-in int8 kernels the runtime
  uses and with ai-edge-litert's default XNNPACK delegate (the kernels the runtime avoids so that
  backends agree bit for bit; see appliance/detect/runtime.py);
- the baseline: the same network's float32 weights as numpy matmuls on one row;
- the same calls on a batch of 1000 rows (per row).

Each figure is the best of `--repeat` runs of `--calls` calls. Ratios are against the numpy
baseline measured in the same run.

    .venv/bin/python bench/bench_inference.py [--calls 20000 --repeat 5]
        [--append-results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from appliance.detect.bundle import ModelBundle
from appliance.detect.runtime import open_runtime, quantize
from appliance.detect.scorer import BundleModel
from appliance.training.autoencoder import TrainedAutoencoder, TrainSettings, fit_autoencoder
from appliance.training.dense import FloatReconstructor
from appliance.training.synthetic import LatentFactorSource

BATCH_ROWS = 1000


@dataclass(frozen=True)
class Figure:
    name: str
    seconds_per_row: float


def best_seconds_per_call(call: Callable[[], object], calls: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def train(directory: Path) -> tuple[TrainedAutoencoder, LatentFactorSource]:
    source = LatentFactorSource.create(seed=7)
    rows = source.normal_rows(np.random.default_rng(1), 2000)
    trained = fit_autoencoder(
        rows,
        source.feature_names,
        asset="bench",
        version="bench",
        out_dir=directory,
        settings=TrainSettings(epochs=40),
    )
    return trained, source


def bare_invoke(bundle: ModelBundle, row: np.ndarray, xnnpack: bool) -> Callable[[], object]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(
        model_content=bundle.model_bytes, experimental_op_resolver_type=resolver, num_threads=1
    )
    interpreter.allocate_tensors()
    input_tensor = interpreter.tensor(interpreter.get_input_details()[0]["index"])
    output_tensor = interpreter.tensor(interpreter.get_output_details()[0]["index"])

    def call() -> object:
        input_tensor()[...] = row
        interpreter.invoke()
        return output_tensor().copy()

    return call


def measure(
    trained: TrainedAutoencoder, source: LatentFactorSource, calls: int, repeat: int
) -> list[Figure]:
    bundle = trained.bundle
    features = source.normal_rows(np.random.default_rng(2), BATCH_ROWS)
    scaled = ((features - bundle.scaler_mean) / bundle.scaler_scale).astype(np.float32)
    one_scaled, one_features = scaled[:1], features[:1]
    one_quantized = quantize(one_scaled, bundle.manifest.input_quant)
    runtime = open_runtime(bundle)
    model = BundleModel(bundle, runtime)
    floating = FloatReconstructor(trained.float_network)
    batch_calls = max(1, calls // BATCH_ROWS)
    single = [
        ("numpy float32 forward, 1 row (baseline)", lambda: floating.reconstruct(one_scaled)),
        ("litert reconstruct(), 1 row", lambda: runtime.reconstruct(one_scaled)),
        ("litert BundleModel.errors(), 1 row", lambda: model.errors(one_features)),
        ("litert bare invoke, built-in int8 kernels", bare_invoke(bundle, one_quantized, False)),
        ("litert bare invoke, XNNPACK delegate", bare_invoke(bundle, one_quantized, True)),
    ]
    batch = [
        (f"numpy float32 forward, {BATCH_ROWS} rows", lambda: floating.reconstruct(scaled)),
        (f"litert reconstruct(), {BATCH_ROWS} rows", lambda: runtime.reconstruct(scaled)),
    ]
    figures = [Figure(name, best_seconds_per_call(call, calls, repeat)) for name, call in single]
    figures += [
        Figure(name, best_seconds_per_call(call, batch_calls, repeat) / BATCH_ROWS)
        for name, call in batch
    ]
    return figures


def table(figures: list[Figure]) -> list[str]:
    baseline = figures[0].seconds_per_row
    lines = ["| call | us per row | / numpy 1-row baseline |", "|---|---|---|"]
    for figure in figures:
        micros = figure.seconds_per_row * 1e6
        lines.append(f"| {figure.name} | {micros:.2f} | {figure.seconds_per_row / baseline:.2f}x |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--append-results", type=Path, help="append a markdown section here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        trained, source = train(Path(directory) / "bundle")
        figures = measure(trained, source, args.calls, args.repeat)
    bundle = trained.bundle
    lines = table(figures)
    summary = (
        f"Model: {bundle.manifest.training['layers']} dense int8, {len(bundle.model_bytes)} bytes; "
        f"{args.calls} calls x best of {args.repeat}."
    )
    print("\n".join([summary, "", *lines]))
    if args.append_results is not None:
        command = "`.venv/bin/python bench/bench_inference.py"
        command += (
            f" --calls {args.calls} --repeat {args.repeat} --append-results {args.append_results}`"
        )
        section = [
            "",
            f"## Inference latency: int8 reconstruct() vs float numpy ({date.today().isoformat()})",
            "",
            f"Command: {command}",
            "",
            f"Machine: {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}, numpy {np.__version__}. {summary}",
            "",
            *lines,
            "",
        ]
        with args.append_results.open("a", encoding="utf-8") as results:
            results.write("\n".join(section))


if __name__ == "__main__":
    main()
