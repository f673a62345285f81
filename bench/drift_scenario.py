"""Issue 16's bar in compressed time: 30 days of one asset, a slowly growing outer-race defect and
a daily load cycle; the receiver's drift analysis day by day against the gateway's detector on
the same windows. Per variant (defect or healthy, the rig's random seed, the load cycle's shape,
days missing): the day of the first drift finding, the gateway's first alarm day, and the margin
(the strongest series' weakest test over all days: a finding where >= 1).

One window every `--every-min` minutes: a burst of the emulated MCU's signal
(appliance.rig.mcu.MachineSignal, the demo's 3 vibration channels at 1 kHz, quantised as the
MCU does) and of the I2C plant (1 Hz; its load, hence the motor current, follows the same
cycle), through the demo asset's real feature engine; the last complete vector of the burst is
the window. Load cycles: `sine`, imbalance and harmonics x (1 + 0.2 sin) over 24 h; `shifts`,
x 1.2 on weekdays 06-22 h and x 0.75 at night and at weekends (a weekly cycle inside the 3-week
window). Defect: `outer_race_g` = `--defect-g` x exp((day - onset) / `--growth-days`) from
`--onset-day` on. Gaps: whole days without a record (the gateway offline, its backlog lost).
The gateway's detector (open_detector: the demo's default bundle and adaptive threshold) scores
every window; its first raised alarm is the gateway's first SMS. The vectors and scores go into
a fresh SQLite receiver database (split_range + ingest_many), and run_drift runs with each day
as the window's last (`--in-memory`: the same aggregates and detect() without the database,
for sweeps; the finding days agree).

    .venv/bin/python bench/drift_scenario.py --seeds 1 2 3 --shapes sine shifts gaps
"""

from __future__ import annotations

import argparse
import asyncio
import math
import pickle
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from appliance.config import I2cSource
from appliance.detect.assets import detector_settings
from appliance.detect.bundle import ModelBundle
from appliance.detect.runtime import open_runtime
from appliance.detect.scorer import AssetDetector, BundleModel
from appliance.features.from_config import build_feature_engines
from appliance.records import FeatureVector, SampleBlock, Score
from appliance.rig.demo import demo_config
from appliance.rig.i2c import Clock as PlantClock
from appliance.rig.i2c import PlantModel
from appliance.rig.mcu import MachineSignal, default_scale
from appliance.training.autoencoder import TrainSettings, train_bundle
from appliance.uplink.schema import SeqRecord, split_range
from firmware_bridge.codec import SampleFormat
from receiver.db import open_database
from receiver.drift.findings import assess_causes, score_series
from receiver.drift.run import run_drift
from receiver.drift.settings import TrendParams
from receiver.drift.trend import DailyAggregate, daily_aggregate

DAY0 = 20_454  # 2026-01-01, a Thursday
RATE = 1000
BURST_S = 8
SLOW_S = 64
GAP_DAYS = (5, 9, 10, 16, 21, 22)
"""The `gaps` variants' missing days: one, two and two in a row, across the window."""


@dataclass(frozen=True)
class Variant:
    defect: bool
    seed: int
    load: str = "sine"
    gaps: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        gaps = f" gaps {len(self.gaps)}d" if self.gaps else ""
        return f"{'defect' if self.defect else 'healthy'} seed {self.seed} {self.load}{gaps}"


def load_factor(shape: str, t: float) -> float:
    """The machine's load at machine time t (s from DAY0's midnight): 1 on average."""
    hour = (t % 86400) / 3600
    if shape == "sine":
        return 1.0 + 0.2 * math.sin(2 * math.pi * hour / 24)
    weekend = (int(t // 86400) + 3) % 7 >= 5  # DAY0 is a Thursday (weekday 3)
    return 1.2 if not weekend and 6 <= hour < 22 else 0.75


class CyclingPlant(PlantModel):
    """The I2C plant whose load (and motor current) follows the daily cycle too."""

    def __init__(self, now: PlantClock, shape: str) -> None:
        self.shape = shape
        super().__init__(now)

    def load(self) -> float:
        return min(1.0, super().load() * load_factor(self.shape, self._now()) / 1.2)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def windows(  # type: ignore[no-untyped-def]
    days: int,
    every_min: float,
    defect: tuple[float, float, float] | None,
    seed: int,
    load: str = "sine",
    gaps: tuple[int, ...] = (),
) -> Iterator[tuple[int, FeatureVector, str, object]]:
    """(day, vector, asset, model config) per window; the defect (g at onset, onset day, growth
    days) or none."""
    with tempfile.TemporaryDirectory() as tmp:
        config = demo_config(Path(tmp), [])
    asset = config.assets[0]
    vibration = [c for c in asset.channels if c.is_vibration]
    slow = [c for c in asset.channels if isinstance(c.source, I2cSource)]
    scale = default_scale(SampleFormat.INT32)
    rng = np.random.default_rng(seed)
    clock = Clock()
    plant = CyclingPlant(clock, load)
    readers = {"temperature": plant.temperature_c, "current": plant.current_a,
               "bus_voltage": plant.bus_voltage_v}  # fmt: skip
    per_day = int(24 * 60 / every_min)
    for index in range(days * per_day):
        day, start = index // per_day, index * every_min * 60.0
        if day in gaps:
            continue
        factor = load_factor(load, start)
        machine = MachineSignal(imbalance_g=0.05 * factor,
                                harmonic_g=(0.02 * factor, 0.008 * factor))  # fmt: skip
        if defect is not None and day >= defect[1]:
            machine.outer_race_g = defect[0] * np.exp((day - defect[1]) / defect[2])
        engine = build_feature_engines(config)[asset.name]
        vectors: list[FeatureVector] = []
        for second in range(-SLOW_S, BURST_S):
            t_host = DAY0 * 86400.0 + start + second
            clock.now = start + second
            for channel in slow:
                sample = np.array([readers[channel.source.quantity]()])
                vectors += engine.push(SampleBlock(asset.name, channel.name, t_host, 1.0, sample))
            if second < 0:
                continue
            t = start + second + np.arange(RATE) / RATE
            counts = np.round(machine.render(t, len(vibration), rng) / scale) * scale
            for column, channel in enumerate(vibration):
                block = SampleBlock(asset.name, channel.name, t_host, RATE, counts[:, column])
                vectors += engine.push(block)
        complete = [v for v in vectors if np.all(np.isfinite(v.values))]
        if complete:
            yield day, complete[-1], asset.name, asset.model


def train_with_load_cycle(out_dir: Path, load: str) -> ModelBundle:
    """The gateway's model for this machine: trained on healthy days with its load cycle (2 days
    every 5 minutes; a week every 15 for `shifts`, whose weekends differ; another seed than the
    scenario's), as `appliance train` would from its store."""
    days, every_min = (2, 5.0) if load == "sine" else (7, 15.0)
    vectors = [vector for _, vector, _, _ in windows(days, every_min, None, 0, load)]
    rows = np.stack([v.values for v in vectors])
    times = np.array([v.window_end for v in vectors])
    return train_bundle(rows, vectors[0].names, asset=vectors[0].asset, version="scenario",
                        out_dir=out_dir / load, window_times=times,
                        settings=TrainSettings(seed=0, threshold_margin=2.0))  # fmt: skip


@dataclass
class Played:
    """What the gateway sent (records in order) and when it first alarmed."""

    records: list[SeqRecord] = field(default_factory=list)
    first_alarm: int | None = None


def play(variant: Variant, args: argparse.Namespace, bundle: ModelBundle) -> Played:
    defect = (args.defect_g, args.onset_day, args.growth_days) if variant.defect else None
    played, detector = Played(), None
    for day, vector, asset, model in windows(args.days, args.every_min, defect, variant.seed,
                                             variant.load, variant.gaps):  # fmt: skip
        if detector is None:
            runtime = BundleModel(bundle, open_runtime(bundle))
            detector = AssetDetector(asset, runtime, detector_settings(model))  # type: ignore[arg-type]
        verdict = detector.score_vector(vector)
        event = verdict.decision.event
        if event is not None and event.kind == "raised" and played.first_alarm is None:
            played.first_alarm = day
        seq = len(played.records)
        played.records += [(seq + 1, vector), (seq + 2, verdict.score)]
    return played


@dataclass
class Outcome:
    first_finding: int | None = None
    what: str = ""
    margin: float = 0.0
    """The strongest series' weakest test, over all days (a finding where >= 1)."""
    margin_at: str = ""


def daily_aggregates(played: Played) -> dict[int, tuple[list[str], DailyAggregate]]:
    """Per day: the series' names and aggregates, as the receiver computes them from stored
    records (feature vectors and, per model, the anomaly score's error)."""
    by_day: dict[int, tuple[list[FeatureVector], dict[str, list[float]]]] = {}
    for _, record in played.records:
        t = record.window_end if isinstance(record, FeatureVector) else record.t
        vectors, errors = by_day.setdefault(int(t // 86400) - DAY0, ([], {}))
        if isinstance(record, FeatureVector):
            vectors.append(record)
        else:
            errors.setdefault(record.model_id, []).append(record.error)
    result = {}
    for day, (vectors, errors) in by_day.items():
        features = daily_aggregate(np.stack([v.values for v in vectors]))
        scores = [daily_aggregate(np.array(e).reshape(-1, 1)) for e in errors.values()]
        names = [*vectors[0].names, *(score_series(m) for m in errors)]
        result[day] = (names, DailyAggregate(
            np.concatenate([features.median, *(s.median for s in scores)]),
            np.concatenate([features.p95, *(s.p95 for s in scores)]),
            np.concatenate([features.count, *(s.count for s in scores)]),
        ))  # fmt: skip
    return result


def window_series(
    aggregates: dict[int, tuple[list[str], DailyAggregate]], last_day: int, params: TrendParams
) -> dict[tuple[str, str], tuple[list[int], list[float]]]:
    series: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    for day in range(last_day - params.window_days + 1, last_day + 1):
        if day not in aggregates:
            continue
        names, aggregate = aggregates[day]
        for stat in ("median", "p95"):
            for name, value in zip(names, getattr(aggregate, stat), strict=True):
                days, values = series.setdefault((name, stat), ([], []))
                days.append(DAY0 + day)
                values.append(float(value))
    return series


def analyse_in_memory(played: Played, days: int, params: TrendParams) -> Outcome:
    """detect() day by day on the aggregates, and the margin of every series on every day."""
    outcome, aggregates = Outcome(), daily_aggregates(played)
    for day in range(days):
        causes = assess_causes(window_series(aggregates, day, params), params)
        for cause, (strength, assessed) in sorted(causes.items()):
            if strength > outcome.margin:
                second = assessed[params.min_series - 1].key
                outcome.margin, outcome.margin_at = strength, f"day {day} {cause}: {second}"
            if strength >= 1.0 and outcome.first_finding is None:
                head = assessed[0]
                outcome.first_finding = day
                outcome.what = f"{' '.join(head.key)} {100 * head.trend.rate_per_week:.1f} %/week"
    return outcome


async def analyse_in_database(played: Played, days: int, params: TrendParams) -> Outcome:
    """The receiver's own path: ingest the records, run_drift with each day as the last."""
    outcome = Outcome()
    records = played.records
    with tempfile.TemporaryDirectory() as tmp:
        db = await open_database(f"sqlite:///{Path(tmp) / 'rx.db'}")
        try:
            for lo in range(0, len(records), 500):
                chunk = records[lo : lo + 500]
                await db.ingest_many(split_range("gw", lo, lo + len(chunk), chunk), 0.0)
            for day in range(days):
                run = await run_drift(db, params, last_day=DAY0 + day,
                                      now=(DAY0 + day + 1) * 86400.0)  # fmt: skip
                opened = [e for e in run.events if e["action"] == "opened"]
                if opened and outcome.first_finding is None:
                    outcome.first_finding, outcome.what = day, str(opened[0]["summary"])
        finally:
            await db.close()
    return outcome


SHAPES: dict[str, tuple[str, tuple[int, ...]]] = {
    "sine": ("sine", ()),
    "shifts": ("shifts", ()),
    "gaps": ("sine", GAP_DAYS),
}


def variants(args: argparse.Namespace) -> list[Variant]:
    """Per shape, per seed, defect and healthy."""
    return [
        Variant(defect, seed, *SHAPES[shape])
        for shape in args.shapes
        for seed in args.seeds
        for defect in (True, False)
        if not (args.healthy_only and defect) and not (args.defect_only and not defect)
    ]


def played_for(variant: Variant, args: argparse.Namespace, tmp: Path,
               bundles: dict[str, ModelBundle]) -> Played:  # fmt: skip
    """The variant's gateway run, from `--cache` when it was played before with the same
    settings (the simulation is most of a variant's time; the analysis can then be re-run)."""
    name = (f"{variant.label}-{args.days}d-{args.every_min}min-{args.defect_g}g-"
            f"{args.onset_day}-{args.growth_days}.pkl").replace(" ", "_")  # fmt: skip
    path = Path(args.cache) / name if args.cache else None
    if path is not None and path.exists():
        with path.open("rb") as file:
            cached: Played = pickle.load(file)
            return cached
    if variant.load not in bundles:
        bundles[variant.load] = train_with_load_cycle(tmp, variant.load)
    played = play(variant, args, bundles[variant.load])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as file:
            pickle.dump(played, file)
    return played


def alarmed_windows(played: Played) -> dict[float, bool]:
    """Whether the gateway was in alarm, per window end time."""
    return {r.t: r.anomalous for _, r in played.records if isinstance(r, Score)}


def first_defect_alarm(defect: Played, healthy: Played) -> int | None:
    """The day of the defect run's first window in alarm while its healthy twin (same seed, load
    and gaps: the same noise, the defect's strikes draw no random numbers) was not: the first
    alarm the defect caused, where the gateway's first alarm may be a false one both runs share."""
    twin = alarmed_windows(healthy)
    for t, alarmed in alarmed_windows(defect).items():
        if alarmed and not twin.get(t, False):
            return int(t // 86400) - DAY0
    return None


def twin_report(variant: Variant, defect: Played, outcome: Outcome, healthy: Played) -> str:
    alarm, finding = first_defect_alarm(defect, healthy), outcome.first_finding
    ahead = "" if finding is None or alarm is None else f"; {alarm - finding} days ahead"
    return (
        f"defect seed {variant.seed} {variant.load}: first alarm caused by the defect (its "
        f"healthy twin not in alarm) day {alarm}; first finding day {finding}{ahead}"
    )


def report(variant: Variant, played: Played, outcome: Outcome, seconds: float) -> str:
    finding, alarm = outcome.first_finding, played.first_alarm
    ahead = "" if finding is None or alarm is None else f"{alarm - finding} days ahead; "
    return (f"{variant.label}: first finding day {finding} ({outcome.what}); gateway's first "
            f"alarm day {alarm}; {ahead}margin {outcome.margin:.2f} ({outcome.margin_at}); "
            f"{seconds:.0f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--every-min", type=float, default=30.0)
    parser.add_argument("--defect-g", type=float, default=0.0001)
    parser.add_argument("--onset-day", type=float, default=3.0)
    parser.add_argument("--growth-days", type=float, default=8.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=["sine"],
                        help="sine: the sine load cycle; shifts: two shifts and weekends; "
                        "gaps: sine with 6 days missing")  # fmt: skip
    parser.add_argument("--in-memory", action="store_true",
                        help="the aggregates and detect() without the database")  # fmt: skip
    parser.add_argument("--healthy-only", action="store_true")
    parser.add_argument("--defect-only", action="store_true")
    parser.add_argument(
        "--cache",
        default="",
        help="a directory keeping each variant's played run (re-analyse fast)",
    )
    args = parser.parse_args()
    params = TrendParams()
    with tempfile.TemporaryDirectory() as tmp:
        bundles: dict[str, ModelBundle] = {}
        defect_runs: dict[Variant, tuple[Played, Outcome]] = {}
        print(params, flush=True)
        for variant in variants(args):
            started = time.perf_counter()
            played = played_for(variant, args, Path(tmp), bundles)
            outcome = analyse_in_memory(played, args.days, params)
            if not args.in_memory:
                margin = outcome.margin, outcome.margin_at
                outcome = asyncio.run(analyse_in_database(played, args.days, params))
                outcome.margin, outcome.margin_at = margin
            print(report(variant, played, outcome, time.perf_counter() - started), flush=True)
            twin = replace(variant, defect=True)
            if variant.defect:
                defect_runs[variant] = played, outcome
            elif twin in defect_runs:
                print(twin_report(variant, *defect_runs[twin], played), flush=True)


if __name__ == "__main__":
    main()
