"""Sweep global detection settings on SKAB files: train once per file, replay scoring many times.

What a model reconstructs does not depend on the threshold or the alarm rule, so each file's
autoencoder is trained once (cached per training setting and seed) and its per-row errors on the
training and test rows are kept, through the int8 model and through the float network it was
converted from. Every threshold/alarm setting is then replayed over those errors with the
gateway's own `build_threshold` and `decide`, one row at a time, as `AssetDetector.score_row`
does; on valve1 this gives the same counts as `appliance eval skab` with the same settings.

Protocol as `appliance eval skab`: learn from the first 400 rows of each file, judge the rest, one
set of settings for every file. Folds: A = the first half of the files in natural order (valve1
0..7), B = the rest (8..15). For each of "all", "A" and "B" the settings are ranked by how far
they fall short of the bars (F1 >= 0.78, FAR <= 20 %, MAR <= 25 %, NAB standard >= 30), then by
F1, and the best are printed beside their figures on the other fold. With several `--seeds`, the
counts of all seeds are pooled before the ratios are taken.

Grid axes (`--grid`): statistic, k (adaptive rule), floor (AdaptiveSettings.floor_ratio), window
(baseline ring), on/off/clear (AlarmSettings on_count/off_count/clear_ratio) and alpha, a causal
EWMA of the error before the threshold (1: none). The EWMA is a what-if: the scorer has no such
option (it did not help, docs/DETECTION.md).

    .venv/bin/python bench/sweep_skab.py ../shared/data/skab/valve1 [--seeds 0,1,2,3,4]
        [--precision int8|float] [--epochs 60 --widths 16,8,2 --learning-rate 0.005]
        [--grid "statistic=mean_std k=6,6.5 ..."] [--top 10] [--cache DIR]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from appliance.detect.alarms import AlarmSettings, AlarmState, decide
from appliance.detect.runtime import open_runtime, reconstruction_error
from appliance.detect.scorer import MEASURED_ADAPTIVE, DetectorSettings, build_threshold
from appliance.detect.thresholds import calibrate_fixed
from appliance.evaluation.evaluate import SKAB_TRAIN_ROWS
from appliance.evaluation.metrics import (
    NAB_PROFILES,
    NAB_WINDOW_S,
    NabTally,
    OutlierCounts,
    nab_tally,
    outlier_counts,
    outlier_scores,
)
from appliance.evaluation.skab import find_skab_csvs, load_skab_csv
from appliance.records import FloatArray
from appliance.training.autoencoder import TrainSettings, fit_autoencoder
from appliance.training.dense import FloatReconstructor

PRECISIONS = ("int8", "float")
MIN_F1, MAX_FAR, MAX_MAR, MIN_NAB = 0.78, 20.0, 25.0, 30.0
"""The bars of issue 3."""
DEFAULT_GRID = (
    "statistic=mean_std,median_mad k=5,5.5,6,6.5,7,8 on=1,2 off=1,3,5,8,10,15 clear=0.8,0.9,1"
    " floor=0.8 window=1000 alpha=1"
)


@dataclass(frozen=True)
class FileErrors:
    """One file's reconstruction errors per precision, and its test part's times and labels."""

    times: FloatArray
    anomaly: np.ndarray
    changepoint: np.ndarray
    train: dict[str, FloatArray]
    test: dict[str, FloatArray]


@dataclass(frozen=True)
class Result:
    counts: OutlierCounts
    tallies: dict[str, NabTally]

    def __add__(self, other: Result) -> Result:
        tallies = {name: tally + other.tallies[name] for name, tally in self.tallies.items()}
        return Result(self.counts + other.counts, tallies)

    @property
    def f1(self) -> float:
        return outlier_scores(self.counts).f1

    @property
    def far(self) -> float:
        return outlier_scores(self.counts).far

    @property
    def mar(self) -> float:
        return outlier_scores(self.counts).mar

    @property
    def nab(self) -> dict[str, float]:
        return {name: tally.normalised for name, tally in self.tallies.items()}

    def shortfall(self) -> float:
        """How far from the bars, in points (0: every bar met)."""
        return (
            max(0.0, MIN_F1 - self.f1) * 100
            + max(0.0, self.far - MAX_FAR)
            + max(0.0, self.mar - MAX_MAR)
            + max(0.0, MIN_NAB - self.nab["standard"])
        )

    def row(self) -> str:
        nab = self.nab
        return (
            f"F1 {self.f1:.3f}  FAR {self.far:6.2f}  MAR {self.mar:6.2f}  NAB std/LowFP/LowFN "
            f"{nab['standard']:6.2f} {nab['low_fp']:6.2f} {nab['low_fn']:6.2f}"
        )


@dataclass(frozen=True)
class Setting:
    name: str
    detector: DetectorSettings
    alpha: float
    """EWMA weight of the newest error (1: no smoothing)."""


def file_errors(path: Path, directory: Path, train: TrainSettings, cache: Path) -> FileErrors:
    recording = load_skab_csv(path)
    widths = "-".join(map(str, train.encoder_widths or ()))
    key = f"e{train.epochs}_w{widths}_lr{train.learning_rate:g}_s{train.seed}"
    cached = cache / key / path.relative_to(directory).with_suffix(".npz")
    if not cached.exists():
        errors = train_and_score(recording.features, recording.feature_names, train)
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **errors)  # type: ignore[arg-type]
    stored = np.load(cached)
    test = slice(SKAB_TRAIN_ROWS, None)
    return FileErrors(
        times=recording.times[test],
        anomaly=recording.anomaly[test],
        changepoint=recording.changepoint[test],
        train={p: stored[f"train_{p}"] for p in PRECISIONS},
        test={p: stored[f"test_{p}"] for p in PRECISIONS},
    )


def train_and_score(
    features: FloatArray, names: Sequence[str], train: TrainSettings
) -> dict[str, FloatArray]:
    """As AutoencoderDetector.learn: train on the first rows; errors of every row, both models."""
    rows = SKAB_TRAIN_ROWS
    with tempfile.TemporaryDirectory() as out_dir:
        trained = fit_autoencoder(
            features[:rows], tuple(names), asset=None, version="sweep", out_dir=Path(out_dir),
            settings=train,
        )  # fmt: skip
    runtimes = {
        "int8": open_runtime(trained.bundle),
        "float": FloatReconstructor(trained.float_network),
    }
    errors = {}
    for precision, runtime in runtimes.items():
        both, _ = reconstruction_error(trained.bundle, runtime, features)
        errors[f"train_{precision}"], errors[f"test_{precision}"] = both[:rows], both[rows:]
    return errors


@dataclass(frozen=True)
class Commissioned:
    """Stands in for the model in `build_threshold`, which reads only its fixed threshold."""

    commissioned_threshold: float


def ewma(errors: FloatArray, alpha: float) -> FloatArray:
    """Causal exponentially weighted mean, started at the first error (alpha 1: unchanged)."""
    out = np.empty_like(errors)
    level = errors[0]
    for i, error in enumerate(errors):
        level = alpha * error + (1 - alpha) * level
        out[i] = level
    return out


def replay(data: FileErrors, setting: Setting, precision: str) -> np.ndarray:
    """The anomaly flags the scorer gives the test rows, from the cached errors.

    As in AutoencoderDetector.learn: the commissioning threshold is the 0.995 quantile of the
    training errors (times the default margin) and those errors seed the adaptive baseline.
    """
    detector = setting.detector
    smoothed = ewma(np.concatenate([data.train[precision], data.test[precision]]), setting.alpha)
    seed, test = smoothed[: len(data.train[precision])], smoothed[len(data.train[precision]) :]
    defaults = TrainSettings()
    fixed = calibrate_fixed(seed, defaults.threshold_quantile, defaults.threshold_margin).value
    threshold = build_threshold(Commissioned(fixed), detector, seed_errors=seed)  # type: ignore[arg-type]
    alarm = AlarmState(detector.alarm)
    flags = np.zeros(len(test), dtype=np.bool_)
    for i, (t, error) in enumerate(zip(data.times, test, strict=True)):
        flags[i] = decide(threshold, alarm, float(t), float(error)).anomalous
    return flags


def evaluate(files: Iterable[FileErrors], setting: Setting, precision: str) -> Result:
    counts = OutlierCounts()
    tallies = {profile.name: NabTally() for profile in NAB_PROFILES}
    for data in files:
        flags = replay(data, setting, precision)
        counts = counts + outlier_counts(data.anomaly, flags)
        for profile in NAB_PROFILES:
            tally = nab_tally(data.times, data.changepoint, flags, profile, NAB_WINDOW_S)
            tallies[profile.name] = tallies[profile.name] + tally
    return Result(counts, tallies)


def grid(spec: str) -> Iterable[Setting]:
    """'axis=v1,v2 axis=v3 ...' (every axis of DEFAULT_GRID) -> every combination."""
    axes = dict(item.split("=", 1) for item in spec.split())
    for values in itertools.product(*(axis.split(",") for axis in axes.values())):
        v = dict(zip(axes, values, strict=True))
        adaptive = replace(
            MEASURED_ADAPTIVE,
            statistic=v["statistic"],  # type: ignore[arg-type]
            k=float(v["k"]),
            floor_ratio=float(v["floor"]),
            window=int(v["window"]),
        )
        alarm = AlarmSettings(
            on_count=int(v["on"]), off_count=int(v["off"]), clear_ratio=float(v["clear"])
        )
        name = " ".join(f"{axis}={value}" for axis, value in v.items())
        yield Setting(name, DetectorSettings(adaptive=adaptive, alarm=alarm), float(v["alpha"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--seeds", default="0", help="training seeds, e.g. 0,1,2 (pooled)")
    parser.add_argument("--precision", choices=PRECISIONS, default="int8")
    parser.add_argument("--epochs", type=int, default=TrainSettings().epochs)
    parser.add_argument("--widths", default=None, help="encoder widths, e.g. 16,8,2")
    parser.add_argument("--learning-rate", type=float, default=TrainSettings().learning_rate)
    parser.add_argument("--grid", default=DEFAULT_GRID, help=f"default: {DEFAULT_GRID}")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sweep_skab")
    args = parser.parse_args()
    widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else None
    seeds = [int(seed) for seed in args.seeds.split(",")]
    trainings = [
        TrainSettings(
            epochs=args.epochs, encoder_widths=widths, learning_rate=args.learning_rate, seed=seed
        )
        for seed in seeds
    ]
    paths = find_skab_csvs(args.directory)
    runs = [[file_errors(p, args.directory, t, args.cache) for p in paths] for t in trainings]
    half = len(paths) // 2
    print(f"{args.directory}: {len(paths)} files; fold A the first {half}, B the rest")
    print(f"training {asdict(trainings[0])}; seeds {seeds}; precision {args.precision}")

    results = []
    for setting in grid(args.grid):
        per_seed = [
            (evaluate(files[:half], setting, args.precision),
             evaluate(files[half:], setting, args.precision))
            for files in runs
        ]  # fmt: skip
        met = sum((a + b).shortfall() == 0 for a, b in per_seed)
        a = sum((pair[0] for pair in per_seed[1:]), per_seed[0][0])
        b = sum((pair[1] for pair in per_seed[1:]), per_seed[0][1])
        results.append((setting.name, {"A": a, "B": b, "all": a + b}, met))
    for chosen_on, reported_on in (("all", "all"), ("A", "B"), ("B", "A")):
        ranked = sorted(results, key=lambda r: (r[1][chosen_on].shortfall(), -r[1][chosen_on].f1))
        print(f"\nchosen on {chosen_on}" + ("" if chosen_on == "all" else f", then {reported_on}"))
        for name, by_fold, met in ranked[: args.top]:
            print(f"  {name}")
            for fold in dict.fromkeys((chosen_on, reported_on, "all")):
                print(f"    {fold:>3}: {by_fold[fold].row()}")
            print(f"    all files: every bar met for {met} of {len(seeds)} seed(s)")


if __name__ == "__main__":
    main()
