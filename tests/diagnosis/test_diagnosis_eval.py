"""The evaluation's diagnosis column on the CWRU recordings (read in place from shared data)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from evaluation.data_paths import shared_directory

from appliance.diagnosis import BEARING_VERDICTS
from appliance.evaluation.cwru import load_recording, split_recording
from appliance.evaluation.diagnosis_eval import (
    DiagnosisRun,
    diagnose_recording,
    format_diagnosis_table,
    manifest_speeds,
    run_diagnosis_eval,
)
from appliance.evaluation.skab import EvaluationError

WINDOW_S, STRIDE_S, RATE = 0.5, 0.25, 12_000.0
FAULTS = {
    "12k_Drive_End_IR007_0_105_DE": "inner_race",
    "12k_Drive_End_OR007@6_0_130_DE": "outer_race",
}
HEALTHY = "normal_0_97_DE_part1"


def write_predictions(path: Path, seconds: float, anomaly: int = 0) -> None:
    """A <name>.pred.csv as `appliance eval vibration` writes it, one row per window."""
    count = int((seconds - WINDOW_S) / STRIDE_S) + 1
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["window_end", "score", "threshold", "anomaly"])
        for index in range(count):
            writer.writerow([repr(WINDOW_S + index * STRIDE_S), "1.0", "2.0", anomaly])


def diagnosis_column(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == ["window_end", "score", "threshold", "anomaly", "diagnosis"]
        return [row["diagnosis"] for row in reader]


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_each_race_fault_is_named_by_most_of_its_windows(name: str, tmp_path: Path) -> None:
    directory = shared_directory("cwru")
    recording = load_recording(directory / f"{name}.npy", RATE)
    prediction = tmp_path / f"{name}.pred.csv"
    write_predictions(prediction, len(recording.samples) / RATE, anomaly=1)
    run = DiagnosisRun(WINDOW_S, speeds_rpm=manifest_speeds(directory))
    result = diagnose_recording(recording, prediction, run)
    column = diagnosis_column(prediction)
    assert column == list(result.verdicts)
    assert result.share(FAULTS[name]) > 0.5  # type: ignore[arg-type]
    assert "manifest" in result.speed


def test_healthy_data_gets_no_bearing_verdict_at_an_estimated_speed(tmp_path: Path) -> None:
    recording = load_recording(shared_directory("cwru") / f"{HEALTHY}.npy", RATE)
    prediction = tmp_path / f"{HEALTHY}.pred.csv"
    write_predictions(prediction, len(recording.samples) / RATE)
    result = diagnose_recording(recording, prediction, DiagnosisRun(WINDOW_S))
    assert not BEARING_VERDICTS.intersection(result.verdicts)
    assert result.speed.startswith("estimated")


def test_the_cli_step_diagnoses_test_and_held_out_recordings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = shared_directory("cwru")
    healthy = directory / f"{HEALTHY}.npy"
    outer = directory / "12k_Drive_End_OR007@6_0_130_DE.npy"
    tail = split_recording(load_recording(healthy, RATE), 0.7)[1]
    write_predictions(tmp_path / f"{outer.stem}.pred.csv", 10.0)
    write_predictions(tmp_path / f"{tail.name}.pred.csv", len(tail.samples) / RATE)
    status = run_diagnosis_eval(
        [healthy], [outer], tmp_path, DiagnosisRun(WINDOW_S), rate=RATE, holdout_fraction=0.3
    )
    table = capsys.readouterr().out
    assert status == 0
    assert f"| {outer.stem} | 1796 rpm (manifest) |" in table
    assert f"| {tail.name} | estimated" in table
    assert diagnosis_column(tmp_path / f"{tail.name}.pred.csv")


def test_a_prediction_file_without_its_columns_is_refused(tmp_path: Path) -> None:
    recording = load_recording(shared_directory("cwru") / f"{HEALTHY}.npy", RATE)
    prediction = tmp_path / "bad.pred.csv"
    prediction.write_text("time,score\n0.5,1\n")
    with pytest.raises(EvaluationError, match="needs the columns"):
        diagnose_recording(recording, prediction, DiagnosisRun(WINDOW_S))


def test_the_table_lists_only_the_verdicts_that_occur() -> None:
    from appliance.evaluation.diagnosis_eval import RecordingDiagnoses

    table = format_diagnosis_table(
        [RecordingDiagnoses("a", "1797 rpm", ("none", "outer_race", "outer_race", "none"))]
    )
    assert table.splitlines()[0] == "| recording | shaft speed | windows | none | outer_race |"
    assert table.splitlines()[2] == "| a | 1797 rpm | 4 | 50 % | 50 % |"
