"""A 24-hour backlog of one asset drains through the uplink into mosquitto and the receiver;
the same backlog through a Mosquitto bridge with its default settings, in the same run.

Ours: `--seconds` (86,400) feature vectors of the demo's width (49 features) and their scores,
one pair per second, are written into a gateway store (a real SQLite file, WAL, synchronous
NORMAL, as `appliance run` opens it). Then a real `appliance-receiver` (subprocess, SQLite) and
the gateway's Uplink task (ack = "receiver", default settings except `--replay-rate`) are started
against a mosquitto deployed as receiver/mosquitto/mosquitto.conf (TLS, passwords, the shipped
ACL, persistence). Timed: from Uplink start until the store holds the receiver's ack of the
last seq (TLS connect and the 2 s wait for a retained ack included). Then the receiver's
database is checked: every seq exactly once, none missing, feature values equal bit for bit.

Baselines, same run, same records:
  1. raw mosquitto throughput: the records as one-record QoS 1 messages (the record's JSON
     object, as it appears inside our parts) vs our batched parts (encode_range), published by
     an aiomqtt client (32 in flight, as the Uplink) to an aiomqtt subscriber through the
     deployed broker, no database. Ratio: batched / one-record. (mosquitto_pub -l was tried as
     a C-speed publisher: mosquitto 2.0.11 disconnected it "due to out of memory" after ~41,700
     of the 172,800 one-record messages, every time, so it is not used.)
  2. a Mosquitto bridge with its default settings: a local broker (defaults: max_queued_messages
     1000, no persistence, restart_timeout 5..30 s jitter) bridges `appliance/# out 1` to the
     deployed broker, where a subscriber with a persistent session waits. The bridge link is up,
     then the remote broker stops; a naive gateway publishes every record as its own QoS 1
     message to the local broker (each one PUBACKed); the remote comes back; we count what the
     subscriber gets: the loss is (sent - arrived) / sent.

    .venv/bin/python bench/bench_backlog.py [--seconds 86400] [--replay-rate 0]
        [--skip-bridge] [--formats-only] [--append-results bench/RESULTS.md]

It starts with the bytes of the backlog's parts in each wire format (binary, JSON: payloads cut
as the Uplink cuts them, per record and for a day; `--formats-only` stops there). The drain
sends in the format the Uplink is configured with; the values check accepts float32 values (as
the binary format carries them) and says which it found.

`--replay-rate 0` lifts the backlog replay cap (replay_records_per_s); the shipped default is
1000 records/s, at which a 24-hour backlog takes 173 s by design (the cap protects a thin link).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import structlog
from uplink_bench_common import (
    GATEWAY,
    PREFIX,
    Broker,
    TlsFiles,
    demo_records,
    deployed_broker,
    free_port,
    new_tls,
    start_receiver,
)

from appliance.config import BrokerAddress
from appliance.records import FeatureVector
from appliance.store import OutboxRange, Store, StoreSettings
from appliance.store.codec import StoredRecord
from appliance.uplink.publisher import Uplink
from appliance.uplink.ranges import encode_range
from appliance.uplink.schema import Part, WireFormat, encode_part
from appliance.uplink.settings import UplinkSettings

UNCAPPED = 1e9
WINDOW = 32  # QoS 1 publishes awaiting PUBACK at once: the Uplink's max_in_flight default
BRIDGE_FIRST_ARRIVAL_DEADLINE_S = 120.0
SHIPPED_REPLAY_RATE = UplinkSettings.__dataclass_fields__["replay_records_per_s"].default


# --- records as messages ----------------------------------------------------------------------


def one_record_messages(records: Sequence[StoredRecord]) -> list[tuple[str, bytes]]:
    """One QoS 1 message per record, the way a naive gateway sends: the record's JSON object
    exactly as it appears inside our parts (feature values without their names)."""
    messages = []
    for seq, record in enumerate(records, start=1):
        part = Part(GATEWAY, seq - 1, seq, 0, 1, kind_of(record), record.asset, [(seq, record)])
        body = json.loads(encode_part(part))
        messages.append((part.topic(PREFIX), json.dumps(body["records"][0]).encode()))
    return messages


def kind_of(record: StoredRecord) -> Any:
    return "features" if isinstance(record, FeatureVector) else "scores"


def batched_messages(
    records: Sequence[StoredRecord], settings: UplinkSettings, fmt: WireFormat = "json"
) -> list[tuple[str, bytes]]:
    """Our parts for the same records, cut as the Uplink cuts them (max_records_per_message,
    max_message_bytes), in wire format `fmt`."""
    messages: list[tuple[str, bytes]] = []
    rows = list(enumerate(records, start=1))
    lo = 0
    while lo < len(rows):
        chunk = rows[lo : lo + settings.max_records_per_message]
        found = OutboxRange(lo, chunk[-1][0], chunk)
        prepared = encode_range(found, GATEWAY, PREFIX, settings.max_message_bytes, fmt)
        messages += prepared.messages
        lo = prepared.hi
    return messages


# --- bytes on the wire per format --------------------------------------------------------------


@dataclass(frozen=True)
class WireBytes:
    fmt: str
    messages: int
    bytes: int
    records: int

    @property
    def per_record(self) -> float:
        return self.bytes / self.records


def wire_bytes(records: Sequence[StoredRecord]) -> list[WireBytes]:
    """The backlog's parts (payloads) in each wire format, cut as the Uplink cuts them."""
    settings = UplinkSettings(GATEWAY, BrokerAddress(True, "x", 1))
    found = []
    for fmt in ("json", "binary"):
        messages = batched_messages(records, settings, fmt)  # type: ignore[arg-type]
        size = sum(len(payload) for _, payload in messages)
        found.append(WireBytes(fmt, len(messages), size, len(records)))
    return found


def wire_lines(formats: list[WireBytes], seconds: int) -> list[str]:
    day = 86_400 / seconds
    json_bytes = next(w for w in formats if w.fmt == "json").bytes
    return [
        f"wire format {w.fmt}: {w.messages} messages, {w.bytes / 1e6:.1f} MB, "
        f"{w.per_record:.0f} bytes/record; a day's backlog {w.bytes * day / 1e6:.1f} MB; "
        f"{w.bytes / json_bytes:.3f} of JSON"
        for w in formats
    ]


# --- ours: the Uplink drains the store into the receiver --------------------------------------


@dataclass
class Drain:
    records: int
    store_write_s: float
    seconds: float
    connect_s: float
    messages: int
    bytes: int
    ranges: int
    resends: int
    receiver: dict[str, Any]
    db_records: int
    db_distinct: int
    db_min: int
    db_max: int
    values_equal: bool
    values_as: str
    replay_rate: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def exactly_once(self) -> bool:
        return (
            self.db_records == self.db_distinct == self.records
            and (self.db_min, self.db_max) == (1, self.records)
            and self.values_equal
        )


async def drain_backlog(
    records: list[StoredRecord], broker: Broker, work: Path, replay_rate: float
) -> Drain:
    store_path = work / "gateway" / "appliance.db"
    rx_db = work / "receiver" / "receiver.db"
    async with await Store.open(StoreSettings(store_path, retain_undelivered=True)) as store:
        started = time.perf_counter()
        for start in range(0, len(records), 500):  # the store writer's batch size
            await store.recorder.add_records(records[start : start + 500])
        store_write_s = time.perf_counter() - started
        last_seq = await store.delivery.latest_seq()

        receiver = start_receiver(broker, f"sqlite:///{rx_db}", work / "receiver.log")
        settings = UplinkSettings(
            gateway=GATEWAY,
            broker=BrokerAddress(True, broker.host, broker.port),
            username=GATEWAY,
            password=broker.credentials[GATEWAY].password,
            ca_file=broker.ca_path,
            prefix=PREFIX,
            replay_records_per_s=replay_rate,
        )
        uplink = Uplink(settings, store.delivery)
        try:
            started = time.perf_counter()
            task = asyncio.create_task(uplink.run())
            connect_s = None
            while await store.delivery.acked_seq() < last_seq:
                if connect_s is None and uplink.status.connected:
                    connect_s = time.perf_counter() - started
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            seconds = time.perf_counter() - started
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            receiver_stats = receiver.stop()
        status = uplink.status
    db = check_receiver_db(rx_db, store_path)
    return Drain(
        records=len(records),
        store_write_s=store_write_s,
        seconds=seconds,
        connect_s=connect_s or 0.0,
        messages=status.published_messages,
        bytes=status.published_bytes,
        ranges=status.published_ranges,
        resends=status.resends,
        receiver=receiver_stats,
        replay_rate=replay_rate,
        **db,
    )


def check_receiver_db(rx_db: Path, store_path: Path) -> dict[str, Any]:
    """Counts in the receiver's database, and every feature value compared with the store's."""
    rx = sqlite3.connect(rx_db)
    count, distinct, low, high = rx.execute(
        "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM"
        " (SELECT seq FROM features WHERE gateway = ?1 UNION ALL"
        "  SELECT seq FROM scores WHERE gateway = ?1)",
        (GATEWAY,),
    ).fetchone()
    received = rx.execute(
        "SELECT seq, feature_values FROM features WHERE gateway = ? ORDER BY seq", (GATEWAY,)
    ).fetchall()
    rx.close()
    gw = sqlite3.connect(store_path)
    stored = gw.execute("SELECT seq, values_f64le FROM features ORDER BY seq").fetchall()
    gw.close()
    exact = [(s, bytes(v)) for s, v in received] == [(s, bytes(v)) for s, v in stored]
    as_float32 = [(s, bytes(v)) for s, v in received] == [(s, float32_blob(v)) for s, v in stored]
    return {"db_records": count, "db_distinct": distinct, "db_min": low, "db_max": high,
            "values_equal": exact or as_float32,
            "values_as": "bit for bit" if exact else "as float32"}  # fmt: skip


def float32_blob(blob: bytes) -> bytes:
    """A stored float64 blob as the binary wire format carries it (float32, back to float64)."""
    return np.frombuffer(blob, "<f8").astype("<f4").astype("<f8").tobytes()


# --- baseline 1: raw throughput, one record per message vs our parts ----------------------------


@dataclass(frozen=True)
class Raw:
    clients: str
    mode: str
    records: int
    messages: int
    bytes: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6


class Counter:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.done = asyncio.Event()
        self.last_arrival = 0.0

    def hit(self) -> None:
        self.count += 1
        self.last_arrival = time.monotonic()
        if self.count >= self.expected:
            self.done.set()


async def subscribe_and_count(client: aiomqtt.Client, counter: Counter) -> None:
    async for _ in client.messages:
        counter.hit()


async def publish_all(
    client: aiomqtt.Client, messages: Sequence[tuple[str, bytes]], window: int = WINDOW
) -> None:
    """QoS 1, at most `window` awaiting their PUBACK (as the Uplink's max_in_flight)."""
    room = asyncio.Semaphore(window)

    async def one(topic: str, payload: bytes) -> None:
        try:
            await client.publish(topic, payload, qos=1, timeout=120)
        finally:
            room.release()

    async with asyncio.TaskGroup() as group:
        for topic, payload in messages:
            await room.acquire()
            group.create_task(one(topic, payload))


async def raw_throughput(
    mode: str, messages: Sequence[tuple[str, bytes]], records: int, broker: Broker
) -> Raw:
    counter = Counter(len(messages))
    subscriber = aiomqtt.Client(**broker.client_args("receiver", identifier=f"bench-sub-{mode}"),
                                max_inflight_messages=100)  # fmt: skip
    publisher = aiomqtt.Client(**broker.client_args(GATEWAY, identifier=GATEWAY),
                               max_inflight_messages=WINDOW)  # fmt: skip
    publisher.pending_calls_threshold = WINDOW + 2
    async with subscriber, publisher:
        await subscriber.subscribe(f"{PREFIX}/{GATEWAY}/+/+", qos=1)
        counting = asyncio.create_task(subscribe_and_count(subscriber, counter))
        started = time.perf_counter()
        await publish_all(publisher, messages)
        await asyncio.wait_for(counter.done.wait(), 600)
        seconds = time.perf_counter() - started
        counting.cancel()
    size = sum(len(payload) for _, payload in messages)
    return Raw("Python (aiomqtt)", mode, records, len(messages), size, seconds)


# --- baseline 2: a Mosquitto bridge with default settings --------------------------------------


@dataclass
class Bridged:
    seqs: set[int]
    sent: int
    publish_s: float
    arrived: int
    first_seq: int | None
    last_seq: int | None
    reconnect_s: float | None
    delivery_s: float | None
    dropped_log_lines: int
    config: str = field(repr=False)

    @property
    def lost(self) -> int:
        return self.sent - self.arrived


def bridge_config(local_port: int, remote: Broker, directory: Path) -> str:
    """Every setting at mosquitto's default except what a bridge must name."""
    assert remote.tls is not None
    return "\n".join([
        f"listener {local_port} 127.0.0.1",
        "allow_anonymous true",
        "log_dest stderr",
        "connection gateway-bridge",
        f"address {remote.host}:{remote.port}",
        f"topic {PREFIX}/# out 1",
        f"remote_username {GATEWAY}",
        f"remote_password {remote.credentials[GATEWAY].password}",
        f"bridge_cafile {directory / 'ca.crt'}",
        "",
    ])  # fmt: skip


def bridge_remote(tls: TlsFiles) -> Broker:
    """The deployed broker, whose ACL also lets the bridge publish its connection state
    (`notifications true`, a bridge default): mosquitto 2.0 disconnects a client whose publish
    the ACL denies, so without this line a default bridge never stays up."""
    from broker import SHIPPED_ACL

    acl = SHIPPED_ACL.read_text() + "\npattern write $SYS/broker/connection/%c/state\n"
    return Broker.create([GATEWAY], tls=tls, acl=acl)


def local_bridge_broker(remote: Broker) -> Broker:
    from broker import hand_over

    directory = Path(tempfile.mkdtemp(prefix="mosquitto-bridge-"))
    assert remote.tls is not None
    shutil.copy(remote.tls.ca_path, directory / "ca.crt")
    port = free_port()
    (directory / "mosquitto.conf").write_text(bridge_config(port, remote, directory))
    hand_over(directory)
    return Broker(directory, port, {}, None)


class PersistentSubscriber:
    """The cloud side of the bridge: a QoS 1 subscriber with a persistent session on the remote
    broker that reconnects while the remote is down (its queue there has no count limit)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.seqs: set[int] = set()
        self.probes = 0
        self.arrivals: list[float] = []

    async def run(self) -> None:
        args = self.broker.client_args("receiver", identifier="bench-bridge-sub",
                                       clean_session=False)  # fmt: skip
        while True:
            try:
                async with aiomqtt.Client(**args) as client:
                    await client.subscribe(f"{PREFIX}/{GATEWAY}/#", qos=1)
                    async for message in client.messages:
                        body = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                        if body.get("probe"):
                            self.probes += 1
                            continue
                        self.seqs.add(int(body["seq"]))
                        self.arrivals.append(time.monotonic())
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)


async def through_bridge(
    messages: Sequence[tuple[str, bytes]], remote: Broker, quiet_s: float
) -> Bridged:
    local = local_bridge_broker(remote)
    subscriber = PersistentSubscriber(remote)
    listening = asyncio.create_task(subscriber.run())
    try:
        local.start()
        # The link is up: a probe published locally reaches the subscriber on the remote.
        async with aiomqtt.Client(local.host, local.port, identifier="bench-probe") as probe:
            deadline = time.monotonic() + 60
            while subscriber.probes == 0:
                await probe.publish(f"{PREFIX}/{GATEWAY}/probe/_", b'{"probe": 1}', qos=1)
                await asyncio.sleep(0.5)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the bridge never came up:\n{local.log_tail()}")
        remote.stop()  # the link goes down (the remote saves its sessions)
        started = time.perf_counter()
        async with aiomqtt.Client(local.host, local.port, identifier=GATEWAY,
                                  max_inflight_messages=WINDOW) as gateway:  # fmt: skip
            gateway.pending_calls_threshold = WINDOW + 2
            await publish_all(gateway, messages)
        publish_s = time.perf_counter() - started
        remote.start()  # the link may come back
        link_up = time.monotonic()
        deadline = link_up + BRIDGE_FIRST_ARRIVAL_DEADLINE_S
        while not subscriber.arrivals and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        while subscriber.arrivals and time.monotonic() - subscriber.arrivals[-1] < quiet_s:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        log = (local.directory / "mosquitto.log").read_text(errors="replace")
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        local.close()
    arrivals = subscriber.arrivals
    seqs = subscriber.seqs
    return Bridged(
        seqs=seqs,
        sent=len(messages),
        publish_s=publish_s,
        arrived=len(seqs),
        first_seq=min(seqs, default=None),
        last_seq=max(seqs, default=None),
        reconnect_s=arrivals[0] - link_up if arrivals else None,
        delivery_s=arrivals[-1] - arrivals[0] if arrivals else None,
        dropped_log_lines=log.count("dropped"),
        config=bridge_config(local.port, remote, local.directory),
    )


# --- report -------------------------------------------------------------------------------------


def ratios(raws: list[Raw]) -> list[tuple[str, float]]:
    """(clients, batched records/s / one-record records/s) per client kind measured."""
    found = []
    for clients in dict.fromkeys(raw.clients for raw in raws):
        pair = {raw.mode: raw for raw in raws if raw.clients == clients}
        single, batched = pair.get("one record per message"), pair.get("our batched parts")
        if single and batched:
            found.append((clients, batched.records_per_s / single.records_per_s))
    return found


def arrived_seqs(bridged: Bridged) -> str:
    """`1..1000` plus the seqs beyond the first contiguous run, if any."""
    seqs = sorted(bridged.seqs)
    if not seqs:
        return "none"
    run_end = seqs[0]
    while run_end + 1 in bridged.seqs:
        run_end += 1
    others = [seq for seq in seqs if seq > run_end]
    text = f"{seqs[0]}..{run_end}"
    if others:
        shown = ", ".join(str(seq) for seq in others[:5])
        text += f" and {len(others)} later ({shown}{', ...' if len(others) > 5 else ''})"
    return text


def bar_text(drain: Drain) -> str:
    if drain.replay_rate < UNCAPPED:
        return (
            f"not applicable at this cap: {drain.replay_rate:,.0f} records/s alone take "
            f"{drain.records / drain.replay_rate:.0f} s for {drain.records:,} records (under "
            f"60 s needs replay_records_per_s >= {drain.records / 60:,.0f})"
        )
    return "met" if drain.seconds < 60 and drain.exactly_once else "NOT met"


def report(drain: Drain, raws: list[Raw], bridged: Bridged | None, seconds: int) -> list[str]:
    rx = drain.receiver
    lines = [
        f"backlog: {seconds:,} s of one asset = {drain.records:,} records "
        f"({seconds:,} feature vectors x 49 + {seconds:,} scores); store write "
        f"{drain.store_write_s:.1f} s",
        f"ours: drained in {drain.seconds:.1f} s = {drain.records_per_s:,.0f} records/s "
        f"(replay cap {rate_text(drain)}; connected after {drain.connect_s:.1f} s); "
        f"{drain.messages} messages in {drain.ranges} ranges, {drain.bytes / 1e6:.1f} MB, "
        f"resends {drain.resends}",
        f"ours: receiver DB has {drain.db_records:,} records, {drain.db_distinct:,} distinct "
        f"seqs {drain.db_min}..{drain.db_max}; feature values equal to the store "
        f"({drain.values_as}): {drain.values_equal}; receiver: "
        f"{rx.get('records_inserted')} inserted, {rx.get('duplicates_ignored')} duplicates "
        f"ignored, rejected {rx.get('rejected')}",
        f"ours: exactly once, none missing: {drain.exactly_once}; bar < 60 s: {bar_text(drain)}",
    ]
    for raw in raws:
        lines.append(
            f"raw mosquitto, {raw.clients}, {raw.mode}: {raw.messages:,} messages, "
            f"{raw.bytes / 1e6:.1f} MB in {raw.seconds:.1f} s = {raw.records_per_s:,.0f} "
            f"records/s, {raw.mb_per_s:.1f} MB/s"
        )
    for clients, ratio in ratios(raws):
        lines.append(f"raw mosquitto, {clients}: batched / one-record = {ratio:.1f}x")
    if bridged is not None:
        lines.append(
            f"bridge (defaults): {bridged.sent:,} one-record messages PUBACKed by the local "
            f"broker in {bridged.publish_s:.1f} s while the link was down; "
            f"{bridged.arrived:,} arrived (seqs {arrived_seqs(bridged)}), lost "
            f"{bridged.lost:,} = {bridged.lost / bridged.sent:.1%}; first arrival "
            f"{fmt_s(bridged.reconnect_s)} after the link came back, last "
            f"{fmt_s(bridged.delivery_s)} after that; 'dropped' lines in the local log: "
            f"{bridged.dropped_log_lines}"
        )
        lines.append(
            f"records delivered, ours / bridge: {drain.db_distinct:,} / {bridged.arrived:,}"
        )
    return lines


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def rate_text(drain: Drain) -> str:
    if drain.replay_rate >= UNCAPPED:
        return "lifted (replay_records_per_s 1e9)"
    return f"{drain.replay_rate:,.0f} records/s"


def wire_section(command: str, formats: list[WireBytes], seconds: int) -> list[str]:
    day = 86_400 / seconds
    json_bytes = next(w for w in formats if w.fmt == "json").bytes
    return [
        f"\n## Uplink backlog bytes per wire format ({datetime.now(UTC):%Y-%m-%d})\n",
        f"Command: `{command}`\n",
        f"{seconds:,} s of one asset ({formats[0].records:,} records: a 49-feature vector and "
        "its score per second) cut as the Uplink cuts a backlog (500 records and 256 KiB per "
        "range, one part per kind); payload bytes (topics and MQTT headers not counted).\n",
        "| wire format | messages | MB | bytes/record | a day's backlog, MB | / JSON |",
        "|---|---|---|---|---|---|",
        *(f"| {w.fmt} | {w.messages:,} | {w.bytes / 1e6:.1f} | {w.per_record:.0f} | "
          f"{w.bytes * day / 1e6:.1f} | {w.bytes / json_bytes:.3f} |" for w in formats),
        "",
    ]  # fmt: skip


def results_section(
    command: str, drain: Drain, raws: list[Raw], bridged: Bridged | None, seconds: int
) -> str:
    rx = drain.receiver
    out = [
        f"\n## Uplink backlog drain ({datetime.now(UTC):%Y-%m-%d})\n",
        f"Command: `{command}`\n",
        f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, mosquitto {mosquitto_version()}. Broker as "
        "receiver/mosquitto/mosquitto.conf deploys it (TLS, passwords, the shipped ACL, "
        "persistence, no queue count limit); the gateway's Uplink runs in the bench process; "
        "`appliance-receiver` is a subprocess writing SQLite (WAL, synchronous=FULL). All on "
        f"loopback, sharing the CPUs (load average {os.getloadavg()[0]:.2f} at the end; the "
        "machine is shared with other jobs).\n",
        f"Backlog: {seconds:,} s of one asset: {seconds:,} feature vectors of the demo's 49 "
        f"features + {seconds:,} scores = **{drain.records:,} records** in the gateway store "
        f"(written in {drain.store_write_s:.1f} s, untimed below). Uplink: default settings (500 "
        f"records and 256 KiB per range, 32 in flight, ack = receiver), replay cap "
        f"{rate_text(drain)}. Timed from starting the Uplink until the store holds the "
        "receiver's ack of the last seq.\n",
        "| path | records sent | in the cloud | lost | time |",
        "|---|---|---|---|---|",
        f"| **ours**: store -> Uplink -> mosquitto -> receiver -> SQLite | {drain.records:,} | "
        f"{drain.db_distinct:,} | {drain.records - drain.db_distinct} | **{drain.seconds:.1f} s** "
        f"({drain.records_per_s:,.0f} records/s) |",
    ]
    if bridged is not None:
        total = (bridged.reconnect_s or 0) + (bridged.delivery_s or 0)
        out.append(
            f"| mosquitto bridge, default settings, one record per QoS 1 message | "
            f"{bridged.sent:,} | {bridged.arrived:,} | **{bridged.lost:,} "
            f"({bridged.lost / bridged.sent:.1%})** | {total:.1f} s after the link came back |"
        )
    out += [
        "",
        f"Ours: {drain.messages} messages ({drain.ranges} ranges), {drain.bytes / 1e6:.1f} MB "
        f"of payload; connected {drain.connect_s:.1f} s after start, then up to 2 s "
        f"(first_ack_wait_s) waiting for a retained ack this new gateway does not have. "
        f"Receiver database: {drain.db_records:,} rows, {drain.db_distinct:,} distinct seqs "
        f"{drain.db_min}..{drain.db_max}, every feature value equal to the gateway store "
        f"({drain.values_as}): {drain.values_equal}; {rx.get('duplicates_ignored')} "
        f"duplicates ignored, {drain.resends} resends. Exactly once, none missing: "
        f"**{drain.exactly_once}**. "
        f"Bar (< 60 s): **{bar_text(drain)}**.\n",
    ]
    if raws:
        out += [
            "Raw mosquitto throughput, same broker config and records: an aiomqtt publisher "
            f"(gateway user, QoS 1, {WINDOW} in flight) -> an aiomqtt subscriber in the bench "
            "process, no database; a Python client's per-message cost is part of the figure, "
            "as it is for a Python gateway:\n",
            "| clients | messages | count | MB | time | records/s | MB/s |",
            "|---|---|---|---|---|---|---|",
        ]
        out += [
            f"| {raw.clients} | {raw.mode} | {raw.messages:,} | {raw.bytes / 1e6:.1f} | "
            f"{raw.seconds:.1f} s | {raw.records_per_s:,.0f} | {raw.mb_per_s:.1f} |"
            for raw in raws
        ]
        out.append("")
        out += [
            f"Batched / one-record, {clients}: **{ratio:.1f}x** records/s."
            for clients, ratio in ratios(raws)
        ]
        out.append("")
    if bridged is not None:
        out.append(
            "Bridge: the local broker runs mosquitto's defaults plus the bridge's address, "
            "credentials, CA and `topic appliance/# out 1` (so max_queued_messages 1000, no "
            "persistence, restart_timeout 5..30 s with jitter); the remote is the deployed "
            "broker, whose ACL also allows `$SYS/broker/connection/%c/state` (a default bridge "
            "publishes its state there, and mosquitto 2.0 drops a client whose publish is "
            "denied). The link was up (a probe went through), then the remote stopped; the "
            f"naive gateway's {bridged.sent:,} publishes were all PUBACKed by the local broker "
            f"in {bridged.publish_s:.1f} s. After the remote came back the first message "
            f"arrived {fmt_s(bridged.reconnect_s)} later (bridge reconnect backoff), the last "
            f"{fmt_s(bridged.delivery_s)} after that. The subscriber (persistent session, no "
            f"queue limit on the remote) got seqs {arrived_seqs(bridged)}: the local broker "
            "kept the first 1000 queued messages and dropped the rest, which the gateway "
            "believed delivered.\n"
        )
    return "\n".join(out)


def mosquitto_version() -> str:

    from broker import MOSQUITTO

    out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout
    first = out.splitlines()[0] if out else ""
    return first.split()[-1] if first else "?"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=86_400, help="backlog length (1 vector/s)")
    parser.add_argument("--replay-rate", type=float, default=0.0,
                        help=f"Uplink replay_records_per_s; 0 = uncapped (shipped default "
                        f"{SHIPPED_REPLAY_RATE:g})")  # fmt: skip
    parser.add_argument("--skip-baselines", action="store_true", help="only our drain")
    parser.add_argument("--skip-bridge", action="store_true", help="no bridge baseline")
    parser.add_argument("--bridge-quiet-s", type=float, default=10.0,
                        help="the bridge is done when nothing arrived for this long")  # fmt: skip
    parser.add_argument("--formats-only", action="store_true",
                        help="only the bytes per wire format (no broker, no drain)")  # fmt: skip
    parser.add_argument("--append-results", type=Path, help="append a markdown section here")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("mqtt").setLevel(logging.ERROR)

    replay_rate = args.replay_rate if args.replay_rate > 0 else UNCAPPED
    records = demo_records(args.seconds)
    command = shlex.join([".venv/bin/python", "bench/bench_backlog.py", *sys.argv[1:]])
    formats = wire_bytes(records)
    print(*wire_lines(formats, args.seconds), sep="\n", flush=True)
    if args.append_results is not None:
        with args.append_results.open("a", encoding="utf-8") as results:
            results.write("\n".join(wire_section(command, formats, args.seconds)))
    if args.formats_only:
        return
    work = Path(tempfile.mkdtemp(prefix="bench-backlog-"))
    tls: TlsFiles = new_tls(work)
    raws: list[Raw] = []
    bridged = None
    try:
        with deployed_broker(tls) as broker:
            drain = await drain_backlog(records, broker, work, replay_rate)
            print(*report(drain, [], None, args.seconds), sep="\n", flush=True)
        if not args.skip_baselines:
            singles = one_record_messages(records)
            parts = batched_messages(records, UplinkSettings(GATEWAY, BrokerAddress(True, "x", 1)))
            for mode, messages in (("one record per message", singles),
                                   ("our batched parts", parts)):  # fmt: skip
                with deployed_broker(tls) as broker:  # a fresh broker for each measurement
                    raws.append(await raw_throughput(mode, messages, len(records), broker))
            for raw in raws:
                print(f"raw {raw.mode}: {raw.records_per_s:,.0f} records/s", flush=True)
            if not args.skip_bridge:
                with bridge_remote(tls) as remote:
                    bridged = await through_bridge(singles, remote, args.bridge_quiet_s)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("---")
    print(*report(drain, raws, bridged, args.seconds), sep="\n")
    if args.append_results is not None:
        with args.append_results.open("a", encoding="utf-8") as results:
            results.write(results_section(command, drain, raws, bridged, args.seconds))


if __name__ == "__main__":
    asyncio.run(main())
