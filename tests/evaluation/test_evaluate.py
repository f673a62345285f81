"""Evaluation runs end to end: SKAB files and vibration recordings through a streaming detector."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from appliance.evaluation import (
    SkabSummary,
    evaluate_skab,
    evaluate_vibration,
    run_skab_eval,
    run_vibration_eval,
)
from appliance.evaluation.cwru import (
    load_recording,
    recording_features,
    split_recording,
    vibration_settings,
)
from appliance.evaluation.metrics import NAB_PROFILES, OutlierCounts, outlier_counts
from appliance.evaluation.skab import load_skab_csv
from appliance.records import FloatArray

from .data_paths import shared_directory
from .reference_detector import ZScoreDetector
from .skab_files import skab_lines, write_text

TRAIN_ROWS = 400
PRED_HEADER = ["datetime", "score", "threshold", "anomaly"]


class AlwaysAlarm:
    def __init__(self, feature_names: Sequence[str]) -> None:
        pass

    def learn(self, rows: FloatArray) -> None:
        pass

    def step(self, row: FloatArray, t: float) -> tuple[float, float, bool]:
        return 1.0, 0.0, True


class RecordingDetector:
    """Keeps what the evaluation handed it; alarms when Pressure exceeds 3."""

    def __init__(self, feature_names: Sequence[str]) -> None:
        self.feature_names = tuple(feature_names)
        self.learned: FloatArray | None = None
        self.stepped: list[tuple[FloatArray, float]] = []

    def learn(self, rows: FloatArray) -> None:
        self.learned = rows

    def step(self, row: FloatArray, t: float) -> tuple[float, float, bool]:
        self.stepped.append((row, t))
        return float(row[0]), 3.0, bool(row[0] > 3.0)


def read_predictions(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == PRED_HEADER
        return list(reader)


@pytest.fixture(scope="module")
def valve1_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, SkabSummary]:
    directory = shared_directory("skab", "valve1")
    out = tmp_path_factory.mktemp("valve1_out")
    settings = {"detector": "zscore", "margin": 1.0}
    summary = evaluate_skab(directory, ZScoreDetector, out, detector_settings=settings)
    return directory, out, summary


# SKAB, real data


def test_valve1_writes_predictions_and_a_plot_per_file(
    valve1_run: tuple[Path, Path, SkabSummary],
) -> None:
    directory, out, summary = valve1_run

    assert len(summary.files) == 16 and not summary.skipped
    for number in range(16):
        recording = load_skab_csv(directory / f"{number}.csv")
        rows = read_predictions(out / f"{number}.pred.csv")
        assert [row["datetime"] for row in rows] == list(recording.datetimes[TRAIN_ROWS:])
        predicted = np.array([row["anomaly"] == "1" for row in rows])
        assert {row["anomaly"] for row in rows} <= {"0", "1"}
        # The counts reported for the file are those of the written predictions.
        result = next(r for r in summary.files if r.file == f"{number}.csv")
        assert result.counts == outlier_counts(recording.anomaly[TRAIN_ROWS:], predicted)
        assert result.counts.total == recording.rows - TRAIN_ROWS
        assert (out / f"{number}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_valve1_summary_json_adds_up(valve1_run: tuple[Path, Path, SkabSummary]) -> None:
    directory, out, _ = valve1_run
    document = json.loads((out / "summary.json").read_text())

    test_rows = sum(load_skab_csv(path).rows - TRAIN_ROWS for path in directory.glob("*.csv"))
    totals = document["totals"]
    assert totals["files"] == 16
    assert totals["test_rows"] == test_rows
    assert totals["tp"] + totals["fp"] + totals["tn"] + totals["fn"] == test_rows
    for key in ("tp", "fp", "tn", "fn"):
        assert totals[key] == sum(item[key] for item in document["files"])
    metrics = document["metrics"]
    assert 0.0 <= metrics["f1"] <= 1.0
    assert 0.0 <= metrics["far_percent"] <= 100.0
    assert 0.0 <= metrics["mar_percent"] <= 100.0
    for profile in NAB_PROFILES:
        assert metrics[f"nab_{profile.name}"] <= 100.0
    assert document["detector"] == {"detector": "zscore", "margin": 1.0}
    assert document["protocol"] == {"train_rows": 400, "nab_window_s": 60.0}
    assert totals["changepoints"] == 63  # 15 files with 4 true changepoints, one with 3


def test_always_alarming_detector_has_far_100_and_mar_0(skab_valve1: Path, tmp_path: Path) -> None:
    summary = evaluate_skab(skab_valve1, AlwaysAlarm, tmp_path, plots=False)

    positives = sum(
        int(load_skab_csv(path).anomaly[TRAIN_ROWS:].sum()) for path in skab_valve1.glob("*.csv")
    )
    negatives = summary.totals.total - positives
    assert summary.totals == OutlierCounts(tp=positives, fp=negatives, tn=0, fn=0)
    assert summary.scores.far == 100.0 and summary.scores.mar == 0.0
    assert summary.scores.f1 == pytest.approx(positives / (positives + negatives / 2))
    # One rising edge per file at its first test row, before every window: all windows missed.
    standard = summary.nab["standard"]
    assert standard == pytest.approx(100 * (16 * -0.11) / (63 + 63))


# SKAB, the seam and the files around it


def test_detector_learns_the_first_400_rows_then_steps_through_the_rest_in_order(
    tmp_path: Path,
) -> None:
    path = write_text(tmp_path / "in" / "a.csv", skab_lines(410, anomalous=range(405, 408)))
    detectors: list[RecordingDetector] = []

    def make(names: Sequence[str]) -> RecordingDetector:
        detectors.append(RecordingDetector(names))
        return detectors[-1]

    summary = evaluate_skab(tmp_path / "in", make, tmp_path / "out", plots=False)

    recording = load_skab_csv(path)
    (detector,) = detectors
    assert detector.feature_names == ("Pressure", "Temperature")
    assert detector.learned is not None
    assert np.array_equal(detector.learned, recording.features[:TRAIN_ROWS])
    assert [t for _, t in detector.stepped] == list(recording.times[TRAIN_ROWS:])
    for index, (row, _) in enumerate(detector.stepped):
        assert np.array_equal(row, recording.features[TRAIN_ROWS + index])
        assert not row.flags.writeable
    assert summary.totals == OutlierCounts(tp=3, fp=0, tn=7, fn=0)


def test_bad_and_short_files_are_skipped_and_reported(tmp_path: Path) -> None:
    directory = tmp_path / "in"
    write_text(directory / "good.csv", skab_lines(420, anomalous=range(410, 415)))
    write_text(directory / "short.csv", skab_lines(400))
    broken = skab_lines(420).replace(";1.03;", ";oops;", 1)
    write_text(directory / "broken.csv", broken)

    summary = evaluate_skab(directory, ZScoreDetector, tmp_path / "out", plots=False)

    assert [result.file for result in summary.files] == ["good.csv"]
    reasons = {item.file: item.reason for item in summary.skipped}
    assert set(reasons) == {"broken.csv", "short.csv"}
    assert "line 5: Pressure: not a number: 'oops'" in reasons["broken.csv"]
    assert "400 rows, none left after the 400 training rows" in reasons["short.csv"]
    document = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [item["file"] for item in document["skipped"]] == ["broken.csv", "short.csv"]
    assert not (tmp_path / "out" / "broken.pred.csv").exists()


def test_anomaly_free_file_counts_only_false_alarms_and_quiet_rows(tmp_path: Path) -> None:
    unlabelled = "\n".join(";".join(line.split(";")[:3]) for line in skab_lines(410).splitlines())
    write_text(tmp_path / "in" / "free.csv", unlabelled + "\n")

    summary = evaluate_skab(tmp_path / "in", AlwaysAlarm, tmp_path / "out", plots=False)

    (result,) = summary.files
    assert not result.has_labels and result.changepoints == 0
    assert result.counts == OutlierCounts(tp=0, fp=10, tn=0, fn=0)
    assert result.nab["standard"].score == pytest.approx(-0.11)


def test_output_inside_the_input_directory_is_not_read_back(tmp_path: Path) -> None:
    directory = tmp_path / "in"
    write_text(directory / "valve" / "a.csv", skab_lines(410))

    for _ in range(2):
        summary = evaluate_skab(directory, ZScoreDetector, directory / "out", plots=False)

    assert [result.file for result in summary.files] == ["valve/a.csv"]
    assert (directory / "out" / "valve" / "a.pred.csv").is_file()


def test_run_skab_eval_prints_the_table_and_returns_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_text(tmp_path / "in" / "a.csv", skab_lines(420, range(410, 415), changepoints=(410,)))

    status = run_skab_eval(tmp_path / "in", tmp_path / "out", ZScoreDetector, plots=False)

    printed = capsys.readouterr().out
    assert status == 0
    assert "this run (causal)" in printed
    assert "Conv-AE" in printed and "13.55" in printed


def test_run_skab_eval_reports_an_empty_directory_and_returns_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()

    status = run_skab_eval(tmp_path / "in", tmp_path / "out", ZScoreDetector)

    assert status == 1
    assert "no .csv files" in capsys.readouterr().err


# Vibration


def test_vibration_eval_on_cwru_writes_predictions_and_alarmed_fractions(
    cwru_dir: Path, tmp_path: Path
) -> None:
    healthy = load_recording(cwru_dir / "normal_0_97_DE_part1.npy")
    train, held_back = split_recording(healthy, 0.5)
    faults = [load_recording(path) for path in sorted(cwru_dir.glob("12k_*.npy"))]
    settings = vibration_settings(window_s=0.5, stride_s=0.25)

    summary = evaluate_vibration(
        [train], [*faults, held_back], ZScoreDetector, tmp_path, settings=settings
    )

    assert [result.name for result in summary.recordings] == [
        *(fault.name for fault in faults),
        "normal_0_97_DE_part1_tail",
    ]
    assert summary.train_windows == len(recording_features(train, settings).features)
    document = json.loads((tmp_path / "summary.json").read_text())
    for recording, result, item in zip(
        [*faults, held_back], summary.recordings, document["recordings"], strict=True
    ):
        series = recording_features(recording, settings)
        with (tmp_path / f"{recording.name}.pred.csv").open(newline="") as stream:
            rows = list(csv.DictReader(stream))
        assert list(rows[0]) == ["window_end", "score", "threshold", "anomaly"]
        assert [float(row["window_end"]) for row in rows] == series.window_ends.tolist()
        alarmed = sum(row["anomaly"] == "1" for row in rows)
        assert (result.windows, result.alarmed) == (len(series.features), alarmed)
        assert item["alarmed_fraction"] == pytest.approx(alarmed / len(rows))
        assert (tmp_path / f"{recording.name}.png").is_file()


def test_run_vibration_eval_holds_back_healthy_data_and_prints_fractions(
    cwru_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run_vibration_eval(
        [cwru_dir / "normal_0_97_DE_part1.npy"],
        [cwru_dir / "12k_Drive_End_B007_0_118_DE.npy"],
        tmp_path,
        ZScoreDetector,
        holdout_fraction=0.25,
        plots=False,
    )

    printed = capsys.readouterr().out
    assert status == 0
    assert "normal_0_97_DE_part1_head" in printed  # trained on the first 75 %
    assert "normal_0_97_DE_part1_tail" in printed and "12k_Drive_End_B007_0_118_DE" in printed
    assert (tmp_path / "normal_0_97_DE_part1_tail.pred.csv").is_file()


def test_run_vibration_eval_refuses_a_bad_holdout_fraction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run_vibration_eval([], [], tmp_path, ZScoreDetector, holdout_fraction=1.0)

    assert status == 1
    assert "holdout fraction" in capsys.readouterr().err
