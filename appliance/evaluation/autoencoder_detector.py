"""The gateway's own scorer behind the evaluation seam.

`learn` trains an int8 bundle on the training rows exactly as `appliance train` does (TensorFlow,
workstation only), opens it with the gateway's runtime, and seeds the threshold; `step` is
`AssetDetector.score_row`, the code that runs on the gateway, one row at a time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from appliance.detect.runtime import open_runtime
from appliance.detect.scorer import (
    AssetDetector,
    BundleModel,
    DetectorSettings,
    build_threshold,
)
from appliance.records import FloatArray
from appliance.training.autoencoder import TrainSettings, train_bundle


class AutoencoderDetector:
    def __init__(
        self,
        names: Sequence[str],
        settings: DetectorSettings,
        train: TrainSettings,
        work_dir: Path,
        backend: str = "ai-edge-litert",
    ) -> None:
        self._names = tuple(names)
        self._settings = settings
        self._train = train
        self._work_dir = work_dir
        self._backend = backend
        self._detector: AssetDetector | None = None

    def learn(self, rows: FloatArray) -> None:
        out_dir = Path(tempfile.mkdtemp(prefix="bundle-", dir=self._work_dir))
        bundle = train_bundle(
            rows, self._names, asset=None, version="eval", out_dir=out_dir, settings=self._train
        )
        model = BundleModel(bundle, open_runtime(bundle, self._backend))
        training_errors, _ = model.errors(rows)
        threshold = build_threshold(model, self._settings, seed_errors=training_errors)
        self._detector = AssetDetector("eval", model, self._settings, threshold)

    def step(self, row: FloatArray, t: float) -> tuple[float, float, bool]:
        if self._detector is None:
            raise RuntimeError("learn() must run before step()")
        score = self._detector.score_row(row, t).score
        return score.error, score.threshold, score.anomalous


def detector_factory(
    settings: DetectorSettings,
    train: TrainSettings,
    work_dir: Path,
    backend: str = "ai-edge-litert",
) -> Any:
    """A DetectorFactory for evaluate_skab / evaluate_vibration."""

    def make(names: Sequence[str]) -> AutoencoderDetector:
        return AutoencoderDetector(names, settings, train, work_dir, backend)

    return make


def describe(settings: DetectorSettings, train: TrainSettings) -> dict[str, Any]:
    """The settings, as recorded in summary.json."""
    return {
        "detector": "int8 autoencoder (AssetDetector)",
        **asdict(settings),
        "train": asdict(train),
    }
