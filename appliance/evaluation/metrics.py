"""SKAB leaderboard metrics (pure): outlier counts, F1/FAR/MAR, and NAB changepoint scores.

The protocol is SKAB's "Proposed Leaderboard" (see ../shared/data/README.md): each file is split
into a training part (the first 400 rows) and a test part; only test parts are scored.

Outlier problem. Point-wise 0/1 predictions against the `anomaly` labels; TP/FP/TN/FN are summed
over all files before the ratios are taken:

    F1 = TP / (TP + (FN + FP) / 2),  FAR = 100 * FP / (FP + TN),  MAR = 100 * FN / (FN + TP)

A ratio whose denominator is zero is NaN (undefined), not 0.

Changepoint problem, NAB scoring (Lavin & Ahmad, "Evaluating Real-time Anomaly Detection
Algorithms - the Numenta Anomaly Benchmark", 2015, and NAB's sweeper.py). SKAB's own code (the
`tsad` package, the SKAB repository's evaluating.py) could not be consulted here, so these are the
choices made, each from NAB's definition or the SKAB README:

- Predicted changepoints are the rising and the falling edges of the 0/1 prediction series: a
  row whose prediction differs from the previous row's. The first test row counts as an edge if
  it is predicted 1 (as SKAB's notebooks do: `cp = abs(pred.diff()); cp[0] = pred[0]`).
- True changepoints are the rows of the test part whose `changepoint` label is 1.
- Each true changepoint at time c opens a window [c, c + W] in time (W = 60 s; both ends
  included, like a pandas label slice). A window that would reach the next true changepoint is
  cut just before it, so windows never overlap and every detection belongs to at most one.
  Windows are in time, not rows, because SKAB rows are not evenly spaced (gaps up to 76 s).
- Only the first detection inside a window counts, as a true positive weighted by NAB's scaled
  sigmoid of its relative position y = (t - c) / W - 1 (y = -1 at the window's start, 0 at its
  nominal end, also in a cut window):

      sigma(y) = 2 / (1 + exp(5 y)) - 1,    score = A_tp * sigma(y) / sigma(-1)

  Dividing by sigma(-1) (NAB's maxTP) makes a detection at the changepoint itself worth exactly
  A_tp, so the perfect detector scores 100. Later detections in the same window count for
  nothing, neither reward nor penalty.
- A detection outside every window is a false positive and adds A_fp (negative). NAB also
  discounts a false positive right after a window by the sigmoid; the SKAB README prescribes a
  plain A_fp per detection outside the windows, which is what is done here.
- A window without a detection adds A_fn (negative).
- Profiles (A_tp, A_fp, A_fn): Standard (1, -0.11, -1), LowFP (1, -0.22, -1), LowFN (1, -0.11, -2).
- Normalisation, as SKAB sums over files: with S the sum of the files' raw scores, S_null the sum
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

SIGMOID_STEEPNESS = 5.0
"""NAB's scaled sigmoid: sigma(y) = 2 / (1 + exp(5 y)) - 1."""


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
    """Detections at `start <= t <= end` (t < end when `cut`) belong to the changepoint at start."""

    start: float
    end: float
    cut: bool


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
    """[c, c + window_s] per true changepoint, cut before the next changepoint if it overlaps."""
    starts = np.sort(np.asarray(changepoint_times, dtype=np.float64))
    windows = []
    for index, start in enumerate(starts):
        end = float(start) + window_s
        next_start = float(starts[index + 1]) if index + 1 < len(starts) else math.inf
        cut = next_start <= end
        windows.append(ChangepointWindow(float(start), min(end, next_start), cut))
    return windows


def scaled_sigmoid(y: float) -> float:
    """NAB's 2 / (1 + e^(5y)) - 1: about 0.987 at y = -1, 0 at y = 0, negative after."""
    return 2.0 / (1.0 + math.exp(SIGMOID_STEEPNESS * y)) - 1.0


def true_positive_weight(delay_s: float, window_s: float, profile: NabProfile) -> float:
    """A_tp scaled by the sigmoid of the position in the window; A_tp at the window's start."""
    y = delay_s / window_s - 1.0
    return profile.a_tp * scaled_sigmoid(y) / scaled_sigmoid(-1.0)


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
    detection_times = times[predicted_changepoints(predictions)]
    score = 0.0
    hit = [False] * len(windows)
    for detected_at in detection_times:
        index = _window_holding(windows, float(detected_at))
        if index is None:
            score += profile.a_fp
        elif not hit[index]:
            hit[index] = True
            delay = float(detected_at) - windows[index].start
            score += true_positive_weight(delay, window_s, profile)
    score += profile.a_fn * hit.count(False)
    return NabTally(
        score=score, null=profile.a_fn * len(windows), perfect=profile.a_tp * len(windows)
    )


def _window_holding(windows: list[ChangepointWindow], t: float) -> int | None:
    for index, window in enumerate(windows):
        inside_end = t < window.end if window.cut else t <= window.end
        if window.start <= t and inside_end:
            return index
    return None


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
