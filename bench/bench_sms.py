"""SMS send latency through the modem link: send_sms() called -> AT+CMGS arrives at the modem.

This is the modem's share of issue 5's bar (detector decision -> first byte of AT+CMGS on the
wire, p99 < 100 ms); the queue and alert policy add theirs later. The emulated modem runs in
its own process (`python -m appliance.rig.modem --commands`, which stamps each command
line with time.monotonic(), a system-wide clock on Linux), so a busy event loop on the
sending side does not also slow the modem. Runs are sequential single-part alerts; the same
run is repeated with the sender's event loop blocked for --busy-ms every --every-ms (a crude
stand-in for the feature pipeline sharing the loop) and the two are reported side by side.

    .venv/bin/python bench/bench_sms.py [--count 300] [--busy-ms 5 --every-ms 20]
        [--append-results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from appliance.logging import configure_logging
from appliance.sms.modem import ModemLink, ModemSettings

NUMBER = "+491701234567"
ALERT = "CRITICAL pump-1 bearing: vib 7.9 mm/s > 4.5 (thr) at 14:03 CET, gw plant-a-01"


@dataclass(frozen=True)
class Figure:
    mode: str
    to_cmgs_ms: list[float]
    send_ms: list[float]

    def row(self) -> str:
        return (
            f"| {self.mode} | {len(self.to_cmgs_ms)} | {_pct(self.to_cmgs_ms, 50):.2f} "
            f"| {_pct(self.to_cmgs_ms, 99):.2f} | {max(self.to_cmgs_ms):.2f} "
            f"| {_pct(self.send_ms, 50):.2f} | {_pct(self.send_ms, 99):.2f} |"
        )


def _pct(values: list[float], percent: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


@contextlib.asynccontextmanager
async def emulated_modem(link: Path) -> AsyncIterator[asyncio.Queue[float]]:
    """The emulator CLI on `link`; yields a queue of the times AT+CMGS lines arrived."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.rig.modem", "--link", str(link), "--fast",
        "--commands", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    await process.stdout.readline()  # "emulated SIM800 on ...": the symlink exists
    stamps: asyncio.Queue[float] = asyncio.Queue()

    async def collect() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            stamp, _, line = raw.decode().partition(" > ")
            if line.startswith("AT+CMGS="):
                stamps.put_nowait(float(stamp))

    reading = asyncio.create_task(collect())
    try:
        yield stamps
    finally:
        process.terminate()
        await process.wait()
        await reading


async def block_loop(busy_ms: float, every_ms: float) -> None:
    """Hold the event loop for busy_ms every every_ms, like a CPU-bound stage would."""
    while True:
        await asyncio.sleep(every_ms / 1000)
        until = time.perf_counter() + busy_ms / 1000
        while time.perf_counter() < until:
            pass


async def measure(mode: str, count: int, busy_ms: float, every_ms: float) -> Figure:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "modem"
        async with emulated_modem(path) as stamps:
            link = ModemLink(str(path), ModemSettings(check_interval_s=3600.0))
            supervisor = asyncio.create_task(link.run())
            await asyncio.wait_for(link.wait_ready(), 30)
            load = asyncio.create_task(block_loop(busy_ms, every_ms)) if busy_ms else None
            starts, sends = [], []
            for _ in range(count):
                started = time.monotonic()
                await link.send_sms(NUMBER, ALERT)
                starts.append(started)
                sends.append((time.monotonic() - started) * 1000)
            arrivals = [await stamps.get() for _ in range(count)]
            for task in (load, supervisor):
                if task is not None:
                    task.cancel()
                    await asyncio.wait([task])
    to_cmgs = [(stamp - start) * 1000 for stamp, start in zip(arrivals, starts, strict=True)]
    return Figure(mode, to_cmgs, sends)


def report(figures: list[Figure], args: argparse.Namespace) -> str:
    command = "bench/bench_sms.py " + shlex.join(sys.argv[1:])
    lines = [
        f"## SMS send latency (modem link) ({datetime.now(UTC):%Y-%m-%d})",
        "",
        f"Command: `.venv/bin/python {command.strip()}`",
        "",
        f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; emulated SIM800 in its own process (fast "
        "settings: 5 ms network round trip); single-part alerts sent one after another.",
        "",
        "| sender loop | sends | to AT+CMGS p50 ms | p99 ms | max ms | whole send p50 ms "
        "| p99 ms |",
        "|---|---|---|---|---|---|---|",
        *(figure.row() for figure in figures),
    ]
    if len(figures) == 2:
        ratio = _pct(figures[1].to_cmgs_ms, 99) / _pct(figures[0].to_cmgs_ms, 99)
        lines += ["", f"p99 to AT+CMGS, loaded / idle: **{ratio:.1f}x**."]
    return "\n".join(lines) + "\n"


async def run_all(args: argparse.Namespace) -> list[Figure]:
    figures = [await measure("idle", args.count, 0, args.every_ms)]
    if args.busy_ms > 0:
        mode = f"blocked {args.busy_ms:g} ms every {args.every_ms:g} ms"
        figures.append(await measure(mode, args.count, args.busy_ms, args.every_ms))
    return figures


def main(args: argparse.Namespace) -> None:
    configure_logging("warning")
    text = report(asyncio.run(run_all(args)), args)
    print(text)
    if args.append_results:
        with Path(args.append_results).open("a") as results:
            results.write("\n" + text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--busy-ms", type=float, default=5.0)
    parser.add_argument("--every-ms", type=float, default=20.0)
    parser.add_argument("--append-results", help="append the table to this markdown file")
    main(parser.parse_args())
