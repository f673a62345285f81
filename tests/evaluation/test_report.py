"""What is written: prediction files, summary.json, the text table and the plots."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from appliance.evaluation.detector import StreamVerdicts
from appliance.evaluation.metrics import NabTally, OutlierCounts
from appliance.evaluation.report import (
    PREDICTION_SUFFIX,
    SkabFileResult,
    SkabSummary,
    VibrationRecordingResult,
    VibrationSummary,
    format_skab_report,
    format_vibration_report,
    plot_verdicts,
    score_axis_scale,
    skab_output_path,
    skab_summary_json,
    vibration_summary_json,
    write_skab_predictions,
    write_vibration_predictions,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def verdicts(scores: list[float], thresholds: list[float], anomalies: list[int]) -> StreamVerdicts:
    return StreamVerdicts(
        np.array(scores), np.array(thresholds), np.array(anomalies, dtype=np.bool_)
    )


def file_result(name: str, counts: OutlierCounts, nab_score: float) -> SkabFileResult:
    tally = NabTally(score=nab_score, null=-1.0, perfect=1.0)
    return SkabFileResult(
        file=name,
        test_rows=counts.total,
        has_labels=True,
        changepoints=1,
        counts=counts,
        nab={"standard": tally, "low_fp": tally, "low_fn": tally},
    )


def test_prediction_path_replaces_csv_by_pred_csv() -> None:
    path = skab_output_path(Path("out"), Path("valve1/0.csv"), PREDICTION_SUFFIX)

    assert path == Path("out/valve1/0.pred.csv")


def test_skab_predictions_round_trip_at_full_precision(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "a.pred.csv"
    written = verdicts([0.1 + 0.2, 7.0], [math.inf, 2.5], [0, 1])

    write_skab_predictions(path, ["2020-03-09 10:00:00", "2020-03-09 10:00:01"], written)

    with path.open(newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows == [
        ["datetime", "score", "threshold", "anomaly"],
        ["2020-03-09 10:00:00", "0.30000000000000004", "inf", "0"],
        ["2020-03-09 10:00:01", "7.0", "2.5", "1"],
    ]


def test_vibration_predictions_have_a_window_end_column(tmp_path: Path) -> None:
    path = tmp_path / "rec.pred.csv"

    write_vibration_predictions(path, np.array([0.5, 0.75]), verdicts([1, 2], [3, 3], [0, 0]))

    assert path.read_text().splitlines() == [
        "window_end,score,threshold,anomaly",
        "0.5,1.0,3.0,0",
        "0.75,2.0,3.0,0",
    ]


def test_predictions_must_match_their_times(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1 datetimes for 2 verdicts"):
        write_skab_predictions(tmp_path / "x.csv", ["t"], verdicts([1, 2], [3, 3], [0, 0]))


def test_summary_totals_and_normalised_nab_come_from_the_files() -> None:
    summary = SkabSummary(
        directory="d",
        train_rows=400,
        nab_window_s=60.0,
        files=(
            file_result("a.csv", OutlierCounts(tp=3, fp=1, tn=5, fn=1), nab_score=1.0),
            file_result("b.csv", OutlierCounts(tp=1, fp=0, tn=9, fn=3), nab_score=-1.0),
        ),
        skipped=(),
        detector_settings={"k": 3.0},
    )

    document = skab_summary_json(summary)

    assert document["totals"] == {
        "files": 2,
        "test_rows": 23,
        "changepoints": 2,
        "tp": 4,
        "fp": 1,
        "tn": 14,
        "fn": 4,
    }
    assert document["metrics"]["f1"] == pytest.approx(4 / (4 + 5 / 2))
    assert document["metrics"]["nab_standard"] == pytest.approx(50.0)
    assert document["detector"] == {"k": 3.0}
    assert document["published_all_34_files"][0]["detector"] == "Conv-AE"


def test_undefined_metrics_are_null_in_json() -> None:
    summary = SkabSummary("d", 400, 60.0, files=(), skipped=())

    metrics = skab_summary_json(summary)["metrics"]

    assert metrics == {
        "f1": None,
        "far_percent": None,
        "mar_percent": None,
        "nab_standard": None,
        "nab_low_fp": None,
        "nab_low_fn": None,
    }
    json.dumps(skab_summary_json(summary), allow_nan=False)


def test_table_puts_this_run_beside_the_published_rows() -> None:
    summary = SkabSummary(
        "valve1",
        400,
        60.0,
        files=(file_result("0.csv", OutlierCounts(tp=3, fp=1, tn=5, fn=1), nab_score=0.0),),
        skipped=(),
    )

    lines = format_skab_report(summary).splitlines()

    run = next(line for line in lines if line.startswith("this run (causal)"))
    assert run.split()[3:] == ["0.75", "16.67", "25.00", "50.00", "50.00", "50.00"]
    conv_ae = next(line for line in lines if line.startswith("Conv-AE"))
    assert conv_ae.split()[1:] == ["0.78", "13.55", "28.02", "23.61", "-", "-"]
    assert any(line.split()[:5] == ["0.csv", "10", "3", "1", "5"] for line in lines)


def test_vibration_summary_reports_the_alarmed_fraction() -> None:
    summary = VibrationSummary(
        rate=12000.0,
        window_s=0.5,
        stride_s=0.25,
        train=("healthy",),
        train_windows=20,
        recordings=(VibrationRecordingResult("fault", windows=40, alarmed=38),),
        skipped=(),
    )

    document = vibration_summary_json(summary)

    assert document["recordings"] == [
        {"name": "fault", "windows": 40, "alarmed": 38, "alarmed_fraction": 0.95}
    ]
    assert "95.0%" in format_vibration_report(summary)


@pytest.mark.parametrize(
    ("scores", "labels"),
    [([1.0, 5.0, 2.0, 1.5], [0, 1, 1, 0]), ([0.01, 50.0, math.inf, 0.02], None)],
    ids=["linear-with-labels", "log-without-labels"],
)
def test_plot_writes_a_png(tmp_path: Path, scores: list[float], labels: list[int] | None) -> None:
    path = tmp_path / "plots" / "a.png"

    plot_verdicts(
        path,
        np.arange(4.0),
        verdicts(scores, [3.0] * 4, [0, 1, 0, 0]),
        title="a",
        x_label="s",
        labels=None if labels is None else np.array(labels, dtype=np.bool_),
    )

    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_scores_spanning_orders_of_magnitude_get_a_log_axis() -> None:
    assert score_axis_scale(verdicts([0.01, 50.0, math.inf], [3.0] * 3, [0] * 3)) == "log"
    assert score_axis_scale(verdicts([1.0, 50.0], [3.0] * 2, [0] * 2)) == "linear"
    assert score_axis_scale(verdicts([-1.0, 500.0], [3.0] * 2, [0] * 2)) == "linear"
