"""Evaluation results, and what is written about them: prediction CSVs, summary.json, text tables
and plots.

Files (OUT is the output directory):

- SKAB: OUT/<csv path relative to DIR, .csv replaced by .pred.csv> with the columns datetime
  (as in the input), score, threshold, anomaly (0/1), one line per test row; a PNG of the same
  name with .png; OUT/summary.json.
- Vibration: OUT/<recording name>.pred.csv with window_end (seconds since the recording's first
  sample), score, threshold, anomaly; OUT/<recording name>.png; OUT/summary.json.

Prediction files are comma-separated (not SKAB's ';') and hold floats at full precision (repr),
with inf and nan written as such. In summary.json an undefined ratio (NaN) is null.

Plots use matplotlib's object API on an Agg canvas (no pyplot, no global backend switch); it is
imported only when a plot is drawn, as matplotlib is the optional `eval` extra.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from appliance.evaluation.detector import StreamVerdicts
from appliance.evaluation.metrics import (
    NAB_PROFILES,
    PUBLISHED_SKAB_RESULTS,
    BoolArray,
    NabTally,
    OutlierCounts,
    OutlierScores,
    outlier_scores,
    sum_counts,
)
from appliance.evaluation.skab import EvaluationError
from appliance.records import FloatArray

SUMMARY_FILE = "summary.json"
PREDICTION_SUFFIX = ".pred.csv"
PLOT_SUFFIX = ".png"
PLOT_DPI = 80
PREDICTION_STRIP_HEIGHT = 0.05
"""Predicted anomalies are a red strip along the bottom of the plot, this fraction of its height."""
LOG_AXIS_MIN_RANGE = 100.0
"""Scores spanning more than this ratio (all positive) are drawn on a log axis."""


@dataclass(frozen=True)
class SkippedFile:
    """An input that was not evaluated, and why."""

    file: str
    reason: str


@dataclass(frozen=True)
class SkabFileResult:
    file: str
    """Path of the CSV relative to the evaluated directory (posix)."""
    test_rows: int
    has_labels: bool
    changepoints: int
    """True changepoints in the test part (NAB windows)."""
    counts: OutlierCounts
    nab: Mapping[str, NabTally]
    """Raw NAB tally per profile name."""


@dataclass(frozen=True)
class SkabSummary:
    directory: str
    train_rows: int
    nab_window_s: float
    files: tuple[SkabFileResult, ...]
    skipped: tuple[SkippedFile, ...]
    detector_settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def totals(self) -> OutlierCounts:
        return sum_counts(result.counts for result in self.files)

    @property
    def scores(self) -> OutlierScores:
        return outlier_scores(self.totals)

    @property
    def nab(self) -> dict[str, float]:
        """Normalised NAB score per profile, over all files (SKAB sums before normalising)."""
        scores = {}
        for profile in NAB_PROFILES:
            total = NabTally()
            for result in self.files:
                total = total + result.nab[profile.name]
            scores[profile.name] = total.normalised
        return scores


@dataclass(frozen=True)
class VibrationRecordingResult:
    name: str
    windows: int
    alarmed: int

    @property
    def alarmed_fraction(self) -> float:
        return self.alarmed / self.windows if self.windows else math.nan


@dataclass(frozen=True)
class VibrationSummary:
    rate: float
    window_s: float
    stride_s: float
    train: tuple[str, ...]
    train_windows: int
    recordings: tuple[VibrationRecordingResult, ...]
    skipped: tuple[SkippedFile, ...]
    detector_settings: Mapping[str, Any] = field(default_factory=dict)


# Prediction files


def skab_output_path(out: Path, relative_csv: Path, suffix: str) -> Path:
    """OUT/valve1/0.pred.csv (suffix PREDICTION_SUFFIX) for valve1/0.csv."""
    return out / relative_csv.with_suffix(suffix)


def write_skab_predictions(path: Path, datetimes: Sequence[str], verdicts: StreamVerdicts) -> None:
    if len(datetimes) != len(verdicts):
        raise ValueError(f"{len(datetimes)} datetimes for {len(verdicts)} verdicts")
    _write_predictions(path, "datetime", list(datetimes), verdicts)


def write_vibration_predictions(
    path: Path, window_ends: FloatArray, verdicts: StreamVerdicts
) -> None:
    if len(window_ends) != len(verdicts):
        raise ValueError(f"{len(window_ends)} window ends for {len(verdicts)} verdicts")
    _write_predictions(path, "window_end", [repr(float(t)) for t in window_ends], verdicts)


def _write_predictions(
    path: Path, time_column: str, times: list[str], verdicts: StreamVerdicts
) -> None:
    _make_parent(path)
    try:
        with path.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow([time_column, "score", "threshold", "anomaly"])
            for index, time in enumerate(times):
                writer.writerow(
                    [
                        time,
                        repr(float(verdicts.scores[index])),
                        repr(float(verdicts.thresholds[index])),
                        int(verdicts.anomalies[index]),
                    ]
                )
    except OSError as exc:
        raise EvaluationError(f"{path}: cannot write: {exc}") from exc


# summary.json


def write_skab_summary(path: Path, summary: SkabSummary) -> None:
    _write_json(path, skab_summary_json(summary))


def skab_summary_json(summary: SkabSummary) -> dict[str, Any]:
    totals = summary.totals
    scores = summary.scores
    nab = summary.nab
    return {
        "kind": "skab",
        "directory": summary.directory,
        "protocol": {"train_rows": summary.train_rows, "nab_window_s": summary.nab_window_s},
        "detector": dict(summary.detector_settings),
        "files": [_file_json(result) for result in summary.files],
        "skipped": [{"file": item.file, "reason": item.reason} for item in summary.skipped],
        "totals": {
            "files": len(summary.files),
            "test_rows": totals.total,
            "changepoints": sum(result.changepoints for result in summary.files),
            **_counts_json(totals),
        },
        "metrics": {
            "f1": _finite_or_none(scores.f1),
            "far_percent": _finite_or_none(scores.far),
            "mar_percent": _finite_or_none(scores.mar),
            **{f"nab_{name}": _finite_or_none(value) for name, value in nab.items()},
        },
        "published_all_34_files": [
            {
                "detector": row.detector,
                "f1": row.f1,
                "far_percent": row.far,
                "mar_percent": row.mar,
                "nab_standard": row.nab_standard,
            }
            for row in PUBLISHED_SKAB_RESULTS
        ],
    }


def write_vibration_summary(path: Path, summary: VibrationSummary) -> None:
    _write_json(path, vibration_summary_json(summary))


def vibration_summary_json(summary: VibrationSummary) -> dict[str, Any]:
    return {
        "kind": "vibration",
        "features": {
            "rate_hz": summary.rate,
            "window_s": summary.window_s,
            "stride_s": summary.stride_s,
        },
        "detector": dict(summary.detector_settings),
        "train": {"recordings": list(summary.train), "windows": summary.train_windows},
        "recordings": [
            {
                "name": result.name,
                "windows": result.windows,
                "alarmed": result.alarmed,
                "alarmed_fraction": _finite_or_none(result.alarmed_fraction),
            }
            for result in summary.recordings
        ],
        "skipped": [{"file": item.file, "reason": item.reason} for item in summary.skipped],
    }


def _file_json(result: SkabFileResult) -> dict[str, Any]:
    return {
        "file": result.file,
        "test_rows": result.test_rows,
        "has_labels": result.has_labels,
        "changepoints": result.changepoints,
        **_counts_json(result.counts),
        "nab_raw": {
            name: {"score": tally.score, "null": tally.null, "perfect": tally.perfect}
            for name, tally in result.nab.items()
        },
    }


def _counts_json(counts: OutlierCounts) -> dict[str, int]:
    return {"tp": counts.tp, "fp": counts.fp, "tn": counts.tn, "fn": counts.fn}


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _write_json(path: Path, document: dict[str, Any]) -> None:
    _make_parent(path)
    text = json.dumps(document, indent=2, default=str, allow_nan=False)
    try:
        path.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise EvaluationError(f"{path}: cannot write: {exc}") from exc


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvaluationError(f"{path.parent}: cannot create: {exc}") from exc


# Text tables


def format_skab_report(summary: SkabSummary) -> str:
    """Per-file counts, then this run's totals beside SKAB's published rows."""
    unlabelled = sum(not result.has_labels for result in summary.files)
    width = max([len("file"), *(len(result.file) for result in summary.files)]) + 2
    lines = [
        f"SKAB evaluation of {summary.directory}: {len(summary.files)} files"
        + (
            f" ({unlabelled} without labels, counted as FP/TN; SKAB's leaderboard leaves such"
            " files out)"
            if unlabelled
            else ""
        )
        + f", {summary.totals.total} test rows; the first {summary.train_rows} rows of each file"
        f" train the detector; NAB window {summary.nab_window_s:g} s right of each changepoint",
        "",
        f"{'file':<{width}}{'rows':>7}{'TP':>7}{'FP':>7}{'TN':>7}{'FN':>7}{'changepoints':>14}",
    ]
    for result in summary.files:
        counts = result.counts
        lines.append(
            f"{result.file:<{width}}{result.test_rows:>7}{counts.tp:>7}{counts.fp:>7}"
            f"{counts.tn:>7}{counts.fn:>7}{result.changepoints:>14}"
        )
    for item in summary.skipped:
        lines.append(f"skipped {item.file}: {item.reason}")
    scores = summary.scores
    nab = summary.nab
    lines += [
        "",
        _metrics_header(),
        _metrics_row(
            "this run (causal)",
            scores.f1,
            scores.far,
            scores.mar,
            *(nab[profile.name] for profile in NAB_PROFILES),
        ),
        "published, all 34 SKAB files, detectors looking about a minute ahead:",
    ]
    for row in PUBLISHED_SKAB_RESULTS:
        lines.append(
            _metrics_row(row.detector, row.f1, row.far, row.mar, row.nab_standard, None, None)
        )
    return "\n".join(lines)


def format_vibration_report(summary: VibrationSummary) -> str:
    width = max([len("recording"), *(len(result.name) for result in summary.recordings)]) + 2
    lines = [
        f"vibration evaluation: trained on {', '.join(summary.train)}"
        f" ({summary.train_windows} windows); {summary.rate:g} Hz, window {summary.window_s:g} s,"
        f" stride {summary.stride_s:g} s",
        "",
        f"{'recording':<{width}}{'windows':>9}{'alarmed':>9}{'fraction':>10}",
    ]
    for result in summary.recordings:
        lines.append(
            f"{result.name:<{width}}{result.windows:>9}{result.alarmed:>9}"
            f"{_cell(100.0 * result.alarmed_fraction, '.1f', 9)}%"
        )
    for item in summary.skipped:
        lines.append(f"skipped {item.file}: {item.reason}")
    return "\n".join(lines)


def _metrics_header() -> str:
    return (
        f"{'detector':<28}{'F1':>6}{'FAR %':>8}{'MAR %':>8}"
        f"{'NAB std':>9}{'NAB LowFP':>11}{'NAB LowFN':>11}"
    )


def _metrics_row(
    name: str,
    f1: float | None,
    far: float | None,
    mar: float | None,
    nab_standard: float | None,
    nab_low_fp: float | None,
    nab_low_fn: float | None,
) -> str:
    return (
        f"{name:<28}{_cell(f1, '.2f', 6)}{_cell(far, '.2f', 8)}{_cell(mar, '.2f', 8)}"
        f"{_cell(nab_standard, '.2f', 9)}{_cell(nab_low_fp, '.2f', 11)}"
        f"{_cell(nab_low_fn, '.2f', 11)}"
    )


def _cell(value: float | None, spec: str, width: int) -> str:
    text = "-" if value is None or math.isnan(value) else format(value, spec)
    return f"{text:>{width}}"


# Plots


def require_matplotlib() -> None:
    """Fail early, before any work, when plots are asked for and matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise EvaluationError(
            "plots need matplotlib: install the `eval` extra (pip install 'edge-appliance[eval]')"
            " or turn plots off"
        ) from exc


def plot_verdicts(
    path: Path,
    elapsed_s: FloatArray,
    verdicts: StreamVerdicts,
    title: str,
    x_label: str,
    labels: BoolArray | None = None,
) -> None:
    """Score and threshold over time; labelled anomalies shaded, predicted anomalies marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if labels is not None and np.any(labels):
        axes.fill_between(
            elapsed_s,
            0,
            1,
            where=labels,
            step="mid",
            color="tab:orange",
            alpha=0.25,
            transform=axes.get_xaxis_transform(),
            label="labelled anomaly",
        )
    if np.any(verdicts.anomalies):
        axes.fill_between(
            elapsed_s,
            0,
            PREDICTION_STRIP_HEIGHT,
            where=verdicts.anomalies,
            step="mid",
            color="tab:red",
            transform=axes.get_xaxis_transform(),
            label="predicted anomaly",
        )
    axes.plot(elapsed_s, verdicts.scores, color="tab:blue", linewidth=0.8, label="score")
    axes.plot(elapsed_s, verdicts.thresholds, color="black", linewidth=0.8, label="threshold")
    axes.set_yscale(score_axis_scale(verdicts))
    axes.set_title(title)
    axes.set_xlabel(x_label)
    axes.set_ylabel("score")
    axes.legend(loc="upper left", fontsize="small")
    _make_parent(path)
    try:
        figure.savefig(path, dpi=PLOT_DPI)
    except OSError as exc:
        raise EvaluationError(f"{path}: cannot write: {exc}") from exc


def score_axis_scale(verdicts: StreamVerdicts) -> str:
    """Log when scores span orders of magnitude, so the threshold stays visible beside spikes."""
    values = np.concatenate([verdicts.scores, verdicts.thresholds])
    values = values[np.isfinite(values)]
    if len(values) and values.min() > 0 and values.max() / values.min() > LOG_AXIS_MIN_RANGE:
        return "log"
    return "linear"
