"""Issue 5's SMS bar: from the detector's decision (the Alert created in the detect stage) to the
first byte of AT+CMGS on the wire, with the feature pipeline running at 64 channels.

One process runs the appliance's stages as app.py wires them (feature stage, health stage,
detect stage, alert stage with the SMS intake, store writer, SMS sender with its ModemLink, one
SQLite store); the emulated SIM800 runs in its own process (`python -m appliance.rig.modem
--fast --commands`, which stamps every command line with time.monotonic(), a system-wide clock on
Linux) so the modem is not slowed by the loop it is measuring.

Load ("64 channels"): as in bench_pipeline.py, 16 emulated MCUs x 4 vibration channels at 1 kHz,
as int32 wire frames of 32 samples made up front; a feeder decodes them (FrameDecoder) into
SampleBlocks in real time (every 20 ms, what is due) and queues them for the feature stage, which
computes every window of every channel (5 s windows, 1 s stride) and the health rules. Baseline
("idle"): the same stages with no samples; one feature vector per asset per second is put
straight onto the detect stage's queue.

Decisions: each asset is scored by a real AssetDetector (fixed threshold 1.0, alarm cleared after
one window below) whose error model reports a level the bench sets: one asset at a time is
pushed to 3x the threshold (a critical "raised"), then back (a "cleared" that also goes by SMS),
closed loop: the next change waits until the last SMS is on the wire, so every figure is one
alert's latency, never queueing behind another. The policy sends only the anomaly family here
(a health alert from the load would add an SMS the pairing does not expect).

Latency = monotonic time the AT+CMGS line reached the modem - monotonic time alert_from_event()
returned in the detect stage (wrapped for the bench).

    .venv/bin/python bench/bench_sms_latency.py [--alerts 200] [--append-results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from bench_pipeline import RATE, Stream, make_streams
from bench_sms import emulated_modem

import appliance.detect.stage as detect_stage
from appliance import app, wiring
from appliance.config import ApplianceConfig, parse_config
from appliance.detect.alarms import AlarmSettings, alert_from_event
from appliance.detect.assets import AssetScoring
from appliance.detect.health import run_health_stage
from appliance.detect.routing import run_alert_stage
from appliance.detect.scorer import AssetDetector, DetectorSettings
from appliance.features.from_config import build_feature_engines
from appliance.features.stage import run_feature_stage
from appliance.logging import configure_logging
from appliance.records import Alert, FeatureVector, FloatArray, SampleBlock
from appliance.sms.service import open_sms
from appliance.sms.settings import sms_settings
from appliance.status import StatusBoard
from appliance.store import Store, StoredRecord, run_store_writer, store_settings
from firmware_bridge.codec import FrameDecoder, SamplesFrame

MCUS, PER_MCU = 16, 4
TICK_S = 0.02
HIGH, LOW = 3.0, 0.1  # x the fixed threshold 1.0: critical (> 2x), and clearly clear
RECIPIENT = "+15555550100"


class ScriptedModel:
    """An ErrorModel whose error is whatever the bench sets (the detector around it is real)."""

    def __init__(self, feature: str) -> None:
        self.level = LOW
        self._names = (feature,)

    @property
    def model_id(self) -> str:
        return "scripted"

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def commissioned_threshold(self) -> float:
        return 1.0

    def errors(self, rows: FloatArray) -> tuple[FloatArray, FloatArray]:
        errors = np.full(len(rows), self.level)
        return errors, errors[:, None]


@dataclass
class Run:
    mode: str
    latencies_ms: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    vectors: int = 0
    samples: int = 0
    seconds: float = 0.0
    max_blocks_queued: int = 0
    cpu_s: float = 0.0

    def pct(self, p: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[p - 1]

    def row(self) -> str:
        lat = self.latencies_ms
        per_s = self.seconds
        load = (
            f"{self.samples / per_s / 1000:.1f} k samples/s, {self.vectors / per_s:.1f} scored "
            f"vectors/s, process CPU {100 * self.cpu_s / per_s:.0f} %"
        )
        return (
            f"| {self.mode} | {load} | {len(lat)} | {self.pct(50):.1f} | {self.pct(90):.1f} "
            f"| **{self.pct(99):.1f}** | {max(lat):.1f} |"
        )


def bench_config(data_dir: Path, modem: Path) -> ApplianceConfig:
    channel_names = [f"accel_{c}" for c in range(PER_MCU)]
    document: dict[str, Any] = {
        "gateway": {"id": "bench-gw"},
        "store": {"path": str(data_dir / "bench.db")},
        "serial": [{"name": f"mcu{m}", "port": f"/dev/null-{m}"} for m in range(MCUS)],
        "assets": [
            {
                "name": f"mcu{m}",
                "channels": [
                    {
                        "name": name,
                        "kind": "vibration",
                        "rate_hz": float(RATE),
                        "unit": "g",
                        "valid_range": [-20.0, 20.0],
                        "source": {"serial": f"mcu{m}", "channel": c},
                    }
                    for c, name in enumerate(channel_names)
                ],
            }
            for m in range(MCUS)
        ],
        "sms": {
            "port": str(modem),
            "recipients": [RECIPIENT],
            "kinds": ["anomaly"],
            "max_per_hour": 60,
            "max_per_day": 500,
        },
    }
    return parse_config(document, "<bench>")


async def feed_samples(
    streams: Sequence[Stream], seconds: int, blocks: asyncio.Queue[SampleBlock], run: Run
) -> None:
    """Decode the wire bytes into SampleBlocks in real time, looping over the recording."""
    t0_wall, t0 = time.monotonic(), time.time()
    bytes_per_s = [len(s.wire) / seconds for s in streams]
    fed = [0] * len(streams)
    decoders = [FrameDecoder() for _ in streams]
    while True:
        await asyncio.sleep(TICK_S)
        elapsed = time.monotonic() - t0_wall
        for i, stream in enumerate(streams):
            due = int(elapsed * bytes_per_s[i])
            while fed[i] < due:
                lap, offset = divmod(fed[i], len(stream.wire))
                chunk = stream.wire[offset : min(offset + (due - fed[i]), len(stream.wire))]
                fed[i] += len(chunk)
                for frame in decoders[i].feed(chunk):
                    assert isinstance(frame, SamplesFrame)
                    samples = frame.physical()
                    start = t0 + lap * seconds + frame.mcu_time_us * 1e-6
                    for column, channel in enumerate(stream.channels):
                        block = SampleBlock(stream.asset, channel, start, RATE, samples[:, column])
                        run.samples += len(block.samples)
                        await blocks.put(block)
            run.max_blocks_queued = max(run.max_blocks_queued, blocks.qsize())


async def feed_vectors(assets: Sequence[str], feature: str, vectors: asyncio.Queue[Any]) -> None:
    """The idle baseline: one vector per asset per second, no feature computation."""
    t = time.time()
    while True:
        await asyncio.sleep(1.0)
        t += 1.0
        for asset in assets:
            await vectors.put(FeatureVector(asset, t, (feature,), np.array([0.0])))


async def measure(
    mode: str, alerts: int, streams: Sequence[Stream] | None, seconds: int, directory: Path
) -> Run:
    run = Run(mode)
    link = directory / f"modem-{mode}"
    async with emulated_modem(link) as cmgs:
        config = bench_config(directory / mode, link)
        board = StatusBoard(config.gateway.id)
        blocks: asyncio.Queue[SampleBlock] = asyncio.Queue(app.QUEUE_BLOCKS)
        vectors: asyncio.Queue[FeatureVector] = asyncio.Queue(app.QUEUE_VECTORS)
        alerts_q: asyncio.Queue[Alert] = asyncio.Queue(app.QUEUE_ALERTS)
        records: asyncio.Queue[StoredRecord] = asyncio.Queue(app.QUEUE_VECTORS)
        feature = "accel_0.rms"
        models = {a.name: ScriptedModel(feature) for a in config.assets}
        detector_settings = DetectorSettings(rule="fixed", alarm=AlarmSettings(off_count=1))
        scorings = {
            name: AssetScoring(
                name, detector_settings, AssetDetector(name, model, detector_settings)
            )
            for name, model in models.items()
        }
        decided: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
        # the detect stage calls alert_from_event by its module-level name: wrap it there
        vars(detect_stage)["alert_from_event"] = stamping(decided)
        assert config.sms is not None
        settings = sms_settings(config.gateway.id, config.sms)
        unlimited = dataclasses.replace(settings.policy, max_per_hour=10**6, max_per_day=10**6)
        settings = dataclasses.replace(settings, policy=unlimited)  # the bench sends hundreds
        health = wiring.build_health(config)
        store_config = store_settings(config.store, with_uplink=config.uplink is not None)
        async with await Store.open(store_config) as store:
            sms = await open_sms(settings, store.sms_queue, board, None, lambda: None)
            tasks = [
                run_store_writer(store.recorder, records),
                sms.sender.run(),
                run_alert_stage(wiring.build_router(config), alerts_q, records, sms.intake.accept),
                detect_stage.run_detect_stage(scorings, vectors, records, alerts_q, board),
                run_health_stage(health, alerts_q, board),
                run_feature_stage(build_feature_engines(config), blocks, vectors, board, health),
            ]
            if streams is not None:
                tasks.append(feed_samples(streams, seconds, blocks, run))
            else:
                tasks.append(feed_vectors(list(models), feature, vectors))
            running = [asyncio.create_task(t) for t in tasks]
            try:
                await asyncio.wait_for(sms.sender.link.wait_ready(), 60)
                cpu0, wall0 = time.process_time(), time.monotonic()
                samples0, scores0 = run.samples, scored(board)
                await closed_loop(models, alerts, decided, cmgs, run)
                run.cpu_s = time.process_time() - cpu0
                run.seconds = time.monotonic() - wall0
                run.samples -= samples0
                run.vectors = scored(board) - scores0
            finally:
                for task in running:
                    task.cancel()
                await asyncio.wait(running)
    return run


def scored(board: StatusBoard) -> int:
    return sum(status.scores for status in board.assets.values())


def stamping(decided: asyncio.Queue[tuple[float, str]]) -> Callable[..., Alert]:
    """alert_from_event, noting the moment the detect stage made the Alert."""
    original = alert_from_event

    def stamped(*args: Any, **kwargs: Any) -> Alert:
        alert = original(*args, **kwargs)
        decided.put_nowait((time.monotonic(), alert.kind))
        return alert

    return stamped


async def closed_loop(
    models: dict[str, ScriptedModel],
    alerts: int,
    decided: asyncio.Queue[tuple[float, str]],
    cmgs: asyncio.Queue[float],
    run: Run,
) -> None:
    names = sorted(models)
    for i in range(alerts):
        model = models[names[(i // 2) % len(names)]]
        model.level = HIGH if i % 2 == 0 else LOW
        decided_at, kind = await asyncio.wait_for(decided.get(), 30)
        on_wire = await asyncio.wait_for(cmgs.get(), 30)
        run.latencies_ms.append((on_wire - decided_at) * 1000)
        run.kinds.append(kind)


def report(runs: list[Run], args: argparse.Namespace) -> str:
    command = "bench/bench_sms_latency.py " + shlex.join(sys.argv[1:])
    loaded, idle = runs
    ratio = loaded.pct(99) / idle.pct(99)
    lines = [
        "## SMS alert latency: detector decision -> AT+CMGS on the wire "
        f"({datetime.now(UTC):%Y-%m-%d})",
        "",
        f"Command: `.venv/bin/python {command.strip()}`",
        "",
        f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end. "
        f"Stages wired as in app.py in one process (features, health, detect, alert stage + SMS "
        f"policy + durable SQLite queue, store writer, SMS sender/ModemLink); the emulated SIM800 "
        f"in its own process stamps the AT+CMGS line with the system-wide monotonic clock. "
        f"Alerts alternate critical raised / cleared on one of 16 assets at a time, closed loop.",
        "",
        "| pipeline | load | alerts | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|",
        loaded.row(),
        idle.row(),
        "",
        f"p99 loaded / idle: **{ratio:.2f}x**. Bar: p99 < 100 ms at 64 channels: "
        f"**{'met' if loaded.pct(99) < 100 else 'NOT met'}**.",
    ]
    return "\n".join(lines) + "\n"


async def run_all(args: argparse.Namespace) -> list[Run]:
    streams = make_streams(MCUS, PER_MCU, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        loaded = await measure(
            f"{MCUS * PER_MCU} channels x 1 kHz", args.alerts, streams, args.seconds, directory
        )
        idle = await measure("idle", args.alerts, None, args.seconds, directory)
    return [loaded, idle]


def main(args: argparse.Namespace) -> None:
    with open(os.devnull, "w") as devnull:
        configure_logging("info", devnull)  # rendered as in production, not printed
        runs = asyncio.run(run_all(args))
    text = report(runs, args)
    print(text)
    if args.append_results:
        with Path(args.append_results).open("a") as results:
            results.write("\n" + text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=200, help="alerts per run (raised+cleared)")
    parser.add_argument("--seconds", type=int, default=20, help="length of the looped recording")
    parser.add_argument("--append-results", help="append the table to this markdown file")
    main(parser.parse_args())
