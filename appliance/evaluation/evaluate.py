"""Evaluation runs: SKAB files and raw vibration recordings through a streaming detector.

SKAB (the leaderboard protocol, see metrics.py): for every SKAB CSV under a directory, a fresh
detector learns from the file's first `train_rows` rows only, then judges the remaining rows one
at a time (see detector.py). A file that cannot be read, or has no row after the training part,
is skipped and reported; the others are still evaluated. An exception raised by the detector
itself is not caught: a detector bug must stop the run, not pass for a bad input file.

Vibration: healthy recordings go through the real feature path (cwru.py); their vectors, pooled,
are what every detector learns from. Each test recording gets a fresh detector (so no adaptive
state carries over from one recording to the next) and its vectors are judged in order. With a
holdout fraction, the tail of each healthy recording is kept out of training and scored as a test
recording of its own (named <name>_tail), which is how "quiet on held-back healthy data" is
measured.

`run_skab_eval` and `run_vibration_eval` are the command-line entry points: they print the
report and return the process exit status (0 when at least one input was evaluated, 1 when none
was or the evaluation could not run; the reason goes to stderr).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from appliance.errors import ApplianceError
from appliance.evaluation.cwru import (
    CWRU_RATE_HZ,
    FeatureSeries,
    Recording,
    load_recording,
    recording_features,
    split_recording,
    vibration_settings,
)
from appliance.evaluation.detector import DetectorFactory, run_detector
from appliance.evaluation.metrics import NAB_PROFILES, NAB_WINDOW_S, nab_tally, outlier_counts
from appliance.evaluation.report import (
    PLOT_SUFFIX,
    PREDICTION_SUFFIX,
    SUMMARY_FILE,
    SkabFileResult,
    SkabSummary,
    SkippedFile,
    VibrationRecordingResult,
    VibrationSummary,
    format_skab_report,
    format_vibration_report,
    plot_verdicts,
    require_matplotlib,
    skab_output_path,
    write_skab_predictions,
    write_skab_summary,
    write_vibration_predictions,
    write_vibration_summary,
)
from appliance.evaluation.skab import (
    EvaluationError,
    SkabFormatError,
    SkabRecording,
    find_skab_csvs,
    load_skab_csv,
)
from appliance.features import FeatureSettings

SKAB_TRAIN_ROWS = 400
"""SKAB leaderboard: the first 400 rows of every file are its (anomaly-free) training part."""

DEFAULT_VIBRATION_WINDOW_S = 0.5
DEFAULT_VIBRATION_STRIDE_S = 0.25


def evaluate_skab(
    directory: Path,
    make_detector: DetectorFactory,
    out: Path,
    *,
    train_rows: int = SKAB_TRAIN_ROWS,
    nab_window_s: float = NAB_WINDOW_S,
    detector_settings: Mapping[str, Any] | None = None,
    plots: bool = True,
) -> SkabSummary:
    """Evaluate every SKAB CSV under `directory`; write predictions, plots and summary.json."""
    if train_rows < 1:
        raise ValueError(f"train_rows must be >= 1, got {train_rows}")
    paths = find_skab_csvs(directory, exclude=out)
    if not paths:
        raise EvaluationError(f"{directory}: no .csv files")
    if plots:
        require_matplotlib()
    results: list[SkabFileResult] = []
    skipped: list[SkippedFile] = []
    for path in paths:
        relative = path.relative_to(directory)
        try:
            recording = load_skab_csv(path)
            _require_test_rows(recording, train_rows)
        except SkabFormatError as exc:
            skipped.append(SkippedFile(relative.as_posix(), str(exc)))
            continue
        results.append(
            evaluate_skab_file(
                recording, relative, make_detector, out, train_rows, nab_window_s, plots
            )
        )
    summary = SkabSummary(
        directory=str(directory),
        train_rows=train_rows,
        nab_window_s=nab_window_s,
        files=tuple(results),
        skipped=tuple(skipped),
        detector_settings=dict(detector_settings or {}),
    )
    write_skab_summary(out / SUMMARY_FILE, summary)
    return summary


def evaluate_skab_file(
    recording: SkabRecording,
    relative: Path,
    make_detector: DetectorFactory,
    out: Path,
    train_rows: int,
    nab_window_s: float,
    plots: bool,
) -> SkabFileResult:
    """One file: learn from rows[:train_rows], judge the rest, write its outputs, count."""
    test = slice(train_rows, None)
    times = recording.times[test]
    verdicts = run_detector(
        make_detector(recording.feature_names),
        recording.features[:train_rows],
        recording.features[test],
        times,
    )
    labels = recording.anomaly[test]
    changepoints = recording.changepoint[test]
    write_skab_predictions(
        skab_output_path(out, relative, PREDICTION_SUFFIX), recording.datetimes[test], verdicts
    )
    if plots:
        plot_verdicts(
            skab_output_path(out, relative, PLOT_SUFFIX),
            times - times[0],
            verdicts,
            title=relative.as_posix(),
            x_label=f"seconds since {recording.datetimes[train_rows]} (first test row)",
            labels=labels,
        )
    return SkabFileResult(
        file=relative.as_posix(),
        test_rows=len(times),
        has_labels=recording.has_labels,
        changepoints=int(np.sum(changepoints)),
        counts=outlier_counts(labels, verdicts.anomalies),
        nab={
            profile.name: nab_tally(times, changepoints, verdicts.anomalies, profile, nab_window_s)
            for profile in NAB_PROFILES
        },
    )


def run_skab_eval(
    directory: Path,
    out: Path,
    detector_factory: DetectorFactory,
    *,
    detector_settings: Mapping[str, Any] | None = None,
    plots: bool = True,
) -> int:
    """`appliance eval skab DIR --out OUT`: evaluate, print the table, return the exit status."""
    try:
        summary = evaluate_skab(
            directory,
            detector_factory,
            out,
            detector_settings=detector_settings,
            plots=plots,
        )
    except ApplianceError as exc:
        print(f"eval skab: {exc}", file=sys.stderr)
        return 1
    print(format_skab_report(summary))
    return 0 if summary.files else 1


def evaluate_vibration(
    train: Sequence[Recording],
    test: Sequence[Recording],
    make_detector: DetectorFactory,
    out: Path,
    *,
    settings: FeatureSettings,
    detector_settings: Mapping[str, Any] | None = None,
    plots: bool = True,
) -> VibrationSummary:
    """Learn from the healthy `train` recordings' vectors, judge each `test` recording's."""
    if not train or not test:
        raise EvaluationError("need at least one training and one test recording")
    _require_unique_names(test)
    if plots:
        require_matplotlib()
    train_series = [recording_features(recording, settings) for recording in train]
    feature_names = train_series[0].feature_names
    for series in train_series:
        _require_feature_names(series, feature_names)
    train_rows = np.vstack([series.features for series in train_series])
    results: list[VibrationRecordingResult] = []
    skipped: list[SkippedFile] = []
    for recording in test:
        try:
            series = recording_features(recording, settings)
            _require_feature_names(series, feature_names)
        except EvaluationError as exc:
            skipped.append(SkippedFile(recording.name, str(exc)))
            continue
        verdicts = run_detector(
            make_detector(feature_names), train_rows, series.features, series.window_ends
        )
        write_vibration_predictions(
            out / f"{series.name}{PREDICTION_SUFFIX}", series.window_ends, verdicts
        )
        if plots:
            plot_verdicts(
                out / f"{series.name}{PLOT_SUFFIX}",
                series.window_ends,
                verdicts,
                title=series.name,
                x_label="window end, seconds since the recording's first sample",
            )
        results.append(
            VibrationRecordingResult(series.name, len(verdicts), int(np.sum(verdicts.anomalies)))
        )
    summary = VibrationSummary(
        rate=train[0].rate,
        window_s=settings.window_s,
        stride_s=settings.stride_s,
        train=tuple(recording.name for recording in train),
        train_windows=len(train_rows),
        recordings=tuple(results),
        skipped=tuple(skipped),
        detector_settings=dict(detector_settings or {}),
    )
    write_vibration_summary(out / SUMMARY_FILE, summary)
    return summary


def run_vibration_eval(
    train_paths: Sequence[Path],
    test_paths: Sequence[Path],
    out: Path,
    detector_factory: DetectorFactory,
    *,
    rate: float = CWRU_RATE_HZ,
    window_s: float = DEFAULT_VIBRATION_WINDOW_S,
    stride_s: float = DEFAULT_VIBRATION_STRIDE_S,
    holdout_fraction: float = 0.0,
    detector_settings: Mapping[str, Any] | None = None,
    plots: bool = True,
) -> int:
    """`appliance eval vibration --rate HZ --train A.npy... --test B.npy... --out OUT`.

    With 0 < holdout_fraction < 1 the last `holdout_fraction` of each training recording is kept
    out of training and scored as a test recording of its own.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        print(
            f"eval vibration: holdout fraction must be in [0, 1), got {holdout_fraction}",
            file=sys.stderr,
        )
        return 1
    try:
        settings = vibration_settings(window_s, stride_s)
        train = [load_recording(path, rate) for path in train_paths]
        test = [load_recording(path, rate) for path in test_paths]
        if holdout_fraction:
            splits = [split_recording(recording, 1.0 - holdout_fraction) for recording in train]
            train = [head for head, _ in splits]
            test += [tail for _, tail in splits]
        summary = evaluate_vibration(
            train,
            test,
            detector_factory,
            out,
            settings=settings,
            detector_settings=detector_settings,
            plots=plots,
        )
    except ApplianceError as exc:
        print(f"eval vibration: {exc}", file=sys.stderr)
        return 1
    print(format_vibration_report(summary))
    return 0 if summary.recordings else 1


def _require_test_rows(recording: SkabRecording, train_rows: int) -> None:
    if recording.rows <= train_rows:
        raise SkabFormatError(
            f"{recording.path}: {recording.rows} rows, none left after the {train_rows}"
            " training rows"
        )


def _require_feature_names(series: FeatureSeries, expected: tuple[str, ...]) -> None:
    if series.feature_names != expected:
        raise EvaluationError(
            f"{series.name}: features {series.feature_names} differ from the training"
            f" recordings' {expected} (different sample rate?)"
        )


def _require_unique_names(recordings: Sequence[Recording]) -> None:
    names = [recording.name for recording in recordings]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise EvaluationError(f"test recordings share names {duplicates}; outputs would collide")
