"""What 100 open status pages cost the appliance: CPU of the appliance process per second of wall
time, with no page client and with `--clients` clients that behave like open browser tabs.

The appliance runs the demo rig (appliance/rig/demo.py: two assets on emulated MCUs, 6 channels at
1 kHz, the emulated I2C bus and modem; `--fault imbalance` on the second asset by default, so the
page shows an alarm) in a child process (this file with --serve), so its CPU is read from
/proc/<pid>/stat (utime + stime, every thread). Phases, each `--seconds` long: baseline (no tab),
loaded (the tabs, after they all opened and settled), baseline again (drift check); the tabs'
opening (RAMP_S + SETTLE_S) is shown apart. The page's cost is loaded minus the mean of the two
baselines.

A tab does what page.html and charts.js do: GET /, /static/charts.js, /api/history and
/api/spectrum (the indexes), holds /events (server-sent events, one snapshot a second) open and
reads it, GETs /api/history/<asset>?range=1h at once and every 30 s and
/api/spectrum/<asset>/<channel> at once and every 5 s. Each tab is one aiohttp session holding at
most 2 connections (the event stream and one keep-alive connection for the fetches), as a browser
on its own device does; tabs start at random moments over RAMP_S. Usability: a separate probe
GETs /api/status every 0.5 s in every phase (latency p50/p99), and the tabs count their
errors, refusals (503 at the connection cap) and event gaps over 2.5 s.

`[http] max_connections` is raised to 256 by default: 100 tabs hold about 200 connections, over
the default cap of 64 (pass --max-connections 64 to see what a user would meet then).

    .venv/bin/python bench/bench_page_clients.py [--clients 100 --seconds 60 --max-connections 256]

`--answer-cost` measures instead, in this process, what one /api/spectrum answer costs to build
(the PSD summed, the body made and JSON-encoded) against serving the one built for the window
(web/spectrum.py's SpectrumAnswers), on the demo's pump-1 fed 6 s of noise:

    .venv/bin/python bench/bench_page_clients.py --answer-cost
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

RAMP_S = 5.0
SETTLE_S = 10.0
SPECTRUM_EVERY_S = 5.0
HISTORY_EVERY_S = 30.0
PROBE_EVERY_S = 0.5
EVENT_GAP_S = 2.5
"""An /events message later than this after the previous one counts as a gap (one a second)."""
BAR_CORES = 0.10
URL_FILE = "url"


# --- the appliance (child process) -----------------------------------------------------------


def serve(data_dir: Path, max_connections: int, faults: list[str]) -> None:
    """Run the demo rig with its page on a free port; its URL goes to data_dir/url."""
    from appliance.config import HttpConfig
    from appliance.rig import run_appliance
    from appliance.rig.demo import demo_config, write_http_token

    config = demo_config(data_dir, faults=faults, models=True)
    _, token_file = write_http_token(data_dir)
    http = HttpConfig(port=0, token_file=str(token_file), max_connections=max_connections)
    config = config.model_copy(update={"http": http})
    stop = asyncio.Event()

    def started(url: str) -> None:
        (data_dir / URL_FILE).write_text(url)

    async def run() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await run_appliance(config, stop=stop, on_http_started=started)

    asyncio.run(run())


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid`, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the tabs --------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the tabs and the probe saw during the current phase."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    events: int = 0
    event_gaps: int = 0

    def took(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)


@dataclass
class Bench:
    base: str
    tally: Tally = field(default_factory=Tally)
    streams: int = 0
    """/events streams open now."""
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def get(self, session: aiohttp.ClientSession, path: str, kind: str) -> Any:
        """GET `path`, its latency and any error counted under `kind`; its JSON or None."""
        started = time.perf_counter()
        try:
            async with session.get(self.base + path) as response:
                body = await response.read()
                self.tally.took(kind, time.perf_counter() - started)
                if response.status != 200:
                    self.tally.errors[f"{kind} {response.status}"] += 1
                    return None
                return body if response.content_type != "application/json" else json.loads(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.tally.errors[f"{kind} {type(exc).__name__}"] += 1
            return None

    async def tab(self, number: int, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0.0, RAMP_S))
        connector = aiohttp.TCPConnector(limit=2)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for path in ("/", "/static/charts.js"):
                await self.get(session, path, "page")
            index = await self.get(session, "/api/history", "index")
            spectra = await self.get(session, "/api/spectrum", "index")
            stream = asyncio.create_task(self.events(session))
            if index and spectra:
                await self.charts(session, number, spectra)
            await self.stop.wait()
            stream.cancel()
            await asyncio.gather(stream, return_exceptions=True)

    async def charts(self, session: aiohttp.ClientSession, number: int, spectra: Any) -> None:
        """The history and spectrum of one asset, refreshed as charts.js does."""
        assets = [a for a in spectra["assets"] if a["channels"]]
        asset = assets[number % len(assets)]
        history = f"/api/history/{asset['name']}?range=1h"
        spectrum = f"/api/spectrum/{asset['name']}/{asset['channels'][0]}"
        loop = asyncio.get_running_loop()
        next_history = loop.time()
        while not self.stop.is_set():
            if loop.time() >= next_history:
                next_history += HISTORY_EVERY_S
                await self.get(session, history, "history")
            await self.get(session, spectrum, "spectrum")
            await _wait(self.stop, SPECTRUM_EVERY_S)

    async def events(self, session: aiohttp.ClientSession) -> None:
        """Hold /events open as EventSource does: reconnect after 3 s when it drops, give up on
        a refusal (a browser's EventSource does not retry a non-200 answer)."""
        while not self.stop.is_set():
            try:
                async with session.get(self.base + "/events") as response:
                    if response.status != 200:
                        self.tally.errors[f"events {response.status}"] += 1
                        return
                    self.streams += 1
                    try:
                        await self.read_stream(response)
                    finally:
                        self.streams -= 1
                self.tally.errors["events dropped"] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.tally.errors[f"events {type(exc).__name__}"] += 1
            await _wait(self.stop, 3.0)

    async def read_stream(self, response: aiohttp.ClientResponse) -> None:
        last = time.perf_counter()
        async for chunk in response.content.iter_any():
            messages = chunk.count(b"\n\n")
            if messages:
                now = time.perf_counter()
                self.tally.event_gaps += int(now - last > EVENT_GAP_S)
                self.tally.events += messages
                last = now

    async def probe(self) -> None:
        """/api/status every PROBE_EVERY_S, as a monitoring script or a curious user would."""
        async with aiohttp.ClientSession() as session:
            while True:
                await self.get(session, "/api/status", "status")
                await asyncio.sleep(PROBE_EVERY_S)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


# --- phases and figures ----------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    name: str
    cores: float
    """The appliance's CPU seconds per wall second."""
    own_cores: float
    """This process's (the tabs' and the probe's)."""
    tally: Tally
    streams: int
    """/events streams open at the end."""
    metrics: dict[str, float]


async def measure(name: str, pid: int, bench: Bench, seconds: float) -> Phase:
    bench.tally = Tally()
    cpu0, own0, wall0 = cpu_seconds(pid), time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu1, own1, wall1 = cpu_seconds(pid), time.process_time(), time.perf_counter()
    wall = wall1 - wall0
    metrics = await page_metrics(bench.base)
    cores, own = (cpu1 - cpu0) / wall, (own1 - own0) / wall
    return Phase(name, cores, own, bench.tally, bench.streams, metrics)


async def page_metrics(base: str) -> dict[str, float]:
    """The page's connection counters from /metrics."""
    async with aiohttp.ClientSession() as session, session.get(base + "/metrics") as response:
        text = await response.text()
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("appliance_http_"):
            found[name] = float(value)
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def latency_text(tally: Tally, kind: str) -> str:
    values = tally.latencies.get(kind, [])
    if not values:
        return f"{kind}: no request"
    p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
    return f"{kind}: {len(values)} requests, p50 {p50:.1f} ms, p99 {p99:.1f} ms"


def report(phases: list[Phase], clients: int, seconds: float) -> None:
    for phase in phases:
        tally = phase.tally
        cores = f"appliance {phase.cores:.3f} cores, bench process {phase.own_cores:.3f}"
        print(f"\n{phase.name}: {cores}")
        for kind in ("status", "spectrum", "history", "page", "index"):
            if kind in tally.latencies:
                print("  " + latency_text(tally, kind))
        if clients and phase.name == "loaded":
            per_tab = tally.events / clients / seconds
            print(f"  /events: {phase.streams} streams open, {per_tab:.2f} messages/s per tab, "
                  f"{tally.event_gaps} gaps over {EVENT_GAP_S} s")  # fmt: skip
        print(f"  errors: {dict(tally.errors) or 'none'}")
        shown = {k.removeprefix("appliance_http_"): int(v) for k, v in phase.metrics.items()}
        print(f"  page /metrics: {shown}")
    before, _, loaded, after = phases
    baseline = (before.cores + after.cores) / 2
    cost = loaded.cores - baseline
    verdict = "under" if cost < BAR_CORES else "OVER"
    print(f"\nbaseline {baseline:.3f} cores (before {before.cores:.3f}, after {after.cores:.3f})")
    print(f"with {clients} tabs {loaded.cores:.3f} cores; ratio {loaded.cores / baseline:.2f}")
    print(f"the page's cost: {cost:.3f} cores: {verdict} the bar of {BAR_CORES} core")


async def run_bench(args: argparse.Namespace, pid: int, base: str) -> list[Phase]:
    bench = Bench(base)
    probe = asyncio.create_task(bench.probe())
    await asyncio.sleep(args.warmup)
    phases = [await measure("baseline", pid, bench, args.seconds)]
    rng = random.Random(0)
    opening = asyncio.create_task(measure("opening the tabs", pid, bench, RAMP_S + SETTLE_S))
    tabs = [asyncio.create_task(bench.tab(n, rng)) for n in range(args.clients)]
    phases.append(await opening)
    phases.append(await measure("loaded", pid, bench, args.seconds))
    bench.stop.set()
    await asyncio.gather(*tabs)
    await asyncio.sleep(SETTLE_S)
    phases.append(await measure("baseline after", pid, bench, args.seconds))
    probe.cancel()
    await asyncio.gather(probe, return_exceptions=True)
    return phases


def wait_for_url(data_dir: Path, child: subprocess.Popen[bytes], deadline_s: float) -> str:
    deadline = time.monotonic() + deadline_s
    url_file = data_dir / URL_FILE
    while not url_file.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the appliance did not start: see {data_dir / 'appliance.log'}")
        time.sleep(0.2)
    return url_file.read_text().rstrip("/")


def stop_child(child: subprocess.Popen[bytes]) -> None:
    child.terminate()  # the appliance stops cleanly on SIGTERM
    try:
        child.wait(30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def answer_cost(repeats: int = 2000) -> None:
    """Print the time to build a spectrum answer and to serve the kept one (same run, ratio)."""
    import numpy as np

    from appliance.features.from_config import build_feature_engines
    from appliance.features.spectra import Spectra
    from appliance.records import SampleBlock
    from appliance.rig.demo import demo_config
    from appliance.web.spectrum import SpectrumAnswers, spectrum_body

    with tempfile.TemporaryDirectory(prefix="bench-answer-") as tmp:
        config = demo_config(Path(tmp), [])
    asset = next(a for a in config.assets if a.name == "pump-1")
    engines = build_feature_engines(config)
    spectra, engine = Spectra(engines), engines[asset.name]
    noise = np.random.default_rng(0)
    for second in range(6):
        for channel in asset.channels:
            rate = 1000.0 if channel.name.startswith("accel") else 1.0
            block = SampleBlock(asset.name, channel.name, float(second), rate,
                                noise.normal(0.0, 0.1, int(rate)))  # fmt: skip
            for vector in engine.push(block):
                spectra.emitted(vector)
    channel = "accel_x"

    def build() -> bytes:
        spectrum = spectra.latest(asset.name, channel)
        assert spectrum is not None, "no window yet"
        return json.dumps(spectrum_body(spectrum, asset, "g")).encode()

    answers, key = SpectrumAnswers(), (asset.name, channel)
    started = time.perf_counter()
    for _ in range(repeats):
        build()
    built_s = (time.perf_counter() - started) / repeats
    started = time.perf_counter()
    for _ in range(repeats):
        answers.get(key, spectra.stamp(*key), build)
    served_s = (time.perf_counter() - started) / repeats
    print(
        f"one spectrum answer ({len(build())} bytes): built {built_s * 1e6:.0f} us, served from "
        f"the window's kept answer {served_s * 1e6:.1f} us (ratio {built_s / served_s:.0f}); "
        f"100 tabs asking every {SPECTRUM_EVERY_S:g} s ({100 / SPECTRUM_EVERY_S:g}/s) would "
        f"spend {100 / SPECTRUM_EVERY_S * built_s:.4f} core building them, now at most "
        f"{built_s * 12:.4f} (6 channels, each built for its window and its baseline's update, "
        f"one window a second)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0, help="each phase (default 60)")
    parser.add_argument("--warmup", type=float, default=30.0, help="after the page listens")
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--fault", action="append", help="on the second asset (default imbalance)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--answer-cost", action="store_true", help="see the module's doc")
    args = parser.parse_args()
    if args.answer_cost:
        answer_cost()
        return
    faults = ["imbalance"] if args.fault is None else args.fault
    if args.serve is not None:
        serve(args.serve, args.max_connections, faults)
        return
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        data_dir = Path(tmp)
        command = [sys.executable, __file__, "--serve", tmp,
                   "--max-connections", str(args.max_connections)]  # fmt: skip
        command += [f"--fault={fault}" for fault in faults]
        with (data_dir / "appliance.log").open("wb") as log:
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            try:
                base = wait_for_url(data_dir, child, 120.0)
                print(
                    f"appliance pid {child.pid} at {base}, max_connections "
                    f"{args.max_connections}, faults {faults}, {args.clients} tabs, "
                    f"{args.seconds:g} s a phase, warm-up {args.warmup:g} s",
                    flush=True,
                )
                phases = asyncio.run(run_bench(args, child.pid, base))
            finally:
                stop_child(child)
        report(phases, args.clients, args.seconds)


if __name__ == "__main__":
    main()
