"""What the gateway's diagnosis stage costs inline in the feature stage (issue 17, item 3).

The demo's compressor-2 ([assets.machine] of the demo: 3 channels x 1 kHz, one bearing, fixed
speed) fed block by block (100 samples per channel) through AssetDiagnoser.push, as the feature
stage's observer does: each block into its ring, and at every 1 s stride the rings diagnosed
(diagnose_asset over the three channels, the envelope spectrum of the finding's band for the
page, the defect marks). Worst case: the asset raised all along (every window diagnosed); quiet:
the periodic run only (every 60 s). In the same run, the feature engine on the same blocks as
the baseline. It also prints the longest single run: the event loop does nothing else meanwhile.

    .venv/bin/python bench/bench_diagnosis_stage.py [--seconds 120 --repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from appliance.diagnosis.live import AssetDiagnoser
from appliance.features.from_config import build_feature_engines
from appliance.records import FloatArray, SampleBlock
from appliance.rig.demo import demo_config
from appliance.rig.mcu.signal import MachineSignal

ASSET = "compressor-2"
RATE = 1000.0
BLOCK = 100


def render(seconds: float) -> FloatArray:
    signal = MachineSignal(outer_race_g=0.1)
    t = np.arange(int(seconds * RATE)) / RATE
    return signal.render(t, 3, np.random.default_rng(0))


def blocks(samples: FloatArray) -> list[SampleBlock]:
    return [
        SampleBlock(ASSET, f"accel_{axis}", start / RATE, RATE, samples[start : start + BLOCK, c])
        for start in range(0, len(samples), BLOCK)
        for c, axis in enumerate("xyz")
    ]


def run_stage(fed: list[SampleBlock], raised: bool) -> tuple[int, float]:
    """(runs, longest run in s)"""
    config = demo_config(Path("/tmp/bench-diagnosis-stage"), [], sms=False)
    asset = next(a for a in config.assets if a.name == ASSET)
    diagnoser = AssetDiagnoser(asset, config.features.window_s, config.features.stride_s,
                               lambda: raised)  # fmt: skip
    runs, longest = 0, 0.0
    for block in fed:
        before = diagnoser.latest
        started = time.perf_counter()
        diagnoser.push(block)
        if diagnoser.latest is not before:
            runs += 1
            longest = max(longest, time.perf_counter() - started)
    assert diagnoser.latest is not None and diagnoser.latest.verdict == "outer_race"
    return runs, longest


def run_features(fed: list[SampleBlock]) -> tuple[int, float]:
    config = demo_config(Path("/tmp/bench-diagnosis-stage"), [], sms=False)
    engine = build_feature_engines(config)[ASSET]
    return sum(len(engine.push(b)) for b in fed if b.channel.startswith("accel")), 0.0


def best_of(repeat: int, work: Callable[[], tuple[int, float]]) -> tuple[float, int, float]:
    results = []
    for _ in range(repeat):
        started = time.process_time()
        count, longest = work()
        results.append((time.process_time() - started, count, longest))
    return min(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    fed = blocks(render(args.seconds))
    base, vectors, _ = best_of(args.repeat, lambda: run_features(fed))
    print(f"3 channels x 1 kHz, {args.seconds:.0f} s of signal, blocks of {BLOCK}")
    print(f"features          {base:7.3f} s CPU {100 * base / args.seconds:6.2f} % of one core"
          f"  ({vectors} vectors)")  # fmt: skip
    for label, raised in (("stage, raised", True), ("stage, quiet", False)):
        spent, runs, longest = best_of(args.repeat, lambda r=raised: run_stage(fed, r))  # type: ignore[misc]
        print(
            f"{label:<18}{spent:7.3f} s CPU {100 * spent / args.seconds:6.2f} % of one core  "
            f"({runs} runs, {1000 * spent / max(runs, 1):.2f} ms each, longest "
            f"{1000 * longest:.2f} ms; {spent / base:.1f} x the features)"
        )


if __name__ == "__main__":
    main()
