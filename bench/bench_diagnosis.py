"""What the vibration diagnosis costs beside the feature engine, at 3 channels x 1 kHz.

One asset of 3 vibration channels at 1 kHz, rendered by the emulated MCU's MachineSignal with an
outer-race fault (so the envelope path finds lines), `--seconds` long. In the same run:

- features: every block (100 samples) through AssetFeatures.push with the shipped settings
  (5 s window, 1 s stride), as the pipeline runs it;
- diagnosis, worst case: every channel's latest 5 s window diagnosed at every stride (as while
  the detector or a rule holds an alarm), at a fixed speed and with the speed estimated in a range.

Each path runs `--repeat` times; the best time counts. The share of one core is the path's CPU
time over the signal's duration; the bar (issue 17) is < 5 % of one core for the diagnosis.

    .venv/bin/python bench/bench_diagnosis.py [--seconds 120 --repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from appliance.diagnosis import (
    CWRU_DRIVE_END,
    diagnose_channel,
    estimate_shaft_hz,
)
from appliance.features import AssetFeatures, ChannelSpec, FeatureSettings
from appliance.records import FloatArray, SampleBlock
from appliance.rig.mcu.signal import MachineSignal

RATE = 1000.0
CHANNELS = 3
BLOCK = 100
SHAFT_HZ = 29.6


def render(seconds: float) -> FloatArray:
    signal = MachineSignal(shaft_hz=SHAFT_HZ, bearing_amplitude_g=0.05)
    t = np.arange(int(seconds * RATE)) / RATE
    return signal.render(t, CHANNELS, np.random.default_rng(0))


def run_features(samples: FloatArray) -> int:
    specs = [ChannelSpec(f"accel_{c}", RATE, vibration=True) for c in range(CHANNELS)]
    engine = AssetFeatures("bench", specs, FeatureSettings())
    vectors = 0
    for start in range(0, len(samples), BLOCK):
        for channel in range(CHANNELS):
            block = SampleBlock(
                "bench",
                f"accel_{channel}",
                start / RATE,
                RATE,
                samples[start : start + BLOCK, channel],
            )
            vectors += len(engine.push(block))
    return vectors


def run_diagnosis(samples: FloatArray, estimate: bool) -> int:
    settings = FeatureSettings()
    window, stride = round(settings.window_s * RATE), round(settings.stride_s * RATE)
    diagnosed = 0
    for end in range(window, len(samples) + 1, stride):
        for channel in range(CHANNELS):
            segment = samples[end - window : end, channel]
            shaft = estimate_shaft_hz(segment, RATE, 25.0, 35.0)[0] if estimate else SHAFT_HZ
            diagnose_channel(segment, RATE, shaft, {"drive-end": CWRU_DRIVE_END})
            diagnosed += 1
    return diagnosed


def best_of(repeat: int, work: Callable[[], int]) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(repeat):
        started = time.process_time()
        count = work()
        times.append(time.process_time() - started)
    return min(times), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    samples = render(args.seconds)
    check = diagnose_channel(samples[-5000:, 0], RATE, SHAFT_HZ, {"de": CWRU_DRIVE_END})
    print(f"{CHANNELS} channels x {RATE:.0f} Hz, {args.seconds:.0f} s of signal; last window of")
    print(f"channel 0: {check.verdict}, {check.velocity_mm_s:.2f} mm/s, zone {check.zone}")
    features_s, vectors = best_of(args.repeat, lambda: run_features(samples))
    print(f"{share('features', features_s, args.seconds)}  ({vectors} vectors)")
    for label, estimate in (("diagnosis, fixed speed", False), ("diagnosis, estimated", True)):
        spent, count = best_of(args.repeat, partial(run_diagnosis, samples, estimate))
        print(
            f"{share(label, spent, args.seconds)}  ({count} channel windows, "
            f"{1000 * spent / count:.2f} ms each; {spent / features_s:.2f} x the features)"
        )


def share(label: str, cpu_s: float, seconds: float) -> str:
    return f"{label:<23}{cpu_s:7.3f} s CPU {100 * cpu_s / seconds:6.2f} % of one core"


if __name__ == "__main__":
    main()
