"""The vibration diagnosis on evaluation recordings: a `diagnosis` column in each <name>.pred.csv.

`appliance eval vibration` writes one row per feature window (window_end, score, threshold,
anomaly). Each row's window is the recording's samples in [window_end - window_s, window_end)
(the feature span is a little shorter: its last whole Welch segment ends at window_end);
the diagnosis (appliance.diagnosis) of that window, told whether the detector flagged it, is
added as a `diagnosis` column after `anomaly`. The shaft speed of a recording comes from a fixed
--speed-rpm, else from the CWRU manifest (its `rpm` column, by file name), else it is estimated
from each window's spectrum within --speed-range-rpm. The bearing's defect orders default to the
CWRU drive-end bearing (SKF 6205-2RS JEM).
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from appliance.diagnosis import (
    CWRU_DRIVE_END,
    VERDICTS,
    DefectOrders,
    DiagnosisSettings,
    Verdict,
    diagnose_channel,
    estimate_shaft_hz,
)
from appliance.errors import ApplianceError
from appliance.evaluation.cwru import (
    Recording,
    load_recording,
    read_cwru_manifest,
    split_recording,
)
from appliance.evaluation.skab import EvaluationError
from appliance.records import FloatArray

MANIFEST_NAME = "manifest.csv"
DEFAULT_SPEED_RANGE_RPM = (1600.0, 1900.0)
"""Where an unlisted CWRU recording's speed is looked for: the rig ran 1720-1797 rpm."""
PREDICTION_COLUMNS = ["window_end", "score", "threshold", "anomaly"]


@dataclass(frozen=True)
class DiagnosisRun:
    """What the evaluation's diagnosis needs besides the recordings."""

    window_s: float
    bearing: DefectOrders = CWRU_DRIVE_END
    speed_rpm: float | None = None
    """One fixed speed for every recording (overrides the manifest)."""
    speeds_rpm: Mapping[str, float] = field(default_factory=dict)
    """Recording name -> speed (from the manifest)."""
    speed_range_rpm: tuple[float, float] = DEFAULT_SPEED_RANGE_RPM
    settings: DiagnosisSettings = field(default_factory=DiagnosisSettings)


@dataclass(frozen=True)
class RecordingDiagnoses:
    name: str
    speed: str
    """How the speed was found: "1797 rpm (manifest)", "estimated 1790-1800 rpm", ..."""
    verdicts: tuple[Verdict, ...]

    def share(self, verdict: Verdict) -> float:
        return self.verdicts.count(verdict) / len(self.verdicts) if self.verdicts else 0.0


def manifest_speeds(directory: Path) -> dict[str, float]:
    """Recording stem -> rpm from `directory`/manifest.csv ({} when there is none)."""
    path = directory / MANIFEST_NAME
    return _manifest_file(path) if path.is_file() else {}


def diagnose_recording(
    recording: Recording, prediction: Path, run: DiagnosisRun
) -> RecordingDiagnoses:
    """Diagnose every window of `prediction` and rewrite it with a `diagnosis` column."""
    rows = _read_predictions(prediction)
    window = round(run.window_s * recording.rate)
    fixed_rpm = run.speed_rpm or _listed_speed(recording.name, run.speeds_rpm)
    verdicts: list[Verdict] = []
    speeds: list[float] = []
    for row in rows:
        end = round(float(row["window_end"]) * recording.rate)
        samples = recording.samples[max(0, end - window) : end]
        if not window // 2 <= len(samples) <= window:
            raise EvaluationError(
                f"{prediction}: the window ending at {row['window_end']} s is not in the recording"
            )
        shaft_hz = fixed_rpm / 60 if fixed_rpm else _estimated_hz(samples, recording.rate, run)
        speeds.append(shaft_hz * 60)
        diagnosis = diagnose_channel(
            samples,
            recording.rate,
            shaft_hz,
            {"bearing": run.bearing},
            anomalous=row["anomaly"] == "1",
            settings=run.settings,
        )
        verdicts.append(diagnosis.verdict)
    _write_predictions(prediction, rows, verdicts)
    return RecordingDiagnoses(
        recording.name, _describe_speed(fixed_rpm, run, speeds), tuple(verdicts)
    )


def diagnose_outputs(
    recordings: Sequence[Recording], out: Path, run: DiagnosisRun
) -> list[RecordingDiagnoses]:
    """Each recording's <out>/<name>.pred.csv gets its diagnosis column (a missing one is skipped:
    the evaluation reported why it skipped that recording)."""
    results = []
    for recording in recordings:
        prediction = out / f"{recording.name}.pred.csv"
        if prediction.is_file():
            results.append(diagnose_recording(recording, prediction, run))
    return results


def run_diagnosis_eval(
    train_paths: Sequence[Path],
    test_paths: Sequence[Path],
    out: Path,
    run: DiagnosisRun,
    *,
    rate: float,
    holdout_fraction: float = 0.0,
    manifest: Path | None = None,
) -> int:
    """After `appliance eval vibration` wrote its predictions: add the diagnosis column to each,
    print the table, return the exit status (1 with the reason on stderr if it could not run)."""
    try:
        directory = manifest.parent if manifest else test_paths[0].parent
        speeds = manifest_speeds(directory) if manifest is None else _manifest_file(manifest)
        recordings = [load_recording(path, rate) for path in test_paths]
        if holdout_fraction:
            train = [load_recording(path, rate) for path in train_paths]
            recordings += [split_recording(r, 1.0 - holdout_fraction)[1] for r in train]
        results = diagnose_outputs(recordings, out, replace(run, speeds_rpm=speeds))
    except ApplianceError as exc:
        print(f"eval vibration: diagnosis: {exc}", file=sys.stderr)
        return 1
    print(format_diagnosis_table(results))
    return 0


def _manifest_file(path: Path) -> dict[str, float]:
    return {Path(entry.file).stem: entry.rpm for entry in read_cwru_manifest(path)}


def format_diagnosis_table(results: Sequence[RecordingDiagnoses]) -> str:
    """Markdown: per recording, its windows and the share of each verdict that occurs."""
    shown = [verdict for verdict in VERDICTS if any(r.share(verdict) for r in results)]
    header = ["recording", "shaft speed", "windows", *shown]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        shares = [f"{100 * result.share(verdict):.0f} %" for verdict in shown]
        cells = [result.name, result.speed, str(len(result.verdicts)), *shares]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _listed_speed(name: str, speeds: Mapping[str, float]) -> float | None:
    for suffix in ("", "_head", "_tail"):
        if suffix and name.endswith(suffix):
            name = name.removesuffix(suffix)
        if name in speeds:
            return speeds[name]
    return None


def _estimated_hz(samples: FloatArray, rate: float, run: DiagnosisRun) -> float:
    low, high = run.speed_range_rpm
    speed, _ = estimate_shaft_hz(samples, rate, low / 60, high / 60)
    return speed


def _describe_speed(fixed_rpm: float | None, run: DiagnosisRun, speeds: list[float]) -> str:
    if fixed_rpm:
        source = "given" if run.speed_rpm else "manifest"
        return f"{fixed_rpm:.0f} rpm ({source})"
    if not speeds:
        return "estimated"
    return f"estimated {min(speeds):.0f}-{max(speeds):.0f} rpm"


def _read_predictions(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as stream:
            reader = csv.DictReader(stream)
            if reader.fieldnames is None or not set(PREDICTION_COLUMNS) <= set(reader.fieldnames):
                raise EvaluationError(f"{path}: needs the columns {PREDICTION_COLUMNS}")
            return list(reader)
    except OSError as exc:
        raise EvaluationError(f"{path}: cannot read: {exc}") from exc


def _write_predictions(path: Path, rows: list[dict[str, str]], verdicts: list[Verdict]) -> None:
    columns = [name for name in rows[0] if name != "diagnosis"] if rows else PREDICTION_COLUMNS
    at = columns.index("anomaly") + 1
    columns = [*columns[:at], "diagnosis", *columns[at:]]
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row, verdict in zip(rows, verdicts, strict=True):
                writer.writerow({**row, "diagnosis": verdict})
        os.replace(partial, path)
    except OSError as exc:
        raise EvaluationError(f"{path}: cannot write: {exc}") from exc
