"""The project's SKAB scorer against ../shared/tools/skab-check, run as a subprocess.

skab-check re-implements SKAB's leaderboard scorer and reproduces the published table; it needs
pandas (a dev dependency for this test; the appliance does not). The test runs it with the
interpreter named by SKAB_CHECK_PYTHON (default: this one), and skips only when ../shared is not
beside the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from appliance.evaluation.metrics import (
    NAB_LOW_FN,
    NAB_LOW_FP,
    NAB_STANDARD,
    BoolArray,
    NabTally,
    outlier_counts,
    outlier_scores,
    sum_counts,
)
from appliance.evaluation.metrics import nab_tally as project_nab_tally
from appliance.evaluation.skab import load_skab_csv

from .data_paths import SHARED_DATA

SKAB_CHECK = SHARED_DATA.parent / "tools" / "skab-check" / "score_preds.py"
TRAIN_ROWS = 400
START = datetime(2020, 3, 9, 10, 0, 0, tzinfo=UTC).timestamp()


def reference_python() -> str:
    python = os.environ.get("SKAB_CHECK_PYTHON", sys.executable)
    if not SKAB_CHECK.is_file():
        pytest.skip(f"skab-check not found at {SKAB_CHECK}")
    probe = subprocess.run([python, "-c", "import pandas"], capture_output=True, timeout=60)
    assert probe.returncode == 0, (
        f"{python} cannot import pandas (a dev dependency): {probe.stderr!r}"
    )
    return python


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def write_file(directory: Path, name: str, rng: np.random.Generator) -> BoolArray:
    """A SKAB csv with uneven row gaps, anomalies some of whose changepoints are < 60 s apart;
    returns blocky random predictions for its test rows (written as `name`.pred.csv)."""
    rows = 900
    times = START + np.cumsum(rng.choice([1.0, 1.0, 2.0, 5.0], size=rows))
    anomaly = np.zeros(rows, dtype=np.bool_)
    changepoint = np.zeros(rows, dtype=np.bool_)
    for start in sorted(rng.choice(np.arange(TRAIN_ROWS + 10, rows - 80), 4, replace=False)):
        length = int(rng.integers(15, 70))
        anomaly[start : start + length] = True
        changepoint[start] = True
        changepoint[min(start + length, rows - 1)] = True
    lines = ["datetime;Pressure;anomaly;changepoint"]
    for row in range(rows):
        pressure = 1.0 + float(anomaly[row])
        a, c = int(anomaly[row]), int(changepoint[row])
        lines.append(f"{stamp(times[row])};{pressure};{a}.0;{c}.0")
    (directory / "data" / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    predictions = np.repeat(rng.random(50) < 0.35, 10)[: rows - TRAIN_ROWS]
    predictions[rng.random(len(predictions)) < 0.03] ^= True
    pred_lines = ["datetime,anomaly"] + [
        f"{stamp(t)},{int(p)}" for t, p in zip(times[TRAIN_ROWS:], predictions, strict=True)
    ]
    (directory / "pred" / f"{name}.pred.csv").write_text("\n".join(pred_lines) + "\n")
    return predictions


def test_project_scores_agree_with_skab_check(tmp_path: Path) -> None:
    python = reference_python()
    (tmp_path / "data").mkdir()
    (tmp_path / "pred").mkdir()
    rng = np.random.default_rng(13)
    predictions = {name: write_file(tmp_path, name, rng) for name in ("0", "1", "2")}

    counts = []
    tallies = {profile.name: NabTally() for profile in (NAB_STANDARD, NAB_LOW_FP, NAB_LOW_FN)}
    for name, predicted in predictions.items():
        recording = load_skab_csv(tmp_path / "data" / f"{name}.csv")
        counts.append(outlier_counts(recording.anomaly[TRAIN_ROWS:], predicted))
        for profile in (NAB_STANDARD, NAB_LOW_FP, NAB_LOW_FN):
            tallies[profile.name] += project_nab_tally(
                recording.times[TRAIN_ROWS:], recording.changepoint[TRAIN_ROWS:], predicted, profile
            )
    ours = outlier_scores(sum_counts(counts))
    done = subprocess.run(
        [python, str(SKAB_CHECK), str(tmp_path / "data"), str(tmp_path / "pred")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    reference = json.loads(done.stdout.strip().splitlines()[-1])

    assert reference["files"] == 3 and reference["missing"] == []
    assert ours.f1 == pytest.approx(reference["F1"], abs=0.0051)
    assert ours.far == pytest.approx(reference["FAR"], abs=0.0051)
    assert ours.mar == pytest.approx(reference["MAR"], abs=0.0051)
    assert tallies["standard"].normalised == pytest.approx(reference["NAB"], abs=0.0051)
    assert tallies["low_fp"].normalised == pytest.approx(reference["NAB_LowFP"], abs=0.0051)
    assert tallies["low_fn"].normalised == pytest.approx(reference["NAB_LowFN"], abs=0.0051)
