"""Cross-validate detection settings on SKAB: leave-files-out folds x training seeds.

Each file's autoencoder is trained once per seed and its errors cached (bench/sweep_skab.py's
cache); every setting is replayed over them with the gateway's own `build_threshold`/`decide`.

What it prints, for every setting of `--grid` (sweep_skab's axes, and rebaseline, share, reset,
return):

- all files, per seed (F1 / FAR / MAR / NAB standard), their mean, standard deviation and range,
  and how many seeds meet the bars (F1 >= 0.78, FAR <= 20 %, MAR <= 25 %, NAB >= 28);
- per fold (seeds pooled), mean / std / range over the folds;
- the alarmed rows of the anomaly-free directory per seed (`--free`), which must stay < 1 %;
- with `--files`, each file's false-positive and missed rows, seeds summed (where the errors are).

What-ifs on the errors (the scorer has neither): `--score` replays a PCA statistic or an AE + PCA
ensemble; grid keys `adapt`, `n`, `centre`, `scale`, `recentre`, `slow` replay each file row by
row with the model's input centred on a gated running estimate of normal (bench/cv_adapt.py);
`--context Temperature:0.5,Thermocouple:0.5` weights those features' squared residuals
down in the error's mean (weight 0 or no weight: left out), through the same cached int8 models.
Grid keys `error=mean|max|top2` and `cap` replay a per-feature standardised error through the
same cached int8 models (bench/cv_standard.py).

Then the cross-validated choice: for each fold held out, the setting with the smallest
shortfall from the bars on the other folds (seeds pooled; ties: the higher NAB; a setting that
alarms >= 1 % of the anomaly-free rows for any seed is not eligible) and its figures on the
held-out fold; the final choice is made the same way on every fold. The
held-out figures, pooled, estimate what the selection gives on files it did not see.

    .venv/bin/python bench/cv_skab.py ../shared/data/skab/valve1
        --free ../shared/data/skab/anomaly-free --seeds 0,1,2,3,4 --folds 4
        --grid "statistic=mean_std k=6,6.5,7 on=1 off=10 clear=0.9 floor=0.8 window=1000
                alpha=1 rebaseline=0,200,400" [--cache DIR] [--precision int8|float]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from cv_adapt import Adapt, Model, evaluate_adapted, open_model
from cv_standard import Standard, with_standard
from sweep_skab import (
    PRECISIONS,
    FileErrors,
    Result,
    Setting,
    cached_models,
    evaluate,
    file_errors,
    grid,
    int8_errors,
    replay,
    train_and_score,
    train_key,
)

from appliance.detect.runtime import open_runtime, reconstruction_error
from appliance.detect.scorer import AssetDetector, BundleModel
from appliance.evaluation.evaluate import SKAB_TRAIN_ROWS
from appliance.evaluation.skab import find_skab_csvs, load_skab_csv
from appliance.training.autoencoder import TrainSettings

MIN_F1, MAX_FAR, MAX_MAR, MIN_NAB = 0.78, 20.0, 25.0, 28.0
"""The bars of issue 13 (checked there on unseen files)."""
MAX_FREE_ALARMED = 1.0
"""Percent of the anomaly-free rows that may be alarmed."""


def shortfall(result: Result) -> float:
    """How far from the bars, in points (0: every bar met)."""
    return (
        max(0.0, MIN_F1 - result.f1) * 100
        + max(0.0, result.far - MAX_FAR)
        + max(0.0, result.mar - MAX_MAR)
        + max(0.0, MIN_NAB - result.nab["standard"])
    )


def row(result: Result) -> str:
    nab = result.nab
    return (
        f"F1 {result.f1:.3f}  FAR {result.far:6.2f}  MAR {result.mar:6.2f}  "
        f"NAB {nab['standard']:6.2f} {nab['low_fp']:6.2f} {nab['low_fn']:6.2f}"
    )


def pooled(results: Sequence[Result]) -> Result:
    return sum(results[1:], results[0])


@dataclass(frozen=True)
class Measured:
    """One setting's results per (seed, fold), and the anomaly-free alarmed % per seed."""

    setting: Setting
    by_seed_fold: list[list[Result]]
    free_alarmed: list[float]

    def seed(self, s: int) -> Result:
        return pooled(self.by_seed_fold[s])

    def fold(self, f: int) -> Result:
        return pooled([folds[f] for folds in self.by_seed_fold])

    def folds_except(self, f: int) -> Result:
        return pooled([r for folds in self.by_seed_fold for i, r in enumerate(folds) if i != f])

    @property
    def eligible(self) -> bool:
        return all(rate < MAX_FREE_ALARMED for rate in self.free_alarmed)


def stdev(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def spread(values: Sequence[float]) -> str:
    sd = stdev(values)
    return f"{statistics.fmean(values):6.2f} ± {sd:5.2f} [{min(values):6.2f}, {max(values):6.2f}]"


def summary(label: str, results: Sequence[Result]) -> list[str]:
    columns: dict[str, Callable[[Result], float]] = {
        "F1 %": lambda r: 100 * r.f1,
        "FAR %": lambda r: r.far,
        "MAR %": lambda r: r.mar,
        "NAB std": lambda r: r.nab["standard"],
    }
    lines = [f"    {label}: mean ± sd [min, max]"]
    lines += [
        f"      {name:8} {spread([get(r) for r in results])}" for name, get in columns.items()
    ]
    return lines


def report(measured: Measured) -> None:
    seeds = len(measured.by_seed_fold)
    folds = len(measured.by_seed_fold[0])
    print(f"\n{measured.setting.name}")
    print(f"  all files, seeds pooled: {row(pooled([measured.seed(s) for s in range(seeds)]))}")
    for s in range(seeds):
        result = measured.seed(s)
        print(f"    seed {s}: {row(result)}  bars {'met' if shortfall(result) == 0 else '-'}")
    met = sum(shortfall(measured.seed(s)) == 0 for s in range(seeds))
    print(f"    bars met for {met} of {seeds} seeds")
    for line in summary("over seeds", [measured.seed(s) for s in range(seeds)]):
        print(line)
    for f in range(folds):
        print(f"    fold {f}: {row(measured.fold(f))}")
    for line in summary("over folds", [measured.fold(f) for f in range(folds)]):
        print(line)
    if measured.free_alarmed:
        rates = " ".join(f"{rate:.2f}" for rate in measured.free_alarmed)
        print(f"    anomaly-free alarmed % per seed: {rates}")


def compact(measured: Measured, varying: Sequence[str]) -> str:
    """One line: the varying axes; pooled figures; over seeds and folds, mean ± sd of F1, FAR,
    MAR, NAB; seeds meeting the bars; anomaly-free alarmed %, worst seed and mean."""
    seeds = [measured.seed(s) for s in range(len(measured.by_seed_fold))]
    folds = [measured.fold(f) for f in range(len(measured.by_seed_fold[0]))]
    name = " ".join(a for a in measured.setting.name.split() if a.split("=")[0] in varying)

    def sd(results: Sequence[Result]) -> str:
        values = [
            [100 * r.f1 for r in results],
            [r.far for r in results],
            [r.mar for r in results],
            [r.nab["standard"] for r in results],
        ]
        return " ".join(f"{statistics.fmean(v):5.1f}±{stdev(v):4.1f}" for v in values)

    met = sum(shortfall(r) == 0 for r in seeds)
    free = max(measured.free_alarmed, default=float("nan"))
    free_mean = statistics.fmean(measured.free_alarmed) if measured.free_alarmed else float("nan")
    all_files = pooled(seeds)
    return (
        f"{name:34} | {100 * all_files.f1:5.1f} {all_files.far:5.1f} {all_files.mar:5.1f} "
        f"{all_files.nab['standard']:5.1f} | {sd(seeds)} | {sd(folds)} | {met} | "
        f"{free:5.2f} {free_mean:5.2f}"
    )


COMPACT_HEADER = (
    "setting                            | pooled F1%  FAR   MAR   NAB | over seeds: F1% FAR MAR"
    " NAB mean±sd | over folds: the same | seeds met | free % max mean"
)


def per_file(
    setting: Setting, runs: Sequence[Sequence[FileErrors]], names: Sequence[str], precision: str
) -> str:
    """Each file's false-positive / missed rows, summed over seeds: 'name fp/fn ...'."""
    cells = []
    for i, name in enumerate(names):
        counts = [evaluate([files[i]], setting, precision).counts for files in runs]
        cells.append(f"{Path(name).stem}:{sum(c.fp for c in counts)}/{sum(c.fn for c in counts)}")
    return "    per file, fp/fn rows (seeds summed): " + " ".join(cells)


def per_file_adapted(
    setting: Setting,
    adapt: Adapt,
    models: Sequence[Sequence[Sequence[Model]]],
    names: Sequence[str],
) -> str:
    """As per_file, for a setting replayed with the adapted input centre."""
    per_seed = [[m for fold in folds for m in fold] for folds in models]
    cells = []
    for i, name in enumerate(names):
        counts = [evaluate_adapted([files[i]], setting, adapt).counts for files in per_seed]
        cells.append(f"{Path(name).stem}:{sum(c.fp for c in counts)}/{sum(c.fn for c in counts)}")
    return "    per file, fp/fn rows (seeds summed): " + " ".join(cells)


def runs_of(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True, in test rows."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()
    return list(zip(starts, ends, strict=True))


def segments(
    setting: Setting, files: Sequence[FileErrors], paths: Sequence[Path], precision: str
) -> None:
    """Why each file is right or wrong (first seed): anomaly and alarm rows, the error's mean on
    the training rows, before, during and after the anomaly, each feature's mean |z| (against the
    training rows) before and during it, and the share of normal test rows above the training
    errors' mean + k sd (what a threshold calibrated on the learnt rows alone would alarm)."""
    k = setting.detector.adaptive.k
    for data, path in zip(files, paths, strict=True):
        anomaly = data.anomaly.astype(bool)
        flags = replay(data, setting, precision)
        train, test = data.train[precision], data.test[precision]
        spans = runs_of(anomaly)
        start, end = (spans[0][0], spans[-1][1]) if spans else (len(test), len(test))
        parts = [train, test[:start], test[anomaly], test[end:]]
        means = " / ".join(f"{p.mean():.2f}" if len(p) else "-" for p in parts)
        above = float(np.mean(test[~anomaly] > train.mean() + k * train.std()))
        print(f"  {path.stem}: anomaly {spans} alarms {runs_of(flags)}")
        print(f"    fp {int((flags & ~anomaly).sum())} fn {int((~flags & anomaly).sum())}; error "
              f"training / before / during / after: {means}; normal rows above mean + {k:g} sd "
              f"of the training errors: {100 * above:.1f} %")  # fmt: skip
        recording = load_skab_csv(path)
        learnt = recording.features[: len(train)]
        z = np.abs((recording.features[len(train) :] - learnt.mean(0)) / learnt.std(0))
        for label, rows in (("before", slice(0, start)), ("during", anomaly)):
            cells = " ".join(
                f"{n[:12]} {v:.1f}"
                for n, v in zip(recording.feature_names, z[rows].mean(0), strict=True)
            )
            print(f"    mean |z| {label}: {cells}")


def cross_validate(measured: Sequence[Measured]) -> None:
    folds = len(measured[0].by_seed_fold[0])
    eligible = [m for m in measured if m.eligible] or list(measured)
    held_out = []
    print("\ncross-validated choice (chosen on the other folds, seeds pooled; shown held out)")
    for f in range(folds):
        best = min(
            eligible,
            key=lambda m: (shortfall(m.folds_except(f)), -m.folds_except(f).nab["standard"]),
        )
        held_out.append(best.fold(f))
        print(f"  fold {f}: {best.setting.name}")
        print(f"    chosen on the rest: {row(best.folds_except(f))}")
        print(f"    held out:           {row(best.fold(f))}")
    print(f"  held-out folds pooled: {row(pooled(held_out))}")
    everything = {id(m): pooled([m.fold(f) for f in range(folds)]) for m in eligible}
    final = min(
        eligible,
        key=lambda m: (shortfall(everything[id(m)]), -everything[id(m)].nab["standard"]),
    )
    print(f"  chosen on every fold: {final.setting.name}")


def cost(path: Path, directory: Path, setting: Setting, cache: Path, repeat: int = 5) -> None:
    """Per-window cost of `AssetDetector.score_row` (int8 bundle, built-in kernels) with
    `setting`, over every row of `path` (best of `repeat` passes), as the gateway scores."""
    bundle, _ = cached_models(path, directory, TrainSettings(seed=0), cache)
    rows = load_skab_csv(path).features
    best = float("inf")
    for _ in range(repeat):
        detector = AssetDetector(
            "cost", BundleModel(bundle, open_runtime(bundle)), setting.detector
        )
        start = time.perf_counter()
        for t, row in enumerate(rows):
            detector.score_row(row, float(t))
        best = min(best, (time.perf_counter() - start) / len(rows))
    print(f"per window, {path.name}, {setting.name}: {best * 1e6:.1f} us")


SCORES = ("ae", "q", "t2", "ae+q", "ae+t2", "ae+t2q")


def pca_statistics(features: np.ndarray, train_rows: int, variance: float = 0.95) -> np.ndarray:
    """(rows, 2): Hotelling's T² and the Q (squared prediction error) of every row under a PCA of
    the first `train_rows` rows, standardised by their mean and standard deviation."""
    train = features[:train_rows]
    scaled = (features - train.mean(axis=0)) / np.where(train.std(axis=0) > 0, train.std(axis=0), 1)
    _, singular, vt = np.linalg.svd(scaled[:train_rows], full_matrices=False)
    eigen = singular**2 / (train_rows - 1)
    kept = int(np.searchsorted(np.cumsum(eigen) / eigen.sum(), variance) + 1)
    scores = scaled @ vt[:kept].T
    t2 = np.sum(scores**2 / eigen[:kept], axis=1)
    q = np.sum((scaled - scores @ vt[:kept]) ** 2, axis=1)
    return np.stack([t2, q], axis=1)


def with_score(data: FileErrors, path: Path, score: str, precision: str) -> FileErrors:
    """The file's errors replaced by a PCA statistic or an ensemble with it (what-ifs): each
    part divided by its mean over the training rows, then summed."""
    if score == "ae":
        return data
    rows = len(data.train[precision])
    stats = pca_statistics(load_skab_csv(path).features, rows)
    ae = np.concatenate([data.train[precision], data.test[precision]])
    parts = {"q": [stats[:, 1]], "t2": [stats[:, 0]], "ae+q": [ae, stats[:, 1]]}
    parts["ae+t2"] = [ae, stats[:, 0]]
    parts["ae+t2q"] = [ae, stats[:, 0], stats[:, 1]]
    combined = sum(part / part[:rows].mean() for part in parts[score])
    train = dict(data.train) | {precision: combined[:rows]}
    test = dict(data.test) | {precision: combined[rows:]}
    return replace(data, train=train, test=test)


def with_context(
    data: FileErrors, path: Path, directory: Path, train: TrainSettings, cache: Path,
    weights: dict[str, float],
) -> FileErrors:  # fmt: skip
    """The file's int8 errors with the named features' squared residuals weighted (0: left out)
    in the error's mean (a what-if: the model still sees every feature as input, but those count
    less or not at all as error)."""
    if all(weight == 1.0 for weight in weights.values()):
        return data
    bundle, _ = cached_models(path, directory, train, cache)
    recording = load_skab_csv(path)
    _, per_feature = reconstruction_error(bundle, open_runtime(bundle), recording.features)
    column = np.array([weights.get(name, 1.0) for name in recording.feature_names])
    errors = per_feature @ column / column.sum()
    rows = len(data.train["int8"])
    train_errors = dict(data.train) | {"int8": errors[:rows]}
    return replace(data, train=train_errors, test=dict(data.test) | {"int8": errors[rows:]})


def context_weights(context: str, weight: float) -> dict[str, float]:
    """'Temperature,Thermocouple:0.5' -> each named feature's weight (`weight` unless given)."""
    items = [item.split(":") for item in context.split(",") if item]
    return {item[0]: float(item[1]) if len(item) > 1 else weight for item in items}


def trailing_inputs(
    features: np.ndarray, names: Sequence[str], spec: str
) -> tuple[np.ndarray, list[str]]:
    """'W' or 'W:change': each row with its change against the mean of the W rows before it
    (the first rows: of those there are), beside the row itself ('W') or instead of it."""
    length, _, mode = spec.partition(":")
    w = int(length)
    sums = np.cumsum(np.vstack([np.zeros(features.shape[1]), features]), axis=0)
    t = np.arange(len(features))
    start = np.maximum(t - w, 0)
    count = np.maximum(t - start, 1)[:, None]
    trailing = np.where(t[:, None] > 0, (sums[t] - sums[start]) / count, features)
    change = features - trailing
    change_names = [f"{name} change" for name in names]
    if mode == "change":
        return change, change_names
    return np.hstack([features, change]), [*names, *change_names]


def with_trailing(
    data: FileErrors, path: Path, directory: Path, train: TrainSettings, cache: Path, spec: str
) -> FileErrors:
    """The errors of a model trained on each row with its trailing-window change (a what-if: a
    model of the trailing window; trained once per file and seed, cached)."""
    if not spec:
        return data
    where = cache / f"trailing_{spec.replace(':', '_')}" / train_key(train)
    cached = where / path.relative_to(directory).with_suffix(".npz")
    if not cached.exists():
        recording = load_skab_csv(path)
        inputs, names = trailing_inputs(recording.features, recording.feature_names, spec)
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **train_and_score(inputs, names, train))  # type: ignore[arg-type]
    stored = np.load(cached)
    train_errors = {p: stored[f"train_{p}"] for p in PRECISIONS}
    return replace(data, train=train_errors, test={p: stored[f"test_{p}"] for p in PRECISIONS})


def crossfit_errors(
    path: Path, directory: Path, train: TrainSettings, cache: Path, blocks: int
) -> np.ndarray:
    """Out-of-sample int8 errors of the learnt rows: each of `blocks` contiguous blocks scored
    by a model trained (same settings and seed) on the other rows (cached on disk)."""
    where = cache / train_key(train) / f"crossfit{blocks}"
    cached = where / path.relative_to(directory).with_suffix(".npy")
    if not cached.exists():
        rows = load_skab_csv(path)
        learnt = rows.features[:SKAB_TRAIN_ROWS]
        errors = np.empty(len(learnt))
        for block in np.array_split(np.arange(len(learnt)), blocks):
            fit = np.setdiff1d(np.arange(len(learnt)), block)
            errors[block] = int8_errors(learnt[fit], rows.feature_names, train, learnt[block])
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, errors)
    stored: np.ndarray = np.load(cached)
    return stored


@dataclass(frozen=True)
class WhatIf:
    """Which errors a run replays: the autoencoder's (cached), with `--context` and `--score`."""

    cache: Path
    score: str
    precision: str
    trailing: str = ""
    crossfit: int = 0

    residuals: dict[tuple[Path, str], np.ndarray] = field(default_factory=dict)

    def errors(
        self, path: Path, directory: Path, train: TrainSettings, weights: dict[str, float],
        standard: Standard | None = None,
    ) -> FileErrors:  # fmt: skip
        data = file_errors(path, directory, train, self.cache)
        if self.crossfit:
            seed = crossfit_errors(path, directory, train, self.cache, self.crossfit)
            data = replace(data, train={**data.train, "int8": seed})
        if standard is not None:
            return with_standard(data, self.per_feature(path, directory, train), standard)
        data = with_trailing(data, path, directory, train, self.cache, self.trailing)
        data = with_context(data, path, directory, train, self.cache, weights)
        return with_score(data, path, self.score, self.precision)

    def per_feature(self, path: Path, directory: Path, train: TrainSettings) -> np.ndarray:
        """Every row's per-feature squared residuals under the file's cached int8 model."""
        key = (path, train_key(train))
        if key not in self.residuals:
            bundle, _ = cached_models(path, directory, train, self.cache)
            features = load_skab_csv(path).features
            self.residuals[key] = reconstruction_error(bundle, open_runtime(bundle), features)[1]
        return self.residuals[key]


@dataclass(frozen=True)
class Loaded:
    """Every seed's files' errors (and folded), and the anomaly-free files', for one weighting."""

    runs: list[list[FileErrors]]
    folded: list[list[list[FileErrors]]]
    free: list[list[FileErrors]]


def load(
    what_if: WhatIf, paths: Sequence[Path], directory: Path, free: Path | None,
    trainings: Sequence[TrainSettings], weights: dict[str, float], size: int,
    standard: Standard | None = None,
) -> Loaded:  # fmt: skip
    runs = [[what_if.errors(p, directory, t, weights, standard) for p in paths] for t in trainings]
    folded = [[files[i : i + size] for i in range(0, len(files), size)] for files in runs]
    free_paths = find_skab_csvs(free) if free else []
    free_runs = [
        [what_if.errors(p, free, t, weights, standard) for p in free_paths] for t in trainings
    ]
    return Loaded(runs, folded, free_runs if free else [])


def axis_value(setting: Setting, axis: str, default: float) -> float:
    """A grid axis the detector settings do not hold (here `weight`), from the setting's name."""
    values = dict(item.split("=", 1) for item in setting.name.split())
    return float(values.get(axis, default))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--free", type=Path, help="anomaly-free SKAB directory")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--folds", type=int, default=4, help="contiguous groups of files")
    parser.add_argument("--precision", choices=PRECISIONS, default="int8")
    parser.add_argument(
        "--grid", action="append", required=True,
        help="settings (every combination); repeat to measure the union of several grids",
    )  # fmt: skip
    parser.add_argument("--detail", action="store_true", help="per seed and fold blocks")
    parser.add_argument("--files", action="store_true", help="per file fp/fn rows too")
    parser.add_argument("--cost", action="store_true", help="time score_row per setting instead")
    parser.add_argument(
        "--segments", action="store_true",
        help="per file, first seed: anomaly and alarm rows, error levels, features' drift",
    )  # fmt: skip
    parser.add_argument(
        "--score", choices=SCORES, default="ae",
        help="what-if: replay a PCA statistic or an AE + PCA ensemble instead of the AE error",
    )  # fmt: skip
    parser.add_argument(
        "--context", default="",
        help="what-if: features weighted in the error, 'name[:weight],...' (default weight: the"
        " grid's weight axis, else 0: left out), e.g. Temperature,Thermocouple",
    )  # fmt: skip
    parser.add_argument(
        "--trailing", default="",
        help="what-if: a model of each row and its change against the mean of the W rows before"
        " it ('W'), or of that change only ('W:change'); trained and cached per file and seed",
    )  # fmt: skip
    parser.add_argument(
        "--crossfit", type=int, default=0, metavar="BLOCKS",
        help="what-if: seed the threshold with out-of-sample errors of the learnt rows, each of"
        " BLOCKS time blocks scored by a model trained on the others (int8; 0: in-sample)",
    )  # fmt: skip
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sweep_skab")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    trainings = [TrainSettings(seed=seed) for seed in seeds]
    paths = find_skab_csvs(args.directory)
    settings = [setting for spec in args.grid for setting in grid(spec)]
    if args.cost:
        for setting in settings:
            cost(paths[0], args.directory, setting, args.cache)
        return
    size = -(-len(paths) // args.folds)
    what_if = WhatIf(args.cache, args.score, args.precision, args.trailing, args.crossfit)
    loaded: dict[tuple[float, Standard | None], Loaded] = {}
    names = [p.name for p in paths]
    print(f"{args.directory}: folds {[names[i : i + size] for i in range(0, len(names), size)]}")
    print(f"seeds {seeds}, precision {args.precision}, context {args.context or '-'}")
    axes = [dict(a.split("=", 1) for a in spec.split()) for spec in args.grid]
    keys = dict.fromkeys(key for spec in axes for key in spec)
    values = {key: {spec.get(key) for spec in axes} for key in keys}
    varying = [k for k in keys if len(values[k]) > 1 or any("," in (v or "") for v in values[k])]
    if not args.detail:
        print(COMPACT_HEADER)
    measured = []
    models: list[list[list[Model]]] = []
    free_models: list[list[Model]] = []
    for setting in settings:
        adapt = Adapt.of(setting)
        if adapt is not None:
            if not models:
                opened = [[open_model(p, args.directory, t, args.cache) for p in paths]
                          for t in trainings]  # fmt: skip
                models = [[m[i : i + size] for i in range(0, len(m), size)] for m in opened]
                free_paths = find_skab_csvs(args.free) if args.free else []
                free_models = [[open_model(p, args.free, t, args.cache) for p in free_paths]
                               for t in trainings]  # fmt: skip
            by_seed_fold = [[evaluate_adapted(fold, setting, adapt) for fold in f] for f in models]
            free_alarmed = [evaluate_adapted(m, setting, adapt).far for m in free_models if m]
            measured.append(Measured(setting, by_seed_fold, free_alarmed))
            print(compact(measured[-1], varying) if not args.detail else "", flush=True)
            if args.detail:
                report(measured[-1])
            if args.files:
                print(per_file_adapted(setting, adapt, models, names), flush=True)
            continue
        weight, standard = axis_value(setting, "weight", 0.0), Standard.of(setting)
        if (weight, standard) not in loaded:
            weights = context_weights(args.context, weight)
            loaded[weight, standard] = load(
                what_if, paths, args.directory, args.free, trainings, weights, size, standard
            )
        data = loaded[weight, standard]
        by_seed_fold = [
            [evaluate(fold, setting, args.precision) for fold in f] for f in data.folded
        ]
        free_alarmed = [evaluate(files, setting, args.precision).far for files in data.free]
        measured.append(Measured(setting, by_seed_fold, free_alarmed))
        if args.detail:
            report(measured[-1])
        else:
            print(compact(measured[-1], varying), flush=True)
        if args.files:
            print(per_file(setting, data.runs, names, args.precision), flush=True)
        if args.segments:
            segments(setting, data.runs[0], paths, args.precision)
    cross_validate(measured)


if __name__ == "__main__":
    main()
