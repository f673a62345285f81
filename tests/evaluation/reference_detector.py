"""A deliberately simple detector for the evaluation's tests (not a product detector).

Score: the largest per-feature |z| of a row against the training rows' mean and standard
deviation. Threshold: the largest score seen on the training rows, times a margin. Stateless
between rows, so trivially causal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from appliance.records import FloatArray

STD_FLOOR = 1e-9
"""Keeps a constant training feature from dividing by zero."""


class ZScoreDetector:
    def __init__(self, feature_names: Sequence[str], margin: float = 1.0) -> None:
        self.feature_names = tuple(feature_names)
        self.margin = margin
        self.mean = np.zeros(len(self.feature_names))
        self.std = np.ones(len(self.feature_names))
        self.threshold = np.inf

    def learn(self, rows: FloatArray) -> None:
        self.mean = rows.mean(axis=0)
        self.std = np.maximum(rows.std(axis=0), STD_FLOOR)
        self.threshold = self.margin * max(self.score(row) for row in rows)

    def score(self, row: FloatArray) -> float:
        return float(np.max(np.abs(row - self.mean) / self.std))

    def step(self, row: FloatArray, t: float) -> tuple[float, float, bool]:
        score = self.score(row)
        return score, self.threshold, score > self.threshold
