"""What the drift analysis costs per asset, against storing the same records (the baseline, same
run, same database): is a daily run of every asset of a fleet affordable beside ingest?

One asset, `--days` days of the demo's shape (49 features and a score per record, one record
every `--every-s` seconds), ingested into a fresh SQLite database with Database.ingest_many
(timed: the baseline); then a drift run over the last day (timed: aggregates of every day and
the trend tests of ~100 series), then a second run with nothing new (timed: the steady daily
cost once aggregates exist, i.e. one new day).

    .venv/bin/python bench/bench_drift.py [--days 21] [--every-s 10]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from appliance.records import FeatureVector, Score
from appliance.uplink.schema import SeqRecord, split_range
from receiver.db import Database, open_database
from receiver.drift.run import run_drift
from receiver.drift.settings import TrendParams

DAY0 = 20_400
NAMES = (*(f"accel_{axis}.f{i}" for axis in "xyz" for i in range(16)), "temp.mean")
PART_RECORDS = 500


def records(days: int, every_s: float) -> list[SeqRecord]:
    rng = np.random.default_rng(0)
    rows: list[SeqRecord] = []
    per_day = int(86400 / every_s)
    for index in range(days * per_day):
        t = DAY0 * 86400.0 + index * every_s
        values = 1.0 + 0.05 * rng.standard_normal(len(NAMES))
        rows.append((2 * index + 1, FeatureVector("pump", t, NAMES, values)))
        rows.append((2 * index + 2, Score("pump", t, "ae@sha256:01", 0.5, 1.0, False)))
    return rows


async def ingest(db: Database, rows: list[SeqRecord]) -> float:
    started = time.perf_counter()
    parts = []
    for lo in range(0, len(rows), PART_RECORDS):
        chunk = rows[lo : lo + PART_RECORDS]
        parts.extend(split_range("gw", lo, lo + len(chunk), chunk))
        if len(parts) >= 32:
            await db.ingest_many(parts, 0.0)
            parts = []
    if parts:
        await db.ingest_many(parts, 0.0)
    return time.perf_counter() - started


async def timed_run(db: Database, last_day: int) -> tuple[float, int]:
    started = time.perf_counter()
    run = await run_drift(db, TrendParams(), last_day=last_day, now=(last_day + 1) * 86400.0)
    return time.perf_counter() - started, run.days_updated


async def main(days: int, every_s: float) -> None:
    rows = records(days, every_s)
    with tempfile.TemporaryDirectory() as directory:
        db = await open_database(f"sqlite:///{Path(directory) / 'bench.db'}")
        try:
            ingest_s = await ingest(db, rows)
            first_s, first_days = await timed_run(db, DAY0 + days - 1)
            again_s, again_days = await timed_run(db, DAY0 + days - 1)
        finally:
            await db.close()
    n = len(rows) // 2
    print(f"{days} days x {int(86400 / every_s)} records/day = {n} feature vectors "
          f"({len(NAMES)} features) + {n} scores, SQLite")  # fmt: skip
    print(f"ingest (baseline): {ingest_s:.2f} s = {1e6 * ingest_s / n:.0f} us per vector+score")
    print(f"drift, first run: {first_s:.2f} s ({first_days} source-days aggregated) = "
          f"{first_s / ingest_s:.3f} x ingest")  # fmt: skip
    print(f"drift, steady run (nothing new): {again_s:.3f} s ({again_days} source-days) = "
          f"{again_s / ingest_s:.4f} x ingest")  # fmt: skip
    per_day_s = (first_s - again_s) / max(first_days / 2, 1)
    print(f"aggregating one day of one asset: {per_day_s:.3f} s; a daily run costs one day's "
          f"aggregates + the steady run = {per_day_s + again_s:.2f} s per asset")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--every-s", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.days, args.every_s))
