"""Bytes per asset-day that the live demo rig puts on the uplink (issue 15's bytes bar).

`appliance run --config` on the demo's emulated two-asset rig (demo_config: two MCUs at 1 kHz,
the I2C sensors, the bundled models) with an [uplink] to a real local mosquitto (tests/broker.py:
TLS, passwords, the shipped ACL) through an unthrottled TCP proxy (tests/link_proxy.py), and a
receiver acking per PROTOCOL.md (tests/uplink_helpers.FakeReceiver). Counted from the first data
message on, for --seconds:
  - at the broker: a subscriber to `appliance/#` (user receiver) adds up every topic and payload
    the gateway publishes (data parts, status), by kind;
  - on the wire: the bytes the gateway sent through the proxy (MQTT framing, TLS, re-sends;
    not TCP/IP headers);
each scaled to a day and divided by the two assets.

With --old REV the same runs first against that revision (a git worktree on PYTHONPATH) as the
baseline. With --detail summary the rig runs twice, in the full profile first (the baseline of
the same run) and then with [uplink] detail = "summary"; each run also checks delivery at the
receiver: every seq up to its ack received in full or accounted by a summary part (none
missing), none twice, every alert in full.

    .venv/bin/python bench/bench_live_bytes.py [--seconds 180] [--old 7b09add] [--detail summary]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "chaos"))
from bench_thin_link import print_sides, run_old, running
from chaos_rig import toml_pairs
from link_proxy import LinkProxy
from uplink_bench_common import Broker, deployed_broker, new_tls
from uplink_helpers import FakeReceiver

from appliance.rig.demo import demo_config, demo_uplink

GATEWAY = "demo-gw"
ASSETS = 2
APPLIANCE = Path(sys.executable).parent / "appliance"


class TopicCounter:
    """Every message under the prefix: bytes of topic + payload, by the topic's kind level."""

    def __init__(self) -> None:
        self.bytes: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()
        self.started_at: float | None = None

    async def run(self, broker: Broker) -> None:
        args = broker.client_args("receiver", identifier="bench-counter")
        async with aiomqtt.Client(**args) as client:
            await client.subscribe("appliance/#", qos=1)
            async for message in client.messages:
                topic = str(message.topic)
                levels = topic.split("/")
                kind = levels[2] if len(levels) > 2 else topic
                if kind not in ("status", "ack") and self.started_at is None:
                    self.started_at = time.monotonic()
                if self.started_at is None or kind == "ack":  # acks are the receiver's
                    continue
                payload = message.payload if isinstance(message.payload, bytes) else b""
                self.bytes[kind] += len(topic.encode()) + len(payload)
                self.messages[kind] += 1


def config_text(work: Path, broker: Broker, port: int, detail: str = "full") -> str:
    url = broker.url(GATEWAY).replace(f":{broker.port}", f":{port}")
    uplink = demo_uplink(url, broker.ca_path)
    if detail != "full":
        uplink["detail"] = detail
    document = demo_config(work / "data", [], uplink=uplink, sms=False).model_dump(
        exclude_unset=True
    )
    return "\n".join(toml_pairs(document)) + "\n"


async def measure(seconds: float, detail: str = "full") -> dict[str, Any]:
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="bench-live-bytes-") as directory:
        work = Path(directory)
        with deployed_broker(new_tls(work), users=(GATEWAY,)) as broker:
            async with LinkProxy(broker.port) as proxy:
                config = work / "gateway.toml"
                config.write_text(config_text(work, broker, proxy.port, detail))
                counter = TopicCounter()
                receiver = FakeReceiver(broker, gateway=GATEWAY, client_id="bench-receiver")
                async with running(counter.run(broker)), running(receiver.run()):
                    with appliance_process(config, work / "appliance.log") as process:
                        figures = await count_for(seconds, counter, proxy, process, work)
                return figures | delivery(receiver)


def delivery(receiver: FakeReceiver) -> dict[str, Any]:
    """Up to the receiver's ack: every seq in full or summarised, none twice."""
    acked = receiver.acked
    full = {seq for seq in receiver.records if seq <= acked}
    summarised = {seq for seq in receiver.summarised() if seq <= acked}
    alerts = sum(type(receiver.records[seq]).__name__ == "Alert" for seq in full)
    minutes = sum(len(p.summary.minutes) for p in receiver.summaries if p.summary is not None)
    return {
        "receiver_acked_seq": acked,
        "records_in_full": len(full),
        "alerts_in_full": alerts,
        "records_summarised": len(summarised),
        "minutes_summarised": minutes,
        "missing": acked - len(full | summarised),
        "duplicates_dropped_by_receiver": receiver.duplicates,
    }


@contextlib.contextmanager
def appliance_process(config: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`appliance run --config` (of the revision on PYTHONPATH), stopped by SIGTERM at the end."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(APPLIANCE), "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            if process.poll() is None:
                process.kill()


async def count_for(
    seconds: float,
    counter: TopicCounter,
    proxy: LinkProxy,
    process: subprocess.Popen[bytes],
    work: Path,
) -> dict[str, Any]:
    deadline = time.monotonic() + 120.0
    while counter.started_at is None:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit((work / "appliance.log").read_text()[-3000:])
        await asyncio.sleep(0.1)
    wire_at_start = proxy.bytes_up
    await asyncio.sleep(seconds)
    measured_s = time.monotonic() - counter.started_at
    wire = proxy.bytes_up - wire_at_start
    per_day = 86400.0 / measured_s / ASSETS
    broker_bytes = sum(counter.bytes.values())
    return {
        "seconds": round(measured_s, 1),
        "messages": dict(counter.messages),
        "broker_bytes_by_kind": dict(counter.bytes),
        "broker_MB_per_asset_day": round(broker_bytes * per_day / 1e6, 2),
        "wire_MB_per_asset_day": round(wire * per_day / 1e6, 2),
        "bytes_per_message": round(broker_bytes / max(1, sum(counter.messages.values()))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--old", help="also run this revision first, as the baseline")
    parser.add_argument(
        "--detail",
        choices=("full", "summary"),
        default="full",
        help="the [uplink] profile; summary runs the full profile first as the baseline",
    )
    parser.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sides: dict[str, dict[str, Any]] = {}
    if args.old:
        argv = ["--seconds", str(args.seconds)]
        sides[f"old {args.old}"] = run_old(args.old, argv, script=Path(__file__))
    if args.detail != "full" and not args.json_only:
        sides["full profile (this checkout)"] = asyncio.run(measure(args.seconds))
        print(f"full: {json.dumps(sides['full profile (this checkout)'])}", flush=True)
    figures = asyncio.run(measure(args.seconds, args.detail))
    if args.json_only:
        print(json.dumps(figures))
        return
    sides[f"{args.detail} profile (this checkout)"] = figures
    print_sides(sides)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
