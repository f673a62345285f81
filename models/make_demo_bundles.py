"""Train the default bundles the demo uses, from the emulated rig's HEALTHY behaviour.

    .venv/bin/python models/make_demo_bundles.py [--minutes 20]

The stream is synthesised offline with the emulators' own models (MachineSignal for the MCU,
PlantModel for the I2C sensors, quantised as the emulated devices quantise) and pushed through the
app's real feature engines, so the bundles' feature names are exactly the demo assets'.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from appliance.app import build_feature_engines
from appliance.config import AssetConfig, I2cSource
from appliance.features import AssetFeatures
from appliance.records import FeatureVector, SampleBlock
from appliance.rig.demo import DEFAULT_BUNDLES, demo_config
from appliance.rig.i2c import PlantModel
from appliance.rig.mcu import MachineSignal, default_scale
from appliance.training.autoencoder import TrainSettings, train_bundle
from firmware_bridge.codec import SampleFormat

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
VIBRATION_RATE = 1000


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def slow_reader(plant: PlantModel, source: I2cSource) -> Callable[[], float]:
    readers: dict[str, Callable[[], float]] = {
        "temperature": plant.temperature_c,
        "current": plant.current_a,
        "bus_voltage": plant.bus_voltage_v,
    }
    return readers[source.quantity]


def healthy_vectors(
    asset: AssetConfig, engine: AssetFeatures, seconds: int, seed: int
) -> list[FeatureVector]:
    clock = FakeClock()
    plant = PlantModel(clock)
    rng = np.random.default_rng(seed)
    scale = default_scale(SampleFormat.INT32)
    vibration = [c for c in asset.channels if c.is_vibration]
    slow = [
        (c, slow_reader(plant, c.source)) for c in asset.channels if isinstance(c.source, I2cSource)
    ]
    machine = MachineSignal()
    vectors: list[FeatureVector] = []
    for second in range(seconds):
        clock.now = float(second)
        t = second + np.arange(VIBRATION_RATE) / VIBRATION_RATE
        g = machine.render(t, len(vibration), rng)
        counts = np.round(g / scale) * scale
        for column, channel in enumerate(vibration):
            block = SampleBlock(
                asset.name, channel.name, T0 + second, VIBRATION_RATE, counts[:, column]
            )
            vectors += engine.push(block)
        for channel, read in slow:
            sample = np.array([read()])
            vectors += engine.push(SampleBlock(asset.name, channel.name, T0 + second, 1.0, sample))
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument(
        "--margin",
        type=float,
        default=2.0,
        help="commissioning threshold = margin x the 0.995 quantile of training errors; the "
        "live emulator's noise differs slightly from the offline synthesis (1.0 raised ~5 "
        "false alarms in a 2-minute healthy run, see models/README.md)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = demo_config(Path(tmp), [])
    engines = build_feature_engines(config)
    for seed, asset in enumerate(config.assets):
        vectors = healthy_vectors(asset, engines[asset.name], int(args.minutes * 60), seed)
        complete = [v for v in vectors if np.all(np.isfinite(v.values))]
        rows = np.stack([v.values for v in complete])
        times = np.array([v.window_end for v in complete])
        bundle = train_bundle(
            rows,
            engines[asset.name].feature_names,
            asset=asset.name,
            version="demo-1",
            out_dir=DEFAULT_BUNDLES / asset.name,
            window_times=times,
            settings=TrainSettings(seed=0, threshold_margin=args.margin),
        )
        size = (DEFAULT_BUNDLES / asset.name / bundle.manifest.model_file).stat().st_size
        print(
            f"{asset.name}: {len(rows)} windows x {rows.shape[1]} features, fixed threshold "
            f"{bundle.manifest.threshold.fixed_threshold:.4g}, {bundle.bundle_id}, {size} bytes"
        )


if __name__ == "__main__":
    main()
