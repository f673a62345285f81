"""Leave-one-recording-out check of the diagnosis's thresholds on the CWRU recordings at hand.

`python -m appliance.evaluation.diagnosis_loo ../shared/data/cwru`: every recording (the
manifest's and the healthy `normal_*.npy`) is cut into the evaluation's windows (0.5 s, stride
0.25 s). For each recording held out, the grid point that does best on the other recordings is
chosen (fewest wrong bearing verdicts, then the highest share of correct verdicts on their
inner- and outer-race faults, then the point nearest the reasoned defaults), and the held-out
recording is diagnosed with it. The output is the per-recording table at the defaults, then each
held-out recording's verdict shares at the point chosen without it. No TensorFlow needed: the
detector's flag is not used, so a window nothing explains is `none` here, not `unknown`.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.diagnosis import (
    BEARING_VERDICTS,
    CWRU_DRIVE_END,
    DiagnosisSettings,
    Verdict,
    diagnose_channel,
    estimate_shaft_hz,
)
from appliance.evaluation.cwru import CWRU_RATE_HZ, load_recording, read_cwru_manifest
from appliance.evaluation.diagnosis_eval import (
    DEFAULT_SPEED_RANGE_RPM,
    RecordingDiagnoses,
    format_diagnosis_table,
)
from appliance.records import FloatArray

WINDOW_S = 0.5
STRIDE_S = 0.25
GRID = {
    "fundamental_db": (10.0, 12.0, 14.0),
    "confirm_db": (6.0, 8.0, 10.0),
    "slip": (0.01, 0.02, 0.03),
}


@dataclass(frozen=True)
class Labelled:
    name: str
    label: str
    """inner_race, outer_race, ball or normal."""
    shaft_hz: float
    windows: tuple[FloatArray, ...]


def load_labelled(directory: Path) -> list[Labelled]:
    """The manifest's recordings with their label and speed, and the healthy normal_*.npy (speed
    estimated from its spectrum within the default range)."""
    entries = read_cwru_manifest(directory / "manifest.csv")
    recordings = [(directory / entry.file, entry.label, entry.rpm / 60) for entry in entries] + [
        (path, "normal", 0.0) for path in sorted(directory.glob("normal_*.npy"))
    ]
    labelled = []
    for path, label, shaft_hz in recordings:
        samples = load_recording(path, CWRU_RATE_HZ).samples
        width, step = round(WINDOW_S * CWRU_RATE_HZ), round(STRIDE_S * CWRU_RATE_HZ)
        windows = tuple(
            samples[start : start + width] for start in range(0, len(samples) - width + 1, step)
        )
        if not shaft_hz:
            low, high = DEFAULT_SPEED_RANGE_RPM
            shaft_hz = estimate_shaft_hz(samples, CWRU_RATE_HZ, low / 60, high / 60)[0]
        labelled.append(Labelled(path.stem, label, shaft_hz, windows))
    return labelled


def verdicts(recording: Labelled, settings: DiagnosisSettings) -> tuple[Verdict, ...]:
    return tuple(
        diagnose_channel(
            window, CWRU_RATE_HZ, recording.shaft_hz, {"de": CWRU_DRIVE_END}, settings=settings
        ).verdict
        for window in recording.windows
    )


def wrong_bearing_share(recording: Labelled, found: Sequence[Verdict]) -> float:
    """Share of windows given a bearing verdict that is not the recording's fault."""
    right = {"ball": "rolling_element"}.get(recording.label, recording.label)
    wrong = [v for v in found if v in BEARING_VERDICTS and v != right]
    return len(wrong) / len(found)


def correct_share(recording: Labelled, found: Sequence[Verdict]) -> float:
    return found.count(recording.label) / len(found)


def grid_points() -> list[DiagnosisSettings]:
    return [
        DiagnosisSettings(fundamental_db=fundamental, confirm_db=confirm, slip=slip)
        for fundamental, confirm, slip in itertools.product(*GRID.values())
    ]


def choose(
    training: Sequence[Labelled], found: dict[tuple[str, DiagnosisSettings], tuple[Verdict, ...]]
) -> DiagnosisSettings:
    defaults = DiagnosisSettings()

    def cost(point: DiagnosisSettings) -> tuple[float, float, float]:
        wrong = sum(wrong_bearing_share(r, found[r.name, point]) for r in training)
        races = [r for r in training if r.label in ("inner_race", "outer_race")]
        worst = min((correct_share(r, found[r.name, point]) for r in races), default=0.0)
        distance = sum(
            abs(getattr(point, name) - getattr(defaults, name)) / getattr(defaults, name)
            for name in GRID
        )
        return (wrong, -worst, distance)

    return min(grid_points(), key=cost)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("directory", type=Path, help="CWRU .npy files with manifest.csv")
    args = parser.parse_args(argv)
    recordings = load_labelled(args.directory)
    found = {(r.name, point): verdicts(r, point) for r in recordings for point in grid_points()}
    defaults = DiagnosisSettings()
    print(f"At the defaults {defaults}:\n")
    print(
        format_diagnosis_table(
            [
                RecordingDiagnoses(r.name, f"{r.shaft_hz * 60:.0f} rpm", found[r.name, defaults])
                for r in recordings
            ]
        )
    )
    print("\nLeave one recording out (grid " + ", ".join(f"{k} {v}" for k, v in GRID.items()))
    print("):\n")
    held_out = []
    for recording in recordings:
        point = choose([r for r in recordings if r is not recording], found)
        chosen = ", ".join(f"{name} {getattr(point, name):g}" for name in GRID)
        held_out.append(
            RecordingDiagnoses(f"{recording.name} ({chosen})", "", found[recording.name, point])
        )
    print(format_diagnosis_table(held_out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
