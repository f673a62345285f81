"""`appliance eval` end to end on real public data (read in place from ../shared/data)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from appliance.cli import main

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_eval_skab_writes_predictions_summary_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "skab" / "valve1"
    source.mkdir(parents=True)
    for name in ("0.csv", "3.csv"):  # two files, linked (never copied) from shared/data
        (source / name).symlink_to(DATA / "skab" / "valve1" / name)
    out = tmp_path / "out"

    status = main(["eval", "skab", str(tmp_path / "skab"), "--out", str(out), "--epochs", "20"])

    assert status == 0
    report = capsys.readouterr().out
    assert "this run (causal)" in report and "Conv-AE" in report
    test_row_counts: list[int] = []
    for name in ("0", "3"):
        with (out / "valve1" / f"{name}.pred.csv").open() as f:
            rows = list(csv.DictReader(f))
        with (source / f"{name}.csv").open() as f:
            test_rows = sum(1 for _ in f) - 1 - 400
        assert len(rows) == test_rows
        test_row_counts.append(test_rows)
        assert set(rows[0]) == {"datetime", "score", "threshold", "anomaly"}
        assert {r["anomaly"] for r in rows} <= {"0", "1"}
        assert (out / "valve1" / f"{name}.png").stat().st_size > 0
    totals = json.loads((out / "summary.json").read_text())["totals"]
    assert totals["files"] == 2
    assert totals["tp"] + totals["fp"] + totals["tn"] + totals["fn"] == sum(test_row_counts)


def test_eval_vibration_flags_bearing_faults_and_not_held_back_healthy_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cwru = DATA / "cwru"
    faults = ["12k_Drive_End_IR007_0_105_DE.npy", "12k_Drive_End_OR007@6_0_130_DE.npy"]
    argv = ["eval", "vibration", "--rate", "12000", "--holdout", "0.3", "--no-plots"]
    argv += ["--train", str(cwru / "normal_0_97_DE_part1.npy")]
    argv += ["--test", *(str(cwru / f) for f in faults), "--out", str(tmp_path)]

    assert main(argv) == 0

    fractions = {}
    for line in capsys.readouterr().out.splitlines():
        parts = line.split()
        if parts and parts[-1].endswith("%"):
            fractions[parts[0]] = float(parts[-1].rstrip("%"))
    assert fractions["12k_Drive_End_IR007_0_105_DE"] > 90
    assert fractions["12k_Drive_End_OR007@6_0_130_DE"] > 90
    assert fractions["normal_0_97_DE_part1_tail"] < 10


def test_eval_skab_float_precision_scores_the_float_network_of_the_same_training(
    tmp_path: Path,
) -> None:
    source = tmp_path / "skab"
    source.mkdir()
    (source / "3.csv").symlink_to(DATA / "skab" / "valve1" / "3.csv")
    scores = {}
    for precision in ("int8", "float"):
        out = tmp_path / precision
        argv = ["eval", "skab", str(source), "--out", str(out), "--epochs", "20", "--no-plots"]
        assert main([*argv, "--precision", precision]) == 0
        detector = json.loads((out / "summary.json").read_text())["detector"]
        assert detector["detector"].startswith(precision)
        with (out / "3.pred.csv").open() as f:
            scores[precision] = np.array([float(r["score"]) for r in csv.DictReader(f)])

    # The int8 model is the float network quantised: close, row by row, but not the same numbers.
    assert not np.array_equal(scores["int8"], scores["float"])
    relative = np.abs(scores["int8"] - scores["float"]) / scores["float"]
    assert np.median(relative) < 0.2


def test_eval_skab_clear_after_sets_how_many_quiet_windows_clear_an_alarm(tmp_path: Path) -> None:
    source = tmp_path / "skab"
    source.mkdir()
    (source / "3.csv").symlink_to(DATA / "skab" / "valve1" / "3.csv")
    out = tmp_path / "out"
    argv = ["eval", "skab", str(source), "--out", str(out), "--epochs", "20", "--no-plots"]

    assert main([*argv, "--clear-after", "3"]) == 0

    assert json.loads((out / "summary.json").read_text())["detector"]["alarm"]["off_count"] == 3
    with (out / "3.pred.csv").open() as f:
        rows = [
            (float(r["score"]), float(r["threshold"]), r["anomaly"] == "1")
            for r in csv.DictReader(f)
        ]
    quiet_runs_at_clearing = []
    quiet = 0
    for i, (score, threshold, anomalous) in enumerate(rows):
        quiet = quiet + 1 if score < 0.9 * threshold else 0
        if i and rows[i - 1][2] and not anomalous:
            quiet_runs_at_clearing.append(quiet)
    assert quiet_runs_at_clearing, "no alarm cleared in valve1/3"
    assert set(quiet_runs_at_clearing) == {3}
