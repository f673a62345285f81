"""The uplink on a thin, intermittent link (issue 15, item 4).

A real mosquitto (tests/broker.py: TLS, passwords, the shipped ACL), a throttling TCP proxy
between the gateway and it (tests/link_proxy.py: a token bucket per direction, a link that dies
without FIN), the Uplink class fed by a real SQLite store at the demo rig's rate (two assets,
each a feature vector of 49 features and its score every second; an alert every --alert-every-s
on one of them) and a receiver acking per PROTOCOL.md (tests/uplink_helpers.FakeReceiver, on
the broker's side of the link: it notes when each record arrived).

Scenarios:
  thin      the link at --rate B/s (default 2048) for --seconds: the longest time the
            acknowledged seq stood still while records were outstanding, alert latency
            (stored -> at the receiver) p50/p99/max, the backlog over time; then the throttle
            is lifted and everything must arrive, exactly once.
  outage    the link at --rate (default 4096): --warm-s, then dead for --outage-s (no byte, no
            FIN), then back: how long until the acknowledged seq reaches the last seq stored
            when the link came back (the backlog drained, live flowing meanwhile), at most
            --drain-max-s.
  reconnect unthrottled: a --restart-s broker restart (time from the broker back to the next
            connection and to the first record at the receiver), then a --dead-s dead link
            (the same, from the link back).

With --old REV the same scenario runs first against that revision (a git worktree on
PYTHONPATH, this script and its helpers unchanged) as the baseline, then against this checkout.
--detail summary runs the gateway in the summary uplink profile ([uplink] detail); the alerts
then alternate between a raise and its clear (alarm episodes of --alert-every-s), and the
delivery check counts a seq accounted by a summary part as delivered and checks that every
alert and every window of an episode (and MARGIN_S before its raise) arrived in full.

    .venv/bin/python bench/bench_thin_link.py thin [--seconds 600] [--old 7b09add]
    .venv/bin/python bench/bench_thin_link.py thin --detail summary [--seconds 600]
    .venv/bin/python bench/bench_thin_link.py outage [--outage-s 300] [--old 7b09add]
    .venv/bin/python bench/bench_thin_link.py reconnect [--old 7b09add]
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
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from link_proxy import LinkProxy
from uplink_bench_common import (
    DEMO_NAMES,
    DEMO_VECTOR,
    GATEWAY,
    MODEL_ID,
    PREFIX,
    REPO,
    Broker,
    deployed_broker,
    new_tls,
)
from uplink_helpers import FakeReceiver

from appliance.config import BrokerAddress
from appliance.records import Alert, FeatureVector, Score
from appliance.store import Store, StoredRecord, StoreSettings
from appliance.uplink.publisher import Uplink
from appliance.uplink.schema import SeqRecord
from appliance.uplink.settings import UplinkSettings

ASSETS = ("pump-1", "compressor-2")
MARGIN_S = 60.0
"""[uplink] summary_margin_s in the summary profile (its default)."""


@dataclass
class TimedReceiver(FakeReceiver):
    """The fake receiver, noting when each record first arrived."""

    arrived_at: dict[int, float] = field(default_factory=dict)

    def _store_records(self, records: list[SeqRecord]) -> None:
        now = time.monotonic()
        for seq, _ in records:
            self.arrived_at.setdefault(seq, now)
        super()._store_records(records)


@dataclass
class Producer:
    """The rig's rate: per asset a vector and its score every second, an alert now and then."""

    store: Store
    new_data: asyncio.Event
    alert_every_s: float
    episodes: bool = False
    """Alerts alternate between a raise and its clear (else all raises, never cleared)."""
    stored_at: dict[int, float] = field(default_factory=dict)
    alerts: list[int] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    """The episodes' (raise - MARGIN_S, clear) times of ASSETS[1] (episodes only)."""
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    async def run(self) -> None:
        next_alert = time.monotonic() + self.alert_every_s / 2
        tick = time.monotonic()
        while True:
            now_utc = time.time()
            records: list[StoredRecord] = []
            for asset in ASSETS:
                values = DEMO_VECTOR * (1.0 + 0.05 * self.rng.standard_normal(len(DEMO_VECTOR)))
                error = abs(0.7 + 0.2 * float(self.rng.standard_normal()))
                records.append(FeatureVector(asset, now_utc, DEMO_NAMES, values))
                records.append(Score(asset, now_utc, MODEL_ID, error, 2.25, False, ()))
            alert = time.monotonic() >= next_alert
            if alert:
                next_alert += self.alert_every_s
                records.append(self._alert(now_utc))
            seqs = await self.store.recorder.add_records(records)
            stored = time.monotonic()
            for seq in seqs:
                self.stored_at[seq] = stored
            if alert:
                self.alerts.append(seqs[-1])
            self.new_data.set()
            tick += 1.0
            await asyncio.sleep(max(0.0, tick - time.monotonic()))

    def _alert(self, now_utc: float) -> Alert:
        raising = not self.episodes or len(self.alerts) % 2 == 0
        if self.episodes and raising:
            self.spans.append((now_utc - MARGIN_S, float("inf")))
        elif self.episodes:
            self.spans[-1] = (self.spans[-1][0], now_utc)
        kind = "spike_raised" if raising else "spike_cleared"
        return Alert(ASSETS[1], now_utc, "critical", kind, "accel_x spikes")


@dataclass
class Rig:
    broker: Broker
    proxy: LinkProxy
    store: Store
    receiver: TimedReceiver
    producer: Producer
    uplink: Uplink
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    """(monotonic time, acknowledged seq, last seq) every second."""

    async def sample_forever(self) -> None:
        while True:
            acked = await self.store.delivery.acked_seq()
            last = await self.store.delivery.latest_seq()
            self.samples.append((time.monotonic(), acked, last))
            await asyncio.sleep(1.0)

    async def drain(self, limit_s: float = 300.0) -> float | None:
        """Link unthrottled, production stopped: seconds until everything is acknowledged."""
        self.proxy.rate_bps = None
        started = time.monotonic()
        last = await self.store.delivery.latest_seq()
        while await self.store.delivery.acked_seq() < last:
            if time.monotonic() - started > limit_s:
                return None
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def delivery_check(self, last: int) -> dict[str, int]:
        """Every seq received in full or accounted by a summary part, none twice; every alert
        and every window of an episode (with the margin before it) in full."""
        got = set(self.receiver.records)
        summarised = self.receiver.summarised()
        stored = await self.store.history.outbox(limit=last + 1)
        spans = self.producer.spans
        in_alarm = {
            seq
            for seq, record in stored
            if record.asset == ASSETS[1] and any(a <= time_of(record) <= b for a, b in spans)
        }
        wanted_in_full = in_alarm | set(self.producer.alerts)
        return {
            "last_seq": last,
            "received_in_full": len(got),
            "summarised": len(summarised),
            "missing": len(set(range(1, last + 1)) - got - summarised),
            "unexpected": len(got - set(range(1, last + 1))),
            "alerts_and_alarm_windows_not_in_full": len(wanted_in_full - got),
            "duplicates_dropped_by_receiver": self.receiver.duplicates,
        }

    def alert_latencies(self, since: float = 0.0) -> list[float]:
        return [
            self.receiver.arrived_at[seq] - self.producer.stored_at[seq]
            for seq in self.producer.alerts
            if seq in self.receiver.arrived_at and self.producer.stored_at[seq] >= since
        ]


def time_of(record: StoredRecord) -> float:
    return record.window_end if isinstance(record, FeatureVector) else record.t


def uplink_settings(broker: Broker, port: int, detail: str = "full") -> UplinkSettings:
    """The defaults of the revision under test, pointed at the proxy (and the summary profile
    when asked: older revisions have none)."""
    profile: dict[str, Any] = {} if detail == "full" else {"detail": detail}
    return UplinkSettings(
        **profile,
        gateway=GATEWAY,
        broker=BrokerAddress(True, broker.host, port),
        username=GATEWAY,
        password=broker.credentials[GATEWAY].password,
        ca_file=broker.ca_path,
        prefix=PREFIX,
    )


@contextlib.asynccontextmanager
async def running(coroutine: Any) -> AsyncIterator[asyncio.Task[Any]]:
    task = asyncio.create_task(coroutine)
    try:
        yield task
    finally:
        task.cancel()
        while not task.done():
            await asyncio.wait({task}, timeout=1.0)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


@contextlib.asynccontextmanager
async def rig(
    work: Path, rate: float | None, alert_every_s: float, detail: str = "full"
) -> AsyncIterator[Rig]:
    with deployed_broker(new_tls(work)) as broker:
        async with (
            LinkProxy(broker.port, rate_bps=rate) as proxy,
            await Store.open(StoreSettings(work / "gateway.db")) as store,
        ):
            new_data = asyncio.Event()
            receiver = TimedReceiver(broker, gateway=GATEWAY, client_id="bench-receiver")
            producer = Producer(store, new_data, alert_every_s, episodes=detail != "full")
            settings = uplink_settings(broker, proxy.port, detail)
            uplink = Uplink(settings, store.delivery, new_data=new_data)
            bench = Rig(broker, proxy, store, receiver, producer, uplink)
            async with running(receiver.run()), running(bench.sample_forever()):
                yield bench


def longest_stall(samples: list[tuple[float, int, int]]) -> float:
    """The longest time the acknowledged seq did not move while records were outstanding."""
    longest = 0.0
    since: float | None = None
    previous_acked = -1
    for t, acked, last in samples:
        if acked != previous_acked or acked >= last:
            since = t if acked < last else None
            previous_acked = acked
        elif since is not None:
            longest = max(longest, t - since)
    return longest


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.array(values), q))


def backlog_series(samples: list[tuple[float, int, int]], every_s: float) -> list[int]:
    if not samples:
        return []
    start = samples[0][0]
    series: list[int] = []
    for t, acked, last in samples:
        if t - start >= len(series) * every_s:
            series.append(last - acked)
    return series


async def scenario_thin(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    async with rig(work, args.rate or 2048.0, args.alert_every_s, args.detail) as bench:
        async with running(bench.uplink.run()), running(bench.producer.run()):
            await asyncio.sleep(args.seconds)
        bytes_up = bench.proxy.bytes_up  # through the throttle (not the drain after it)
        async with running(bench.uplink.run()):
            last = await bench.store.delivery.latest_seq()
            drained_s = await bench.drain()
        latencies = bench.alert_latencies()
        return {
            "rate_bps": args.rate or 2048.0,
            "seconds": args.seconds,
            "records": last,
            "longest_ack_stall_s": round(longest_stall(bench.samples), 1),
            "alerts": len(bench.producer.alerts),
            "alerts_arrived_in_time": len(latencies),
            "alert_latency_p50_s": rnd(percentile(latencies, 50)),
            "alert_latency_p99_s": rnd(percentile(latencies, 99)),
            "alert_latency_max_s": rnd(max(latencies, default=None)),
            "backlog_every_60s": backlog_series(bench.samples, 60.0),
            "wire_bytes_up_per_asset_day": round(bytes_up / args.seconds * 86400 / 2),
            "drained_after_unthrottle_s": rnd(drained_s),
            **await bench.delivery_check(last),
        }


async def scenario_outage(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rate = args.rate or 4096.0
    async with rig(work, rate, args.alert_every_s) as bench:
        async with running(bench.uplink.run()), running(bench.producer.run()):
            await asyncio.sleep(args.warm_s)
            bench.proxy.freeze()
            await asyncio.sleep(args.outage_s)
            bench.proxy.revive()
            back = time.monotonic()
            target = await bench.store.delivery.latest_seq()
            backlog_at_back = target - await bench.store.delivery.acked_seq()
            drained_s: float | None = None
            while time.monotonic() - back < args.drain_max_s:
                if await bench.store.delivery.acked_seq() >= target:
                    drained_s = time.monotonic() - back
                    break
                await asyncio.sleep(0.5)
            live_latencies = bench.alert_latencies(since=back)
            delivery = bench.store.delivery
            behind_at_end = await delivery.latest_seq() - await delivery.acked_seq()
        async with running(bench.uplink.run()):
            last = await bench.store.delivery.latest_seq()
            await bench.drain()
        after_back = [sample for sample in bench.samples if sample[0] >= back]
        return {
            "rate_bps": rate,
            "warm_s": args.warm_s,
            "outage_s": args.outage_s,
            "backlog_at_link_back": backlog_at_back,
            "drained_after_link_back_s": rnd(drained_s),
            "drain_limit_s": args.drain_max_s,
            "behind_at_end_of_drain_phase": behind_at_end,
            "alerts_after_link_back_arrived": len(live_latencies),
            "alert_latency_after_link_back_p99_s": rnd(percentile(live_latencies, 99)),
            "longest_ack_stall_after_link_back_s": round(longest_stall(after_back), 1),
            "backlog_every_60s": backlog_series(bench.samples, 60.0),
            **await bench.delivery_check(last),
        }


async def first_arrival_after(bench: Rig, since: float, limit_s: float = 300.0) -> float | None:
    while time.monotonic() - since < limit_s:
        if any(t >= since for t in list(bench.receiver.arrived_at.values())[-50:]):
            return time.monotonic() - since
        await asyncio.sleep(0.05)
    return None


async def connected_after(bench: Rig, connections: int, since: float) -> float | None:
    while time.monotonic() - since < 300.0:
        if bench.uplink.status.connections > connections and bench.uplink.status.connected:
            return time.monotonic() - since
        await asyncio.sleep(0.05)
    return None


async def scenario_reconnect(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    async with rig(work, None, args.alert_every_s) as bench:
        async with running(bench.uplink.run()), running(bench.producer.run()):
            await asyncio.sleep(args.warm_s)
            connections = bench.uplink.status.connections
            bench.broker.stop()
            await asyncio.sleep(args.restart_s)
            bench.broker.start()
            back = time.monotonic()
            connected_s = await connected_after(bench, connections, back)
            restart = {
                "connected_after_broker_back_s": rnd(connected_s),
                "first_data_after_broker_back_s": rnd(await first_arrival_after(bench, back)),
            }
            await asyncio.sleep(args.warm_s)
            connections = bench.uplink.status.connections
            bench.proxy.freeze()
            await asyncio.sleep(args.dead_s)
            bench.proxy.revive()
            back = time.monotonic()
            connected_s = await connected_after(bench, connections, back)
            dead = {
                "connected_after_link_back_s": rnd(connected_s),
                "first_data_after_link_back_s": rnd(await first_arrival_after(bench, back)),
            }
        async with running(bench.uplink.run()):
            last = await bench.store.delivery.latest_seq()
            await bench.drain()
        return {
            "restart_s": args.restart_s,
            **restart,
            "dead_s": args.dead_s,
            **dead,
            "connections": bench.uplink.status.connections,
            **await bench.delivery_check(last),
        }


SCENARIOS = {"thin": scenario_thin, "outage": scenario_outage, "reconnect": scenario_reconnect}


def rnd(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def run_here(args: argparse.Namespace) -> dict[str, Any]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="bench-thin-link-") as work:
        return await SCENARIOS[args.scenario](args, Path(work))


def run_old(revision: str, argv: list[str], script: Path = Path(__file__)) -> dict[str, Any]:
    """`script` (this one by default) against `revision`'s appliance package (a worktree on
    PYTHONPATH; the script and its helpers are this checkout's); its figures as JSON."""
    with tempfile.TemporaryDirectory(prefix="bench-thin-link-old-") as directory:
        tree = Path(directory) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), revision],
            check=True,
            capture_output=True,
        )
        try:
            env = {**os.environ, "PYTHONPATH": str(tree)}
            done = subprocess.run(
                [sys.executable, str(script), *argv, "--json-only"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            return dict(json.loads(done.stdout.strip().splitlines()[-1]))
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                check=False,
                capture_output=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--rate", type=float, default=0.0, help="B/s each way (0: the default)")
    parser.add_argument("--seconds", type=float, default=600.0, help="thin: how long")
    parser.add_argument("--warm-s", type=float, default=60.0)
    parser.add_argument("--outage-s", type=float, default=300.0)
    parser.add_argument("--drain-max-s", type=float, default=600.0)
    parser.add_argument("--restart-s", type=float, default=5.0)
    parser.add_argument("--dead-s", type=float, default=120.0)
    parser.add_argument("--alert-every-s", type=float, default=20.0)
    parser.add_argument("--detail", choices=("full", "summary"), default="full")
    parser.add_argument("--old", help="also run this revision first, as the baseline")
    parser.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    argv = [a for a in sys.argv[1:] if not a.startswith("--old") and a != args.old]
    sides: dict[str, dict[str, Any]] = {}
    if args.old:
        sides[f"old {args.old}"] = run_old(args.old, argv)
        print(f"old {args.old}: {json.dumps(sides[f'old {args.old}'])}", flush=True)
    figures = asyncio.run(run_here(args))
    if args.json_only:
        print(json.dumps(figures))
        return
    sides["new (this checkout)"] = figures
    print_sides(sides)


def print_sides(sides: dict[str, dict[str, Any]]) -> None:
    """Each side's figures, then new / old of every number both have."""
    for name, side in sides.items():
        print(f"--- {name}")
        for key, value in side.items():
            print(f"  {key}: {value}")
    if len(sides) == 2:
        old, new = sides.values()
        print("--- new / old")
        for key, value in new.items():
            base = old.get(key)
            if isinstance(value, int | float) and isinstance(base, int | float) and base:
                print(f"  {key}: {value / base:.3f}")


if __name__ == "__main__":
    main()
