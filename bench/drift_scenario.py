"""Issue 16's bar in compressed time: 30 days of one asset, a slowly growing outer-race defect and
a daily load cycle; the receiver's drift analysis day by day against the gateway's detector on
the same windows. Prints the day of the first drift finding, the gateway's first alarm day, and
the same 30 days without a defect (no finding expected).

One window every `--every-min` minutes: a burst of the emulated MCU's signal
(appliance.rig.mcu.MachineSignal, the demo's 3 vibration channels at 1 kHz, quantised as the
MCU does) and of the I2C plant (1 Hz), through the demo asset's real feature engine; the last
complete vector of the burst is the window. Load cycle: imbalance and harmonics x (1 + 0.2 sin)
over 24 h. Defect: `outer_race_g` = `--defect-g` x exp((day - onset) / `--growth-days`) from
`--onset-day` on. The gateway's detector (open_detector: the demo's default bundle and
adaptive threshold) scores every window; its first raised alarm is the gateway's first SMS. The
vectors and scores go into a fresh SQLite receiver database (split_range + ingest_many), and
run_drift runs with each day as the window's last.

    .venv/bin/python bench/drift_scenario.py [--days 30] [--every-min 30]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from appliance.config import I2cSource
from appliance.detect.assets import detector_settings
from appliance.detect.bundle import ModelBundle
from appliance.detect.runtime import open_runtime
from appliance.detect.scorer import AssetDetector, BundleModel
from appliance.features.from_config import build_feature_engines
from appliance.records import FeatureVector, SampleBlock
from appliance.rig.demo import demo_config
from appliance.rig.i2c import PlantModel
from appliance.rig.mcu import MachineSignal, default_scale
from appliance.training.autoencoder import TrainSettings, train_bundle
from appliance.uplink.schema import SeqRecord, split_range
from firmware_bridge.codec import SampleFormat
from receiver.db import open_database
from receiver.drift.run import run_drift
from receiver.drift.settings import TrendParams

DAY0 = 20_454  # 2026-01-01
RATE = 1000
BURST_S = 8
SLOW_S = 64


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def windows(days: int, every_min: float, defect: tuple[float, float, float] | None, seed: int):  # type: ignore[no-untyped-def]
    """(day, vector) per window, the defect (g at onset, onset day, growth days) or none."""
    with tempfile.TemporaryDirectory() as tmp:
        config = demo_config(Path(tmp), [])
    asset = config.assets[0]
    vibration = [c for c in asset.channels if c.is_vibration]
    slow = [c for c in asset.channels if isinstance(c.source, I2cSource)]
    scale = default_scale(SampleFormat.INT32)
    rng = np.random.default_rng(seed)
    clock = Clock()
    plant = PlantModel(clock)
    readers = {"temperature": plant.temperature_c, "current": plant.current_a,
               "bus_voltage": plant.bus_voltage_v}  # fmt: skip
    per_day = int(24 * 60 / every_min)
    for index in range(days * per_day):
        day, start = index // per_day, index * every_min * 60.0
        hour = (start % 86400) / 3600
        load = 1.0 + 0.2 * np.sin(2 * np.pi * hour / 24)
        machine = MachineSignal(imbalance_g=0.05 * load, harmonic_g=(0.02 * load, 0.008 * load))
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


def train_with_load_cycle(out_dir: Path) -> ModelBundle:
    """The gateway's model for this machine: trained on 2 healthy days with the load cycle (every
    5 minutes, another seed than the scenario's), as `appliance train` would from its store."""
    vectors = [vector for _, vector, _, _ in windows(2, 5.0, None, seed=0)]
    rows = np.stack([v.values for v in vectors])
    times = np.array([v.window_end for v in vectors])
    return train_bundle(rows, vectors[0].names, asset=vectors[0].asset, version="scenario",
                        out_dir=out_dir, window_times=times,
                        settings=TrainSettings(seed=0, threshold_margin=2.0))  # fmt: skip


async def scenario(
    days: int, every_min: float, defect: tuple[float, float, float] | None, bundle: ModelBundle
) -> tuple[int | None, int | None]:
    """(day of the first drift finding, day of the gateway's first alarm); None: none."""
    started = time.perf_counter()
    rows: list[SeqRecord] = []
    first_alarm: int | None = None
    detector = None
    for day, vector, asset, model in windows(days, every_min, defect, seed=1):
        if detector is None:
            runtime = BundleModel(bundle, open_runtime(bundle))
            detector = AssetDetector(asset, runtime, detector_settings(model))
        verdict = detector.score_vector(vector)
        event = verdict.decision.event
        if event is not None and event.kind == "raised" and first_alarm is None:
            first_alarm = day
        seq = len(rows)
        rows.append((seq + 1, vector))
        rows.append((seq + 2, verdict.score))
    made = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        db = await open_database(f"sqlite:///{Path(tmp) / 'rx.db'}")
        try:
            for lo in range(0, len(rows), 500):
                chunk = rows[lo : lo + 500]
                await db.ingest_many(split_range("gw", lo, lo + len(chunk), chunk), 0.0)
            first_finding, what = None, ""
            for day in range(days):
                run = await run_drift(db, TrendParams(), last_day=DAY0 + day,
                                      now=(DAY0 + day + 1) * 86400.0)  # fmt: skip
                opened = [e for e in run.events if e["action"] == "opened"]
                if opened and first_finding is None:
                    first_finding, what = day, str(opened[0]["summary"])
        finally:
            await db.close()
    label = "defect" if defect else "healthy"
    print(f"{label}: {len(rows) // 2} windows in {made:.0f} s; first drift finding on day "
          f"{first_finding} ({what}); gateway's first alarm on day {first_alarm}; total "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    return first_finding, first_alarm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--every-min", type=float, default=30.0)
    parser.add_argument("--defect-g", type=float, default=0.002)
    parser.add_argument("--onset-day", type=float, default=3.0)
    parser.add_argument("--growth-days", type=float, default=4.5)
    parser.add_argument("--healthy", action="store_true", help="only the run without a defect")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        bundle = train_with_load_cycle(Path(tmp) / "bundle")
        print(f"model trained on 2 healthy days with the load cycle in "
              f"{time.perf_counter() - started:.0f} s")  # fmt: skip
        if not args.healthy:
            defect = (args.defect_g, args.onset_day, args.growth_days)
            asyncio.run(scenario(args.days, args.every_min, defect, bundle))
        asyncio.run(scenario(args.days, args.every_min, None, bundle))


if __name__ == "__main__":
    main()
