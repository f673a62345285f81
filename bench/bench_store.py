"""Store write rate: batched transactions vs one transaction per vector, in the same run.

Vectors are 64 channels x 15 features (960 float64 values, 7.7 KB), as on the real rig. Each mode
writes into a fresh database in a temp dir; the figure per mode is the median of --repeat runs.

    .venv/bin/python bench/bench_store.py [--synchronous FULL] [--append-results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from appliance.records import FeatureVector
from appliance.store import Store, StoreSettings, run_store_writer

CHANNELS = 64
FEATURES_PER_CHANNEL = 15
BATCH = 500


@dataclass(frozen=True)
class Figure:
    mode: str
    vectors: int
    seconds: float

    @property
    def vectors_per_s(self) -> float:
        return self.vectors / self.seconds

    @property
    def value_mb_per_s(self) -> float:
        return self.vectors_per_s * CHANNELS * FEATURES_PER_CHANNEL * 8 / 1e6


def make_vectors(count: int) -> list[FeatureVector]:
    names = tuple(
        f"ch{c:02d}_f{k:02d}" for c in range(CHANNELS) for k in range(FEATURES_PER_CHANNEL)
    )
    rng = np.random.default_rng(0)
    return [
        FeatureVector("pump-1", 1_700_000_000.0 + t, names, rng.normal(size=len(names)))
        for t in range(count)
    ]


async def write_row_per_transaction(store: Store, vectors: list[FeatureVector]) -> None:
    for vector in vectors:
        await store.recorder.add_features([vector])


async def write_batches(store: Store, vectors: list[FeatureVector]) -> None:
    for start in range(0, len(vectors), BATCH):
        await store.recorder.add_features(vectors[start : start + BATCH])


async def write_through_writer_task(store: Store, vectors: list[FeatureVector]) -> None:
    queue: asyncio.Queue[FeatureVector] = asyncio.Queue()
    for vector in vectors:
        queue.put_nowait(vector)
    writer = asyncio.create_task(run_store_writer(store.recorder, queue, max_batch=BATCH))
    await queue.join()
    writer.cancel()
    await writer


async def time_mode(
    mode: str,
    write: Callable[[Store, list[FeatureVector]], Awaitable[None]],
    vectors: list[FeatureVector],
    synchronous: str,
    repeat: int,
) -> Figure:
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as directory:
            settings = StoreSettings(Path(directory) / "store.db", synchronous=synchronous)
            async with await Store.open(settings) as store:
                started = time.perf_counter()
                await write(store, vectors)
                runs.append(time.perf_counter() - started)
                assert store.stats.rows_written == len(vectors)
    return Figure(mode, len(vectors), statistics.median(runs))


def results_section(figures: list[Figure], ratio: float, command: str, synchronous: str) -> str:
    rows = "\n".join(
        f"| {f.mode} | {f.vectors} | {f.vectors_per_s:,.0f} | {f.value_mb_per_s:.1f} |"
        for f in figures
    )
    return (
        f"\n## Store write rate ({datetime.now(UTC):%Y-%m-%d})\n\n"
        f"Command: `{command}`\n\n"
        f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; synchronous={synchronous}; "
        f"vectors of {CHANNELS} channels x {FEATURES_PER_CHANNEL} features "
        f"({CHANNELS * FEATURES_PER_CHANNEL} float64).\n\n"
        "| mode | vectors | vectors/s | MB/s of values |\n|---|---|---|---|\n"
        f"{rows}\n\n"
        f"Batched ({BATCH} per transaction) / row-per-transaction: **{ratio:.1f}x**.\n"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=10_000, help="vectors per batched run")
    parser.add_argument("--single-vectors", type=int, default=1_000, help="per row-per-tx run")
    parser.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--append-results", type=Path, help="append a markdown section here")
    args = parser.parse_args()

    vectors = make_vectors(args.vectors)
    single_vectors = vectors[: args.single_vectors]
    sync, repeat = args.synchronous, args.repeat
    figures = [
        await time_mode(
            "row per transaction", write_row_per_transaction, single_vectors, sync, repeat
        ),
        await time_mode(f"batches of {BATCH}", write_batches, vectors, sync, repeat),
        await time_mode("writer task (queue)", write_through_writer_task, vectors, sync, repeat),
    ]
    ratio = figures[1].vectors_per_s / figures[0].vectors_per_s
    for figure in figures:
        print(
            f"{figure.mode:24} {figure.vectors:6d} vectors  {figure.vectors_per_s:10,.0f} vectors/s"
            f"  {figure.value_mb_per_s:7.1f} MB/s"
        )
    print(f"batched / row-per-transaction: {ratio:.1f}x")

    if args.append_results is not None:
        command = shlex.join([".venv/bin/python", "bench/bench_store.py", *sys.argv[1:]])
        is_new = not args.append_results.exists()
        with args.append_results.open("a", encoding="utf-8") as results:
            if is_new:
                results.write("# Benchmark results\n")
            results.write(results_section(figures, ratio, command, sync))


if __name__ == "__main__":
    asyncio.run(main())
