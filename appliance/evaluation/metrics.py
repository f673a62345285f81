"""SKAB leaderboard metrics (pure): outlier counts, F1/FAR/MAR, and NAB changepoint scores.

The protocol is SKAB's "Proposed Leaderboard" (see ../shared/data/README.md): each file is split
into a training part (the first 400 rows) and a test part; only test parts are scored.

Outlier problem. Point-wise 0/1 predictions against the `anomaly` labels; TP/FP/TN/FN are summed
over all files before the ratios are taken:

    F1 = TP / (TP + (FN + FP) / 2),  FAR = 100 * FP / (FP + TN),  MAR = 100 * FN / (FN + TP)

A ratio whose denominator is zero is NaN (undefined), not 0.

Changepoint problem, NAB scoring as SKAB's leaderboard does it (the SKAB repository's
core/metrics.py `chp_score` with the notebooks' arguments: 60 s windows to the right, "improved"
sigmoid). Checked against ../shared/tools/skab-check, a re-implementation that reproduces the
published leaderboard: the same predictions give the same figures (tests/evaluation). The rules:

- Predicted changepoints are the rising and the falling edges of the 0/1 prediction series: a
  row whose prediction differs from the previous row's. The first test row counts as an edge if
  it is predicted 1 (`cp = abs(pred.diff()); cp[0] = pred[0]`).
- True changepoints are the rows of the test part whose `changepoint` label is 1.
- Each true changepoint at time c opens a window [c, c + W] in time (W = 60 s; both ends
  included). Where a window reaches the next changepoint, the NEXT window's start moves to this
  window's end (the first window keeps its full width; the next one is shortened from the left).
  Windows are in time, not rows, because SKAB rows are not evenly spaced (gaps up to 76 s).
- The first detection inside a window is a true positive worth a weight that falls from A_tp at
  the window's start to A_fp at its end, along a tanh curve sampled at 1000 points:

      x_i = -pi/2 + i * pi / 999,  w_i = (A_tp - A_fp) / 2 * (1 - tanh(x_i) / tanh(pi/2)) + A_fp
      i = min(floor(1000 * (t - start) / (end - start)), 999)

  so it depends on the profile's A_fp too, and a detection at the very end costs A_fp. Later
  detections in the same window count for nothing. A detection on the boundary shared by two
  windows belongs to both.
- Every detection outside all windows is a false positive and adds A_fp (no discount after a
  window). A window without a detection adds A_fn.
- Profiles (A_tp, A_fp, A_fn): Standard (1, -0.11, -1), LowFP (1, -0.22, -1), LowFN (1, -0.11, -2).
- Normalisation, summed over files: with S the sum of the files' raw scores, S_null the sum
  of what the null detector (no detections: every window missed, n_windows * A_fn) scores and
  S_perfect the perfect one's (n_windows * A_tp), NAB = 100 * (S - S_null) / (S_perfect - S_null).
  A file without true changepoints adds its false positives to S and nothing to S_null or
  S_perfect. With no true changepoint in any file the score is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from appliance.records import FloatArray

BoolArray = npt.NDArray[np.bool_]

NAB_WINDOW_S = 60.0
"""Width of the window to the right of each true changepoint, seconds."""

WEIGHT_STEPS = 1000
"""SKAB samples its true-positive weight curve at this many positions across a window."""


@dataclass(frozen=True)
class OutlierCounts:
    """Point-wise confusion counts of 0/1 predictions against 0/1 labels."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def __add__(self, other: OutlierCounts) -> OutlierCounts:
        return OutlierCounts(
            self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn
        )


@dataclass(frozen=True)
class OutlierScores:
    """F1 as a fraction; FAR and MAR in percent. NaN where the denominator is zero."""

    f1: float
    far: float
    mar: float


def outlier_counts(labels: BoolArray, predictions: BoolArray) -> OutlierCounts:
    labels, predictions = _same_length(labels, predictions)
    return OutlierCounts(
        tp=int(np.sum(labels & predictions)),
        fp=int(np.sum(~labels & predictions)),
        tn=int(np.sum(~labels & ~predictions)),
        fn=int(np.sum(labels & ~predictions)),
    )


def sum_counts(counts: Iterable[OutlierCounts]) -> OutlierCounts:
    total = OutlierCounts()
    for item in counts:
        total = total + item
    return total


def outlier_scores(counts: OutlierCounts) -> OutlierScores:
    return OutlierScores(
        f1=_ratio(counts.tp, counts.tp + (counts.fn + counts.fp) / 2),
        far=100.0 * _ratio(counts.fp, counts.fp + counts.tn),
        mar=100.0 * _ratio(counts.fn, counts.fn + counts.tp),
    )


@dataclass(frozen=True)
class NabProfile:
    name: str
    a_tp: float
    a_fp: float
    a_fn: float


NAB_STANDARD = NabProfile("standard", a_tp=1.0, a_fp=-0.11, a_fn=-1.0)
NAB_LOW_FP = NabProfile("low_fp", a_tp=1.0, a_fp=-0.22, a_fn=-1.0)
NAB_LOW_FN = NabProfile("low_fn", a_tp=1.0, a_fp=-0.11, a_fn=-2.0)
NAB_PROFILES = (NAB_STANDARD, NAB_LOW_FP, NAB_LOW_FN)


@dataclass(frozen=True)
class NabTally:
    """One file's (or a sum of files') raw NAB score and the null and perfect detectors' scores."""

    score: float = 0.0
    null: float = 0.0
    perfect: float = 0.0

    def __add__(self, other: NabTally) -> NabTally:
        return NabTally(
            self.score + other.score, self.null + other.null, self.perfect + other.perfect
        )

    @property
    def normalised(self) -> float:
        """100 * (score - null) / (perfect - null): 0 for the null detector, 100 for the perfect."""
        return 100.0 * _ratio(self.score - self.null, self.perfect - self.null)


@dataclass(frozen=True)
class ChangepointWindow:
    """Detections at `start <= t <= end` belong to the changepoint whose window this is."""

    start: float
    end: float

    def holds(self, t: float) -> bool:
        return self.start <= t <= self.end


def predicted_changepoints(predictions: BoolArray) -> BoolArray:
    """Rising and falling edges; the first row is an edge when it is predicted 1."""
    predictions = np.asarray(predictions, dtype=np.bool_)
    edges = np.empty_like(predictions)
    if len(predictions):
        edges[0] = predictions[0]
        edges[1:] = predictions[1:] != predictions[:-1]
    return edges


def changepoint_windows(
    changepoint_times: FloatArray, window_s: float = NAB_WINDOW_S
) -> list[ChangepointWindow]:
    """[c, c + window_s] per true changepoint; an overlapping one starts at the previous end."""
    starts = np.sort(np.asarray(changepoint_times, dtype=np.float64))
    windows: list[ChangepointWindow] = []
    for start in starts:
        end = float(start) + window_s
        if windows and windows[-1].end >= start:
            windows.append(ChangepointWindow(windows[-1].end, end))
        else:
            windows.append(ChangepointWindow(float(start), end))
    return windows


def true_positive_weight(
    detected_at: float, window: ChangepointWindow, profile: NabProfile
) -> float:
    """A_tp at the window's start falling along a tanh curve to A_fp at its end (SKAB's)."""
    position = (detected_at - window.start) / (window.end - window.start)
    step = min(int(position * WEIGHT_STEPS), WEIGHT_STEPS - 1)
    x = -math.pi / 2 + step * math.pi / (WEIGHT_STEPS - 1)
    half_span = (profile.a_tp - profile.a_fp) / 2
    return half_span * (1.0 - math.tanh(x) / math.tanh(math.pi / 2)) + profile.a_fp


def nab_tally(
    times: FloatArray,
    true_changepoints: BoolArray,
    predictions: BoolArray,
    profile: NabProfile,
    window_s: float = NAB_WINDOW_S,
) -> NabTally:
    """One file's raw NAB score under `profile`, with its null and perfect scores."""
    times = np.asarray(times, dtype=np.float64)
    true_changepoints, predictions = _same_length(true_changepoints, predictions)
    if len(times) != len(predictions):
        raise ValueError(f"{len(times)} times for {len(predictions)} predictions")
    windows = changepoint_windows(times[true_changepoints], window_s)
    detections = [float(t) for t in np.sort(times[predicted_changepoints(predictions)])]
    score = 0.0
    missed = 0
    for window in windows:
        first = next((t for t in detections if window.holds(t)), None)
        if first is None:
            missed += 1
        else:
            score += true_positive_weight(first, window, profile)
    false_positives = sum(not any(w.holds(t) for w in windows) for t in detections)
    score += profile.a_fp * false_positives + profile.a_fn * missed
    return NabTally(
        score=score, null=profile.a_fn * len(windows), perfect=profile.a_tp * len(windows)
    )


def _same_length(first: BoolArray, second: BoolArray) -> tuple[BoolArray, BoolArray]:
    first = np.asarray(first, dtype=np.bool_)
    second = np.asarray(second, dtype=np.bool_)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"need two 1-d series of one length, got {first.shape}, {second.shape}")
    return first, second


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


@dataclass(frozen=True)
class PublishedResult:
    """A row of SKAB's published leaderboard (all 34 files); None where none was published."""

    detector: str
    f1: float | None
    far: float | None
    mar: float | None
    nab_standard: float | None


PUBLISHED_SKAB_RESULTS = (
    PublishedResult("Conv-AE", 0.78, 13.55, 28.02, 23.61),
    PublishedResult("MSET", 0.78, 39.73, 14.13, None),
    PublishedResult("PCA T-squared+Q", 0.76, 26.62, 24.92, 25.35),
    PublishedResult("LSTM-AE", 0.74, 29.96, 25.92, None),
    PublishedResult("Isolation forest", 0.29, 2.56, 82.89, 26.16),
    PublishedResult("MSCRED", None, None, None, 32.42),
)
"""From ../shared/data/README.md. These detectors look up to about a minute ahead (not causal)."""
