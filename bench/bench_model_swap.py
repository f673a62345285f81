"""Issue 6's swap bar, measured on the whole appliance: 64 vibration channels at 1 kHz (four
emulated 16-channel MCUs on real ptys, plus the demo's two I2C channels) feed one asset scored
by the demo's pump-1 bundle. Signed bundles are installed through the inbox and rolled back, in
turns, while it streams.

Figures:
- per swap: the time from the bundle landing in the inbox to the outcome (checks + canary), and
  to the first window scored by the new model;
- over the run: stored windows, scores, windows without a score (lost) and with more than one
  (doubled), counted by seq in the SQLite store;
- baseline in the same run: scored windows per second before the first swap vs. during the
  swapping phase (the ratio shows whether swapping disturbs the pipeline).

    .venv/bin/python bench/bench_model_swap.py [--swaps 30] [--append-results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.config import ApplianceConfig, parse_config
from appliance.detect.bundle import MANIFEST_FILE
from appliance.ota.archive import pack
from appliance.ota.inbox import RESULT_SUFFIX
from appliance.ota.signing import public_key_text, sign_bundle
from appliance.rig import run_appliance
from appliance.rig.demo import DEFAULT_BUNDLES, wide_demo_document
from appliance.status import StatusBoard
from appliance.store import Store, StoreSettings

ASSET = "pump-1"
BASELINE_S = 20.0


def config_64(data_dir: Path, key: Ed25519PrivateKey) -> ApplianceConfig:
    document = wide_demo_document(data_dir, vibration_channels=64)
    document["models"] = {
        "public_keys": [public_key_text(key.public_key())],
        "inbox_poll_s": 0.2,
        "canary_min_windows": 10,
    }
    return parse_config(document, "<bench>")


def signed_archive(work: Path, version: str, key: Ed25519PrivateKey) -> bytes:
    bundle = work / version
    shutil.copytree(DEFAULT_BUNDLES / ASSET, bundle)
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest["version"] = version
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    sign_bundle(bundle, key)
    return pack(bundle)


async def poll(condition: Any, deadline_s: float = 120.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        await asyncio.sleep(0.02)


def scored_by(board: StatusBoard, model: str) -> bool:
    score = board.asset(ASSET).latest_score
    return score is not None and score.model_id == model


async def one_swap(
    board: StatusBoard, inbox: Path, name: str, data: bytes
) -> tuple[float, float, str]:
    """Install (or roll back, for a .request) through the inbox: (s to the outcome, s to the
    first window of the new model, the model now active)."""
    start = time.monotonic()
    (inbox / f".{name}").write_bytes(data)
    (inbox / f".{name}").rename(inbox / name)
    done = inbox / "done" / f"{name}{RESULT_SUFFIX}"
    await poll(done.exists)
    decided = time.monotonic() - start
    model = board.models.active[ASSET]
    await poll(lambda: scored_by(board, model))
    return decided, time.monotonic() - start, model


async def measure(swaps: int, work: Path) -> dict[str, Any]:
    key = Ed25519PrivateKey.generate()
    config = config_64(work, key)
    inbox = work / "model-inbox"
    board = StatusBoard(config.gateway.id)
    stop = asyncio.Event()
    run = asyncio.create_task(run_appliance(config, stop=stop, board=board))
    await poll(lambda: board.asset(ASSET).scores >= 10)
    before = board.asset(ASSET).scores
    await asyncio.sleep(BASELINE_S)
    baseline_rate = (board.asset(ASSET).scores - before) / BASELINE_S
    decided, first_window = [], []
    started, before = time.monotonic(), board.asset(ASSET).scores
    for i in range(swaps):
        if i % 2 == 0:
            name, data = f"v{i}.tar", signed_archive(work, f"bench-{i}", key)
        else:
            name, data = f"back{i}.request", b'{"action": "rollback", "asset": "pump-1"}'
        d, f, _ = await one_swap(board, inbox, name, data)
        decided.append(d)
        first_window.append(f)
    swapping_rate = (board.asset(ASSET).scores - before) / (time.monotonic() - started)
    stop.set()
    await run
    counts = await count_by_seq(work / "appliance.db")
    return {
        "swaps": swaps,
        "decided_s": decided,
        "first_window_s": first_window,
        "baseline_rate": baseline_rate,
        "swapping_rate": swapping_rate,
        "dropped_samples": sum(s.dropped_samples for s in board.serial.values()),
        **counts,
    }


async def count_by_seq(db: Path) -> dict[str, Any]:
    store = await Store.open(StoreSettings(path=db))
    try:
        features = await store.history.features(ASSET, limit=10_000_000)
        scores = await store.history.scores(ASSET, limit=10_000_000)
    finally:
        await store.close()
    per_window = Counter(score.t for _, score in scores)
    models = Counter(score.model_id for _, score in scores)
    next_is_score = {seq + 1 for seq, _ in features} & {seq for seq, _ in scores}
    return {
        "windows": len(features),
        "scores": len(scores),
        "lost": sum(1 for _, v in features if per_window[v.window_end] == 0),
        "doubled": sum(1 for _, v in features if per_window[v.window_end] > 1),
        "score_right_after_window": len(next_is_score),
        "models": len(models),
    }


def report(r: dict[str, Any]) -> str:
    ratio = r["swapping_rate"] / r["baseline_rate"]
    p50 = statistics.median
    return "\n".join(
        [
            f"64 channels x 1 kHz, {r['swaps']} swaps (install / rollback in turns), "
            f"{r['models']} model ids seen",
            f"windows {r['windows']}, scores {r['scores']}, lost {r['lost']}, doubled "
            f"{r['doubled']}, score right after its window {r['score_right_after_window']}; "
            f"dropped samples {r['dropped_samples']}",
            f"inbox -> outcome: median {p50(r['decided_s']):.2f} s, max {max(r['decided_s']):.2f} s"
            f"; inbox -> first window of the new model: median {p50(r['first_window_s']):.2f} s, "
            f"max {max(r['first_window_s']):.2f} s",
            f"scored windows/s: baseline {r['baseline_rate']:.2f}, while swapping "
            f"{r['swapping_rate']:.2f} (ratio {ratio:.3f})",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--swaps", type=int, default=30)
    parser.add_argument("--append-results", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        result = asyncio.run(measure(args.swaps, Path(work)))
    text = report(result)
    print(text)
    if args.append_results is not None:
        command = f"  .venv/bin/python bench/bench_model_swap.py --swaps {args.swaps}"
        with args.append_results.open("a", encoding="utf-8") as out:
            out.write(f"\n## Model swap at 64 channels ({time.strftime('%Y-%m-%d')})\n\n")
            out.write(f"{command}\n\n")
            out.write("\n".join(f"    {line}" for line in text.splitlines()) + "\n")


if __name__ == "__main__":
    main()
