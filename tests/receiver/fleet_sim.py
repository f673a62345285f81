"""A fleet of simulated gateways in one asyncio process (issue 16, item 4), for the smoke test
(tests/receiver/test_fleet_sim.py) and the scale bench (bench/bench_fleet_scale.py).

Each gateway speaks the uplink protocol as the appliance does (appliance/uplink/PROTOCOL.md),
with the gateway's own code for the bytes: `encode_range` (split_range + encode_part, binary by
default) for its ranges, encode_status for its retained status and last will, decode_ack for the
receiver's retained ack. It is one aiomqtt client (the gateway's library) with a persistent
session under its own username, and it keeps the gateway's rules that make "0 missing" a real
check:

- its outbox holds every record until an ack covers it; records are made at `records_per_s`
  whether the link is up or not, and cut into live ranges every `live_batch_s` (at most
  `max_records` a range: a backlog is many ranges);
- the ranges sent and not acknowledged are remembered with their bytes; after a reconnect the
  gateway sends the gap (0, A] once, then every remembered range again with the same bounds, then
  what it made while offline (the backlog);
- a range unacknowledged for `ack_timeout_s` is sent again (the timeout doubles up to
  `ack_timeout_max_s`, and is reset by an ack that moves); an ack equal to the acked seq after a
  resend in vain sends everything again at once, and so does, once per connection, a
  receiver's announcement (it has just subscribed) after the connection sent something;
- reconnects back off as the gateway does (appliance.net.backoff: doubling with jitter), so a
  fleet that lost its broker comes back spread out, not in step.

Records alternate a feature vector (the demo's 49 features, float32 on the wire) and a score;
their `t` is the wall-clock time they were made, so the database's rows say how old each record
was when it was committed. An "intermittent link" is a socket shut down under the client (no
DISCONNECT: the broker publishes the last will), kept down for a drawn time.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import random
import socket
import ssl
import time
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiomqtt
import numpy as np

from appliance.net.backoff import Backoff
from appliance.records import FeatureVector, Score
from appliance.store import OutboxRange
from appliance.uplink.ranges import encode_range
from appliance.uplink.schema import (
    OFFLINE,
    ONLINE,
    SchemaError,
    WireFormat,
    ack_topic,
    decode_ack,
    encode_part,
    encode_status,
    split_range,
    status_topic,
)
from receiver.db import Database

ASSET = "pump-1"
MODEL_ID = "sim-1"
NAMES = tuple(f"f{index:02d}" for index in range(49))
VECTOR_POOL = 64
STOP_GRACE_S = 5.0
"""After `stop`, gateways still waiting on a PUBACK or a DISCONNECT are cancelled."""
"""Distinct value vectors (drawn once); record seq uses vector seq % VECTOR_POOL."""


@dataclass(frozen=True)
class FleetSettings:
    host: str
    port: int
    passwords: dict[str, str]
    """Gateway name -> its broker password (the username is the name)."""
    tls: ssl.SSLContext | None = None
    prefix: str = "appliance"
    records_per_s: float = 1.0
    live_batch_s: float = 5.0
    max_records: int = 500
    ack_timeout_s: float = 120.0
    ack_timeout_max_s: float = 3600.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    keepalive_s: int = 10
    stall_timeout_s: float = 20.0
    wire_format: WireFormat = "binary"
    max_in_flight: int = 32
    seed: int = 0
    """The defaults are the gateway's ([uplink] in appliance/config, UplinkSettings)."""


@dataclass
class SentRange:
    lo: int
    hi: int
    records: int
    messages: list[tuple[str, bytes]]
    sent_at: float


@dataclass
class FleetCounters:
    """What the whole fleet did (summed over gateways)."""

    made: int = 0
    connects: int = 0
    connect_failures: int = 0
    link_drops: int = 0
    messages_sent: int = 0
    ranges_sent: int = 0
    resends: int = 0
    """Timed resends and resends after an ack repeated in vain..."""
    announced_resends: int = 0
    """...and resends after a receiver's announcement."""
    stuck_at_stop: int = 0
    """Tasks still running STOP_GRACE_S after they were cancelled at the stop (left behind)."""
    acked_at: array[float] = field(default_factory=lambda: array("d"))
    """For every record an ack covered: when the ack came (in arrival order)..."""
    ack_lag_s: array[float] = field(default_factory=lambda: array("d"))
    """...that time minus the record's t..."""
    sent_ack_lag_s: array[float] = field(default_factory=lambda: array("d"))
    """...and minus when its range was first sent (without the gateway's batching wait)."""


class SimGateway:
    """One gateway: its outbox, its remembered ranges, its connection."""

    def __init__(self, name: str, settings: FleetSettings, fleet: Fleet) -> None:
        self.name = name
        self.settings = settings
        self.fleet = fleet
        self.last_seq = 0
        self.acked = 0
        self.cut_to = 0
        """The highest seq put into a range."""
        self.outbox: deque[tuple[int, float]] = deque()
        """(seq, t) of every record not yet acknowledged."""
        self.ranges: dict[int, SentRange] = {}
        self.cut_his: array[int] = array("q")
        self.cut_times: array[float] = array("d")
        """Every range's hi and when it was cut and first sent (a seq's range never changes)."""
        self.ack_timeout_s = settings.ack_timeout_s
        self.resent_in_vain = False
        self.client: aiomqtt.Client | None = None
        self.sent_on_connection = False
        self.resent_on_announcement = False
        self.link_up = asyncio.Event()
        self.link_up.set()
        self.dropped_at: list[float] = []
        rng = random.Random(f"{settings.seed}-{name}")
        self.backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s, rng)
        self.phase = rng.uniform(0, max(settings.live_batch_s, 0.001))

    # --- records --------------------------------------------------------------------------

    def make_record(self, now: float) -> None:
        self.last_seq += 1
        self.outbox.append((self.last_seq, now))
        self.fleet.counters.made += 1

    def record(self, seq: int, t: float) -> FeatureVector | Score:
        if seq % 2:
            return FeatureVector(ASSET, t, NAMES, self.fleet.vectors[seq % VECTOR_POOL])
        return Score(ASSET, t, MODEL_ID, 0.5 + (seq % 7) / 10, 2.25, False, ())

    def cut_ranges(self, now: float) -> list[SentRange]:
        """The records made since the last cut, as ranges of at most max_records."""
        rows = [(seq, t) for seq, t in self.outbox if seq > self.cut_to]
        cut = []
        for start in range(0, len(rows), self.settings.max_records):
            chunk = rows[start : start + self.settings.max_records]
            records = [(seq, self.record(seq, t)) for seq, t in chunk]
            found = OutboxRange(self.cut_to, chunk[-1][0], records)
            prepared = encode_range(found, self.name, self.settings.prefix, 1 << 20,
                                    self.settings.wire_format)  # fmt: skip
            entry = SentRange(prepared.lo, prepared.hi, prepared.records, prepared.messages, now)
            self.ranges[entry.lo] = entry
            self.cut_to = entry.hi
            self.cut_his.append(entry.hi)
            self.cut_times.append(now)
            cut.append(entry)
        return cut

    # --- acks -----------------------------------------------------------------------------

    def on_ack(self, seq: int, now: float) -> list[SentRange]:
        """Take an ack; the ranges to send again at once (a resend in vain answered by the same
        ack: a receiver came back without what was sent while none was there)."""
        if seq <= self.acked:
            if seq == self.acked and self.resent_in_vain and self.ranges:
                self.resent_in_vain = False
                self.resent_on_announcement = True  # its announcement follows: one resend
                return self.resend_all(now)
            return []
        self.acked = seq
        self.ack_timeout_s = self.settings.ack_timeout_s
        self.resent_in_vain = False
        counters = self.fleet.counters
        while self.outbox and self.outbox[0][0] <= seq:
            seq_done, t = self.outbox.popleft()
            counters.acked_at.append(now)
            counters.ack_lag_s.append(now - t)
            counters.sent_ack_lag_s.append(now - self.first_sent(seq_done))
        for lo in [lo for lo, entry in self.ranges.items() if entry.hi <= seq]:
            del self.ranges[lo]
        self.cut_to = max(self.cut_to, seq)
        return []

    def on_announcement(self, now: float) -> list[SentRange]:
        """A receiver has just subscribed: what this connection sent before may have matched no
        subscription (mosquitto forgets shared subscriptions when it restarts); the ranges to
        send again at once, once per connection."""
        if self.resent_on_announcement or not self.sent_on_connection or not self.ranges:
            return []
        self.resent_on_announcement = True
        self.ack_timeout_s = self.settings.ack_timeout_s
        self.resent_in_vain = False
        self.fleet.counters.announced_resends += 1
        for entry in self.ranges.values():
            entry.sent_at = now
        return sorted(self.ranges.values(), key=lambda entry: entry.lo)

    def first_sent(self, seq: int) -> float:
        """When the range holding `seq` was first sent."""
        return self.cut_times[bisect.bisect_left(self.cut_his, seq)]

    def due_for_resend(self, now: float) -> bool:
        oldest = min((entry.sent_at for entry in self.ranges.values()), default=now)
        return now - oldest >= self.ack_timeout_s

    def resend_all(self, now: float) -> list[SentRange]:
        for entry in self.ranges.values():
            entry.sent_at = now
        self.fleet.counters.resends += 1
        return sorted(self.ranges.values(), key=lambda entry: entry.lo)

    # --- the connection -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.link_up.wait()
            try:
                await self.session(stop)
                return
            except (aiomqtt.MqttError, OSError, ssl.SSLError, TimeoutError):
                self.fleet.counters.connect_failures += 1
            finally:
                self.client = None
            if stop.is_set():
                return
            await asyncio.sleep(self.backoff.next_delay())

    def make_client(self) -> aiomqtt.Client:
        s = self.settings
        will = aiomqtt.Will(status_topic(s.prefix, self.name),
                            encode_status(self.name, OFFLINE), qos=1, retain=True)  # fmt: skip
        client = aiomqtt.Client(s.host, s.port, username=self.name,
                                password=s.passwords[self.name], identifier=self.name,
                                clean_session=False, will=will, keepalive=s.keepalive_s,
                                timeout=30, tls_context=s.tls,
                                max_inflight_messages=s.max_in_flight)  # fmt: skip
        client.pending_calls_threshold = s.max_in_flight + 64
        return client

    async def session(self, stop: asyncio.Event) -> None:
        """One connection until `stop` (returns) or until it fails (raises MqttError)."""
        s = self.settings
        async with self.make_client() as client:
            self.client = client
            self.sent_on_connection = self.resent_on_announcement = False
            self.fleet.counters.connects += 1
            self.backoff.reset()
            await client.subscribe(ack_topic(s.prefix, self.name), qos=1)
            await client.publish(status_topic(s.prefix, self.name),
                                 encode_status(self.name, ONLINE, version="sim"), qos=1,
                                 retain=True)  # fmt: skip
            listener = asyncio.create_task(self.listen(client))
            sender = asyncio.create_task(self.send_loop(client, stop))
            try:
                done, _ = await asyncio.wait({listener, sender},
                                             return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            finally:
                for task in (listener, sender):
                    task.cancel()
                await asyncio.gather(listener, sender, return_exceptions=True)
            for task in done:
                task.result()

    async def listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            try:
                ack = decode_ack(bytes(message.payload), self.name)  # type: ignore[arg-type]
            except SchemaError:
                continue
            again = self.on_ack(ack.seq, time.time())
            if ack.announced and not again:
                again = self.on_announcement(time.time())
            if again:
                await self.publish(client, again)

    async def send_loop(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        now = time.time()
        if self.acked > 0:
            await self.publish_gap(client)
        await self.publish(client, sorted(self.ranges.values(), key=lambda entry: entry.lo))
        await self.publish(client, self.cut_ranges(now))
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.phase
        while not stop.is_set():
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += self.settings.live_batch_s
            now = time.time()
            if self.due_for_resend(now):
                self.ack_timeout_s = min(2 * self.ack_timeout_s, self.settings.ack_timeout_max_s)
                self.resent_in_vain = True
                await self.publish(client, self.resend_all(now))
            await self.publish(client, self.cut_ranges(now))

    async def publish_gap(self, client: aiomqtt.Client) -> None:
        (gap,) = split_range(self.name, 0, self.acked, [])
        await client.publish(gap.topic(self.settings.prefix), encode_part(gap, "binary"), qos=1)

    async def publish(self, client: aiomqtt.Client, ranges: Sequence[SentRange]) -> None:
        """Each part with QoS 1; no PUBACK within stall_timeout_s ends the connection (MqttError),
        as the gateway does."""
        s = self.settings
        for entry in ranges:
            self.sent_on_connection = True
            self.fleet.counters.ranges_sent += 1
            for topic, payload in entry.messages:
                await client.publish(topic, payload, qos=1, timeout=s.stall_timeout_s)
                self.fleet.counters.messages_sent += 1

    def drop_link(self, down_s: float) -> bool:
        """Shut the socket under the client (a link lost, not a clean stop); stay down for
        down_s. False if the gateway was not connected."""
        client = self.client
        sock = client._client.socket() if client is not None else None
        if sock is None:
            return False
        self.link_up.clear()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        asyncio.get_running_loop().call_later(down_s, self.link_up.set)
        self.dropped_at.append(time.time())
        self.fleet.counters.link_drops += 1
        return True


class Fleet:
    """N gateways: `await fleet.run(stop)` makes records and keeps every gateway connected
    until `stop` is set."""

    def __init__(self, names: Sequence[str], settings: FleetSettings) -> None:
        rng = np.random.default_rng(settings.seed)
        self.vectors = [rng.normal(1.0, 0.05, len(NAMES)) for _ in range(VECTOR_POOL)]
        self.settings = settings
        self.counters = FleetCounters()
        self.gateways = [SimGateway(name, settings, self) for name in names]
        self.producing = True

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self.produce(stop))]
        tasks += [asyncio.create_task(gateway.run(stop)) for gateway in self.gateways]
        try:
            await stop.wait()
            await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        finally:
            for task in tasks:
                task.cancel()
            # Bounded: one gateway task at N=2,500 under load 10 outlived its cancellation
            # (and its broker) and held the bench forever (cause not found; counted here).
            done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            self.counters.stuck_at_stop = len(pending)
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: the run's outcome is the database check

    async def produce(self, stop: asyncio.Event) -> None:
        """Every gateway makes records_per_s records a second (one tick for all)."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.settings.records_per_s
        next_at = loop.time()
        while not stop.is_set():
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += interval
            if not self.producing:
                continue
            now = time.time()
            for gateway in self.gateways:
                gateway.make_record(now)

    # --- views ----------------------------------------------------------------------------

    @property
    def connected(self) -> int:
        return sum(gateway.client is not None for gateway in self.gateways)

    @property
    def unacked(self) -> int:
        return sum(gateway.last_seq - gateway.acked for gateway in self.gateways)

    def all_acked(self) -> bool:
        return all(gateway.acked == gateway.last_seq for gateway in self.gateways)

    def last_seqs(self) -> dict[str, int]:
        return {gateway.name: gateway.last_seq for gateway in self.gateways}

    def ack_lags_between(self, start: float, end: float, *, from_send: bool = False) -> list[float]:
        """Record time (or, from_send, the first send of its range) -> the ack seen by its
        gateway, for acks that came in [start, end)."""
        times = self.counters.acked_at
        low, high = bisect.bisect_left(times, start), bisect.bisect_left(times, end)
        lags = self.counters.sent_ack_lag_s if from_send else self.counters.ack_lag_s
        return lags[low:high].tolist()


async def flap_links(
    fleet: Fleet,
    stop: asyncio.Event,
    share: float,
    down_s: tuple[float, float],
    every_s: float = 1.0,
    rng: random.Random | None = None,
) -> None:
    """Intermittent links: `share` of the fleet loses its link per minute (drawn at random,
    spread over the minute), each for a uniform draw from `down_s` seconds."""
    rng = rng or random.Random(fleet.settings.seed)
    per_tick = share * len(fleet.gateways) * every_s / 60.0
    carry = 0.0
    while not stop.is_set():
        await asyncio.sleep(every_s)
        carry += per_tick
        while carry >= 1.0:
            carry -= 1.0
            rng.choice(fleet.gateways).drop_link(rng.uniform(*down_s))


@dataclass(frozen=True)
class DatabaseCheck:
    """The receiver's records against what the fleet made."""

    made: int
    acked: int
    """Records at or below the receiver's acked seq per gateway: each must be stored once."""
    rows: int
    distinct: int
    missing: int
    """Seqs at or below the receiver's ack that are not stored."""
    duplicates: int
    unexpected: int
    """Seqs above a gateway's last made seq."""

    @property
    def ok(self) -> bool:
        return self.missing == self.duplicates == self.unexpected == 0

    @property
    def complete(self) -> bool:
        """Every record made is acknowledged (and, when ok, stored once)."""
        return self.ok and self.acked == self.made == self.distinct


RECORD_COUNTS = """
SELECT r.gateway, count(*) AS n, count(DISTINCT r.seq) AS n_distinct, max(r.seq) AS top,
       count(DISTINCT r.seq) FILTER (WHERE r.seq <= g.acked_seq) AS n_acked, g.acked_seq AS acked
FROM (SELECT gateway, seq FROM features UNION ALL SELECT gateway, seq FROM scores) AS r
JOIN gateways AS g ON g.gateway = r.gateway
GROUP BY r.gateway, g.acked_seq
"""


async def check_database(database: Database, last_seqs: dict[str, int]) -> DatabaseCheck:
    """Rows and distinct seqs per gateway in features and scores (PostgreSQL keys features by
    (gateway, seq, t): a seq stored twice with another t would count as a duplicate here).
    Seqs are 1..last: every seq up to the receiver's acked seq must be there."""
    found = {row["gateway"]: row for row in await database.read(RECORD_COUNTS)}
    empty = {"n": 0, "n_distinct": 0, "top": 0, "n_acked": 0, "acked": 0}
    rows = distinct = missing = unexpected = acked = 0
    for gateway, last in last_seqs.items():
        row = found.pop(gateway, empty)
        rows += int(row["n"])
        distinct += int(row["n_distinct"])
        acked += int(row["acked"])
        missing += int(row["acked"]) - int(row["n_acked"])
        unexpected += max(0, int(row["top"]) - last)
    unexpected += sum(int(row["n_distinct"]) for row in found.values())
    return DatabaseCheck(sum(last_seqs.values()), acked, rows, distinct, missing,
                         rows - distinct, unexpected)  # fmt: skip


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


def gateway_names(count: int) -> list[str]:
    return [f"sim-{index:05d}" for index in range(count)]
