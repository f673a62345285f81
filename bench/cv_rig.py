"""False alarms on the emulated rig's healthy running: the demo's two assets, their default bundles
and the gateway's own `AssetDetector.score_vector`, for every setting of `--grid`.

The healthy stream is synthesised offline exactly as models/make_demo_bundles.py synthesised the
bundles' training data (the emulators' own signal models through the app's feature engines, no
faults), but from other seeds: windows the bundles never saw. The gateway starts a bundle's
adaptive threshold without seed errors, so the commissioning threshold stands in for the first
`warmup` windows; "after warm-up" counts the windows after those.

Prints, per setting, seed and asset: windows alarmed after warm-up (%), alarms raised, and the
pooled rate (must stay under 1 %, as for SKAB's anomaly-free file).

    .venv/bin/python bench/cv_rig.py --minutes 30 --seeds 10,11,12 \
        --grid "statistic=mean_std k=6.5 on=1 off=10 clear=0.9 floor=0.8 window=1000 alpha=1
                rebaseline=0,550"
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from sweep_skab import Setting, grid

from appliance.detect.bundle import load_bundle
from appliance.detect.runtime import open_runtime
from appliance.detect.scorer import AssetDetector, BundleModel
from appliance.features.from_config import build_feature_engines
from appliance.records import FeatureVector
from appliance.rig.demo import demo_config

ROOT = Path(__file__).resolve().parents[1]


def healthy_streams(minutes: float, seed: int, cache: Path) -> dict[str, list[FeatureVector]]:
    """Each demo asset's healthy feature vectors for `minutes`, from `seed` (cached on disk)."""
    sys.path.insert(0, str(ROOT / "models"))
    from make_demo_bundles import healthy_vectors

    with tempfile.TemporaryDirectory() as tmp:
        config = demo_config(Path(tmp), [])
    engines = build_feature_engines(config)
    streams = {}
    for index, asset in enumerate(config.assets):
        cached = cache / f"{asset.name}_m{minutes:g}_s{seed}.npz"
        if not cached.exists():
            vectors = healthy_vectors(asset, engines[asset.name], int(minutes * 60), seed + index)
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                cached,
                values=np.stack([v.values for v in vectors]),
                ends=np.array([v.window_end for v in vectors]),
                names=np.array(vectors[0].names),
            )
        stored = np.load(cached)
        names = tuple(str(n) for n in stored["names"])
        streams[asset.name] = [
            FeatureVector(asset.name, float(end), names, values)
            for end, values in zip(stored["ends"], stored["values"], strict=True)
        ]
    return streams


def alarmed(asset: str, vectors: list[FeatureVector], setting: Setting) -> tuple[int, int, int]:
    """(windows alarmed after warm-up, windows after warm-up, alarms raised) for one asset."""
    bundle = load_bundle(ROOT / "models" / "default" / asset)
    detector = AssetDetector(asset, BundleModel(bundle, open_runtime(bundle)), setting.detector)
    warmup = setting.detector.adaptive.warmup
    flags, raised = [], 0
    for vector in vectors:
        verdict = detector.score_vector(vector)
        flags.append(verdict.decision.anomalous)
        event = verdict.decision.event
        raised += event is not None and event.kind == "raised"
    after = flags[warmup:]
    return sum(after), len(after), raised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seeds", default="10,11,12")
    parser.add_argument("--grid", required=True, help="bench/sweep_skab.py's axes")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "cv_rig")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    streams = {seed: healthy_streams(args.minutes, seed, args.cache) for seed in seeds}
    for setting in grid(args.grid):
        print(f"\n{setting.name}")
        total_alarmed = total = 0
        for seed, by_asset in streams.items():
            for asset, vectors in by_asset.items():
                count, windows, raised = alarmed(asset, vectors, setting)
                total_alarmed, total = total_alarmed + count, total + windows
                print(
                    f"  seed {seed} {asset:13} alarmed {count:5d} of {windows:5d} windows after "
                    f"warm-up ({100 * count / windows:5.2f} %), {raised} alarm(s) raised"
                )
        print(f"  pooled: {100 * total_alarmed / total:.2f} % of {total} windows")


if __name__ == "__main__":
    main()
