"""The seam between the evaluation and a streaming detector, and the causal loop that drives one.

The evaluation never looks inside a detector: it builds one per file (or per recording) from the
feature names, hands it the training rows once, then feeds the test rows one at a time in time
order. A decision at row t can therefore only depend on rows <= t. Rows are passed as read-only
arrays so a detector cannot alter the data the metrics are computed from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from appliance.evaluation.metrics import BoolArray
from appliance.records import FloatArray


class StreamingDetector(Protocol):
    """A detector as the gateway runs it: learn normal once, then judge one row at a time."""

    def learn(self, rows: FloatArray) -> None:
        """Learn normal behaviour from (rows, features), all anomaly-free."""

    def step(self, row: FloatArray, t: float) -> tuple[float, float, bool]:
        """Judge one row measured at UTC seconds t: (score, threshold, anomalous)."""


DetectorFactory = Callable[[Sequence[str]], StreamingDetector]
"""Builds a fresh detector for one file from its feature names (in column order)."""


@dataclass(frozen=True)
class StreamVerdicts:
    """What a detector said about each test row, in order."""

    scores: FloatArray
    thresholds: FloatArray
    anomalies: BoolArray

    def __len__(self) -> int:
        return len(self.scores)


def run_detector(
    detector: StreamingDetector, train_rows: FloatArray, test_rows: FloatArray, times: FloatArray
) -> StreamVerdicts:
    """learn(train_rows), then step over test_rows one row at a time (times[i] is row i's time)."""
    if len(test_rows) != len(times):
        raise ValueError(f"{len(test_rows)} test rows for {len(times)} times")
    detector.learn(_read_only(train_rows))
    test_rows = _read_only(test_rows)
    scores = np.empty(len(test_rows))
    thresholds = np.empty(len(test_rows))
    anomalies = np.zeros(len(test_rows), dtype=np.bool_)
    for index, row in enumerate(test_rows):
        score, threshold, anomalous = detector.step(row, float(times[index]))
        scores[index] = score
        thresholds[index] = threshold
        anomalies[index] = bool(anomalous)
    return StreamVerdicts(scores, thresholds, anomalies)


def _read_only(rows: FloatArray) -> FloatArray:
    view = np.asarray(rows, dtype=np.float64).view()
    view.setflags(write=False)
    return view
