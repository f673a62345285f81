"""The gateway's own scorer behind the evaluation seam.

`learn` trains an int8 bundle on the training rows exactly as `appliance train` does (TensorFlow,
workstation only), opens it with the gateway's runtime, and seeds the threshold; `step` is
`AssetDetector.score_row`, the code that runs on the gateway, one row at a time.

With precision "float" the same training run's float network (the weights before int8
conversion) stands in for the int8 model, behind the same scaler, error computation, threshold
and alarm rules; its commissioning threshold is calibrated on its own training errors the way the
int8 one is. That measures what quantisation costs, everything else being equal.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from appliance.detect.runtime import open_runtime
from appliance.detect.scorer import (
    AssetDetector,
    BundleModel,
    DetectorSettings,
    build_threshold,
)
from appliance.detect.thresholds import calibrate_fixed
from appliance.records import FloatArray
from appliance.training.autoencoder import TrainedAutoencoder, TrainSettings, fit_autoencoder
from appliance.training.dense import FloatReconstructor

Precision = Literal["int8", "float"]


class AutoencoderDetector:
    def __init__(
        self,
        names: Sequence[str],
        settings: DetectorSettings,
        train: TrainSettings,
        work_dir: Path,
        backend: str = "ai-edge-litert",
        precision: Precision = "int8",
    ) -> None:
        self._names = tuple(names)
        self._settings = settings
        self._train = train
        self._work_dir = work_dir
        self._backend = backend
        self._precision = precision
        self._detector: AssetDetector | None = None

    def learn(self, rows: FloatArray) -> None:
        out_dir = Path(tempfile.mkdtemp(prefix="bundle-", dir=self._work_dir))
        trained = fit_autoencoder(
            rows, self._names, asset=None, version="eval", out_dir=out_dir, settings=self._train
        )
        model: BundleModel
        if self._precision == "float":
            model = FloatModel(trained, rows, self._train)
        else:
            model = BundleModel(trained.bundle, open_runtime(trained.bundle, self._backend))
        training_errors, _ = model.errors(rows)
        threshold = build_threshold(model, self._settings, seed_errors=training_errors)
        self._detector = AssetDetector("eval", model, self._settings, threshold)

    def step(self, row: FloatArray, t: float) -> tuple[float, float, bool]:
        if self._detector is None:
            raise RuntimeError("learn() must run before step()")
        score = self._detector.score_row(row, t).score
        return score.error, score.threshold, score.anomalous


class FloatModel(BundleModel):
    """The float network an int8 bundle was converted from, as an ErrorModel (workstation only)."""

    def __init__(self, trained: TrainedAutoencoder, rows: FloatArray, train: TrainSettings) -> None:
        super().__init__(trained.bundle, FloatReconstructor(trained.float_network))
        errors, _ = self.errors(rows)
        self._commissioned = calibrate_fixed(
            errors, train.threshold_quantile, train.threshold_margin
        ).value

    @property
    def model_id(self) -> str:
        return f"{self.bundle.bundle_id}-float"

    @property
    def commissioned_threshold(self) -> float:
        return self._commissioned


def detector_factory(
    settings: DetectorSettings,
    train: TrainSettings,
    work_dir: Path,
    backend: str = "ai-edge-litert",
    precision: Precision = "int8",
) -> Any:
    """A DetectorFactory for evaluate_skab / evaluate_vibration."""

    def make(names: Sequence[str]) -> AutoencoderDetector:
        return AutoencoderDetector(names, settings, train, work_dir, backend, precision)

    return make


def describe(
    settings: DetectorSettings, train: TrainSettings, precision: Precision = "int8"
) -> dict[str, Any]:
    """The settings, as recorded in summary.json."""
    return {
        "detector": f"{precision} autoencoder (AssetDetector)",
        **asdict(settings),
        "train": asdict(train),
    }
