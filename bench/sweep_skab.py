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
EWMA of the error before the threshold (1: none); optional: median, a causal median of the last n
errors before the threshold (1: none), and tail, a threshold at a stated exceedance rate per
window from a generalised Pareto fit to the baseline's upper tail (0: the statistic's centre + k
spread). The EWMA, median and tail are what-ifs: the scorer has no such option (they did not
help, docs/DETECTION.md).

`--drift SPEC` (repeatable) instead replays each file row by row through its trained model
(int8 or float, cached with the errors) with a drift-compensating centre, a what-if the scorer
does not have (`Drift`; it did not help, docs/DETECTION.md), and prints per seed, pooled, per
fold and the alarmed rows (the false-alarm rate of an anomaly-free directory).

    .venv/bin/python bench/sweep_skab.py ../shared/data/skab/valve1 [--seeds 0,1,2,3,4]
        [--precision int8|float] [--epochs 60 --widths 16,8,2 --learning-rate 0.005]
        [--grid "statistic=mean_std k=6,6.5 ..."] [--top 10] [--cache DIR]
        [--drift "rate=0.01 features=Temperature,Thermocouple k=5.75 clear=0.8"]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from appliance.detect.alarms import AlarmSettings, AlarmState, decide
from appliance.detect.bundle import ModelBundle, load_bundle
from appliance.detect.runtime import open_runtime, reconstruction_error
from appliance.detect.scorer import MEASURED_ADAPTIVE, DetectorSettings, build_threshold
from appliance.detect.thresholds import (
    AdaptiveSettings,
    AdaptiveThreshold,
    Threshold,
    calibrate_fixed,
)
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
from appliance.training.dense import DenseLayer, DenseNetwork, FloatReconstructor

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
    median: int = 1
    """Causal median over the last `median` errors before the threshold (1: none); a what-if."""
    tail: float = 0.0
    """With a rate > 0, the threshold is the error exceeded by that share of normal windows, from
    a generalised Pareto fit to the upper tail of the baseline (`TailThreshold`); a what-if."""


def file_errors(path: Path, directory: Path, train: TrainSettings, cache: Path) -> FileErrors:
    recording = load_skab_csv(path)
    cached = cache / train_key(train) / path.relative_to(directory).with_suffix(".npz")
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


def cached_models(
    path: Path, directory: Path, train: TrainSettings, cache: Path
) -> tuple[ModelBundle, DenseNetwork]:
    """The file's int8 bundle and float network, trained on its first rows (cached on disk)."""
    where = cache / train_key(train) / "models" / path.relative_to(directory).with_suffix("")
    weights = where / "float.npz"
    if not weights.exists():
        recording = load_skab_csv(path)
        trained = fit_autoencoder(
            recording.features[:SKAB_TRAIN_ROWS], recording.feature_names, asset=None,
            version="sweep", out_dir=where / "bundle", settings=train,
        )  # fmt: skip
        layers = trained.float_network.layers
        arrays = {f"w{i}": layer.weights for i, layer in enumerate(layers)}
        arrays |= {f"b{i}": layer.bias for i, layer in enumerate(layers)}
        arrays["relu"] = np.array([layer.relu for layer in layers])
        np.savez(weights.with_suffix(".tmp.npz"), **arrays)  # type: ignore[arg-type]
        weights.with_suffix(".tmp.npz").rename(weights)
    stored = np.load(weights)
    network = DenseNetwork(
        tuple(
            DenseLayer(stored[f"w{i}"], stored[f"b{i}"], bool(relu))
            for i, relu in enumerate(stored["relu"])
        )
    )
    return load_bundle(where / "bundle"), network


def train_key(train: TrainSettings) -> str:
    widths = "-".join(map(str, train.encoder_widths or ()))
    return f"e{train.epochs}_w{widths}_lr{train.learning_rate:g}_s{train.seed}"


def int8_errors(
    fit_rows: FloatArray, names: Sequence[str], train: TrainSettings, rows: FloatArray
) -> FloatArray:
    """The int8 reconstruction errors of `rows` under a model trained on `fit_rows`."""
    with tempfile.TemporaryDirectory() as out_dir:
        trained = fit_autoencoder(
            fit_rows, tuple(names), asset=None, version="sweep", out_dir=Path(out_dir),
            settings=train,
        )  # fmt: skip
    errors, _ = reconstruction_error(trained.bundle, open_runtime(trained.bundle), rows)
    return errors


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


def running_median(errors: FloatArray, length: int) -> FloatArray:
    """Causal median of the last `length` errors (fewer at the start; 1: unchanged)."""
    if length <= 1:
        return errors
    padded = np.concatenate([np.full(length - 1, np.nan), errors])
    windows = np.lib.stride_tricks.sliding_window_view(padded, length)
    medians: FloatArray = np.nanmedian(windows, axis=1)
    return medians


def gpd_quantile(values: FloatArray, rate: float, tail_share: float = 0.1) -> float:
    """The value exceeded with probability `rate`: a generalised Pareto distribution fitted by
    probability-weighted moments (Hosking & Wallis 1987) to the excesses over the
    1 - `tail_share` quantile of `values` (peaks over threshold)."""
    n = len(values)
    start = float(np.quantile(values, 1 - tail_share))
    excess = np.sort(values[values > start] - start)
    m = len(excess)
    if rate >= m / n or m < 10:
        return float(np.quantile(values, 1 - min(rate, 1.0)))
    a0 = float(excess.mean())
    a1 = float(np.mean((1 - (np.arange(1, m + 1) - 0.35) / m) * excess))
    shape = -(a0 / (a0 - 2 * a1) - 2)  # xi; Hosking's k is -xi
    scale = 2 * a0 * a1 / (a0 - 2 * a1)
    ratio = rate * n / m
    if abs(shape) < 1e-6:
        return start + scale * float(np.log(1 / ratio))
    return float(start + scale / shape * (ratio ** (-shape) - 1))


class TailThreshold(AdaptiveThreshold):
    """The adaptive threshold (same ring, gate, floor and re-baselining) whose statistic is the
    error exceeded by `rate` of the baseline's windows (a GPD tail fit), not centre + k spread."""

    def __init__(self, settings: AdaptiveSettings, reference: float, baseline: FloatArray,
                 rate: float) -> None:  # fmt: skip
        self.rate = rate
        super().__init__(settings, reference, baseline)

    def _statistical_threshold(self) -> float:
        return gpd_quantile(self.baseline(), self.rate)


def setting_threshold(setting: Setting, fixed: float, seed: FloatArray) -> Threshold:
    """The threshold `setting` replays with, seeded as AutoencoderDetector.learn seeds it."""
    if setting.tail > 0:
        adaptive = replace(setting.detector.adaptive, warmup=min(100, len(seed)))
        return TailThreshold(adaptive, fixed, seed, setting.tail)
    return build_threshold(Commissioned(fixed), setting.detector, seed_errors=seed)  # type: ignore[arg-type]


def replay(data: FileErrors, setting: Setting, precision: str) -> np.ndarray:
    """The anomaly flags the scorer gives the test rows, from the cached errors.

    As in AutoencoderDetector.learn: the commissioning threshold is the 0.995 quantile of the
    training errors (times the default margin) and those errors seed the adaptive baseline.
    """
    detector = setting.detector
    both = np.concatenate([data.train[precision], data.test[precision]])
    smoothed = running_median(ewma(both, setting.alpha), setting.median)
    seed, test = smoothed[: len(data.train[precision])], smoothed[len(data.train[precision]) :]
    defaults = TrainSettings()
    fixed = calibrate_fixed(seed, defaults.threshold_quantile, defaults.threshold_margin).value
    threshold = setting_threshold(setting, fixed, seed)
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


@dataclass(frozen=True)
class Drift:
    """A what-if the scorer does not have (it did not help, docs/DETECTION.md): a per-feature
    centre that replaces the scaler's mean, a causal EWMA of the raw features (weight `rate` of
    the newest row, at most `cap` scale units per row) learnt only from rows that were neither
    alarmed nor above the threshold, on the features named in `features` (empty: every one) or,
    with `trend` > 0, those whose linear trend over the training rows exceeds `trend` scale units.
    """

    rate: float = 0.0
    cap: float | None = None
    features: tuple[str, ...] = ()
    trend: float = 0.0
    k: float = MEASURED_ADAPTIVE.k
    alarm: AlarmSettings = field(default_factory=AlarmSettings)

    @classmethod
    def parse(cls, spec: str) -> Drift:
        """'rate=0.01 features=Temperature,Thermocouple k=5.75 clear=0.8 ...'"""
        v = dict(item.split("=", 1) for item in spec.split())
        alarm = AlarmSettings(
            on_count=int(v.get("on", 1)), off_count=int(v.get("off", 10)),
            clear_ratio=float(v.get("clear", 0.9)),
        )  # fmt: skip
        return cls(
            rate=float(v.get("rate", 0)),
            cap=float(v["cap"]) if "cap" in v else None,
            features=tuple(v["features"].split(",")) if v.get("features") else (),
            trend=float(v.get("trend", 0)),
            k=float(v.get("k", MEASURED_ADAPTIVE.k)),
            alarm=alarm,
        )


def replay_drift(
    path: Path, directory: Path, train: TrainSettings, cache: Path, precision: str, drift: Drift
) -> tuple[Result, int, int]:
    """One file scored row by row through its cached model with the drift-compensating centre
    (the threshold, alarm and gating are the scorer's own): its result, alarmed rows, rows."""
    bundle, network = cached_models(path, directory, train, cache)
    runtime = open_runtime(bundle) if precision == "int8" else FloatReconstructor(network)
    recording = load_skab_csv(path)
    features, names, rows = recording.features, recording.feature_names, SKAB_TRAIN_ROWS
    seed, _ = reconstruction_error(bundle, runtime, features[:rows])
    fixed = calibrate_fixed(seed, train.threshold_quantile, train.threshold_margin).value
    settings = DetectorSettings(adaptive=replace(MEASURED_ADAPTIVE, k=drift.k), alarm=drift.alarm)
    threshold = build_threshold(Commissioned(fixed), settings, seed_errors=seed)  # type: ignore[arg-type]
    alarm = AlarmState(settings.alarm)
    mean, scale = bundle.scaler_mean, bundle.scaler_scale
    if drift.trend > 0:
        slope = np.polyfit(np.arange(float(rows)), features[:rows], 1)[0]
        mask = np.abs(slope * rows) / scale > drift.trend
    else:
        mask = np.array([not drift.features or name in drift.features for name in names])
    offset = np.zeros(len(names))
    flags = np.zeros(len(features) - rows, dtype=np.bool_)
    for i, (t, row) in enumerate(zip(recording.times[rows:], features[rows:], strict=True)):
        errors, _ = reconstruction_error(bundle, runtime, (row - offset)[None, :])
        error = float(errors[0])
        decision = decide(threshold, alarm, float(t), error)
        flags[i] = decision.anomalous
        admitted = not decision.anomalous and (
            decision.threshold is None or error <= decision.threshold
        )
        if admitted and drift.rate > 0:
            step = drift.rate * (row - offset - mean) * mask
            if drift.cap is not None:
                step = np.clip(step, -drift.cap * scale, drift.cap * scale)
            offset = offset + step
    test = slice(rows, None)
    tallies = {
        profile.name: nab_tally(
            recording.times[test], recording.changepoint[test], flags, profile, NAB_WINDOW_S
        )
        for profile in NAB_PROFILES
    }
    counts = outlier_counts(recording.anomaly[test], flags)
    return Result(counts, tallies), int(flags.sum()), len(flags)


def report_drift(
    directory: Path, trainings: Sequence[TrainSettings], cache: Path, precision: str, spec: str
) -> None:
    """Per seed, pooled and per fold; for a directory without labels, the alarmed rows."""
    drift = Drift.parse(spec)
    paths = find_skab_csvs(directory)
    half = len(paths) // 2
    print(f"\ndrift {spec!r} ({precision})")
    folds: dict[str, list[Result]] = {"A": [], "B": []}
    for train in trainings:
        runs = [replay_drift(p, directory, train, cache, precision, drift) for p in paths]
        results = [run[0] for run in runs]
        alarmed, total = sum(run[1] for run in runs), sum(run[2] for run in runs)
        seed = sum(results[1:], results[0])
        print(f"  seed {train.seed}: {seed.row()}  alarmed rows {alarmed}/{total}")
        if half:
            folds["A"].append(sum(results[1:half], results[0]))
        folds["B"].append(sum(results[half + 1 :], results[half]))
    pooled = {name: sum(r[1:], r[0]) for name, r in folds.items() if r}
    if len(pooled) == 2:
        print(f"  pooled: {(pooled['A'] + pooled['B']).row()}")
        print(f"  fold A: {pooled['A'].row()}\n  fold B: {pooled['B'].row()}")


def grid(spec: str) -> Iterable[Setting]:
    """'axis=v1,v2 axis=v3 ...' (every axis of DEFAULT_GRID; optional: rebaseline, share, reset
    and return, the AdaptiveSettings rebaseline_after (default 0), rebaseline_share (1),
    rebaseline_reset (1) and rebaseline_after_return (0)) -> every combination."""
    axes = dict(item.split("=", 1) for item in spec.split())
    for values in itertools.product(*(axis.split(",") for axis in axes.values())):
        v = dict(zip(axes, values, strict=True))
        adaptive = replace(
            MEASURED_ADAPTIVE,
            statistic=v["statistic"],  # type: ignore[arg-type]
            k=float(v["k"]),
            floor_ratio=float(v["floor"]),
            window=int(v["window"]),
            rebaseline_after=int(v.get("rebaseline", 0)),
            rebaseline_share=float(v.get("share", 1)),
            rebaseline_reset=int(v.get("reset", 1)),
            rebaseline_after_return=int(v.get("return", 0)),
        )
        alarm = AlarmSettings(
            on_count=int(v["on"]), off_count=int(v["off"]), clear_ratio=float(v["clear"])
        )
        name = " ".join(f"{axis}={value}" for axis, value in v.items())
        detector = DetectorSettings(adaptive=adaptive, alarm=alarm)
        yield Setting(
            name, detector, float(v["alpha"]), int(v.get("median", 1)), float(v.get("tail", 0))
        )


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
    parser.add_argument(
        "--drift", action="append", default=[],
        help="replay with a drift-compensating centre instead of the grid (repeatable), e.g. "
        "'rate=0.01 features=Temperature,Thermocouple cap=0.05 trend=1 k=5.75 off=10 clear=0.8'",
    )  # fmt: skip
    args = parser.parse_args()
    widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else None
    seeds = [int(seed) for seed in args.seeds.split(",")]
    trainings = [
        TrainSettings(
            epochs=args.epochs, encoder_widths=widths, learning_rate=args.learning_rate, seed=seed
        )
        for seed in seeds
    ]
    if args.drift:
        for spec in args.drift:
            report_drift(args.directory, trainings, args.cache, args.precision, spec)
        return
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
