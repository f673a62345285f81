"""Helpers for the publisher tests: a fake receiver, records, settings, waiting with deadlines.

The fake receiver applies the acknowledgement rule of appliance/uplink/PROTOCOL.md (a range is
complete when every part of one split arrived; ack = the highest N such that complete ranges
cover (0, N] without a hole) over a plain aiomqtt client, keeping everything in memory, so the
publisher is tested against the protocol and not against the real receiver's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

import aiomqtt
import msgpack
import numpy as np
import waiting
from broker import Broker
from waiting import cancel_and_wait

from appliance.config import BrokerAddress
from appliance.records import Alert, FeatureVector, Score
from appliance.store import StoredRecord
from appliance.uplink.schema import (
    Part,
    SchemaBook,
    SeqRecord,
    UnknownSchemas,
    decode_part,
    encode_ack,
)
from appliance.uplink.settings import UplinkSettings

GATEWAY = "gw-a"
PREFIX = "appliance"
DEADLINE_S = 60.0
T0 = 1_767_225_600.0


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """tests/waiting.py's wait_until with the uplink tests' deadline."""
    await waiting.wait_until(condition, what, DEADLINE_S)


async def wait_for_value(
    read: Callable[[], Coroutine[Any, Any, Any]], wanted: Any, what: str
) -> None:
    """Poll an async reading until it equals `wanted`."""
    deadline = time.monotonic() + DEADLINE_S
    while (value := await read()) != wanted:
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last: {value!r})"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(coroutine: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run a forever-task for the duration of the block; cancel it and surface its errors."""
    task = asyncio.create_task(coroutine)
    try:
        yield task
    finally:
        await cancel_and_wait(task)


def settings_for(broker: Broker, **overrides: Any) -> UplinkSettings:
    """Settings for gateway gw-a on `broker`, with the delays shrunk for tests."""
    settings = UplinkSettings(
        gateway=GATEWAY,
        broker=BrokerAddress(broker.tls is not None, broker.host, broker.port),
        username=GATEWAY,
        password=broker.credentials[GATEWAY].password,
        ca_file=broker.ca_path,
        prefix=PREFIX,
        max_records_per_message=8,
        first_ack_wait_s=0.5,
        backoff_initial_s=0.05,
        backoff_max_s=0.4,
        stable_after_s=1.0,
        poll_s=0.2,
        status_every_s=0.05,
        ack_timeout_s=2.0,
        ack_timeout_max_s=4.0,
        connect_timeout_s=5.0,
        stall_timeout_s=10.0,
        live_batch_s=0.0,
    )
    return replace(settings, **overrides)


def mixed_records(count: int, start: int = 0) -> list[StoredRecord]:
    """Features, scores and alerts of two assets interleaved (so ranges have several parts)."""
    records: list[StoredRecord] = []
    for i in range(start, start + count):
        asset = ("pump-1", "compressor-2")[i % 2]
        t = T0 + i
        if i % 3 == 0:
            values = np.array([0.1 * i, float("nan") if i % 9 == 0 else 2.0 * i])
            records.append(FeatureVector(asset, t, ("accel_x.rms", "accel_x.peak"), values))
        elif i % 5 == 4:
            records.append(Alert(asset, t, "warning", "anomaly_raised", f"{asset} drifts at {i}"))
        else:
            records.append(Score(asset, t, "ae-v1@sha256:00", 0.5, 2.0, i % 7 == 0, ("rms",)))
    return records


def same_record(a: StoredRecord, b: StoredRecord) -> bool:
    if isinstance(a, FeatureVector) and isinstance(b, FeatureVector):
        # float32: what the binary wire format carries (PROTOCOL.md, "Wire formats")
        return (a.asset, a.window_end, a.names) == (b.asset, b.window_end, b.names) and bool(
            np.array_equal(
                np.asarray(a.values, np.float32), np.asarray(b.values, np.float32), equal_nan=True
            )
        )
    return a == b


@dataclass
class ReceivedPart:
    lo: int
    hi: int
    part: int
    parts: int
    kind: str
    asset: str
    seqs: list[int]


def schema_by_reference(payload: bytes) -> bool:
    """A binary features or summary part naming a schema by its reference (layout 2)."""
    if payload[:1] != b"\xb2":
        return False
    packed = zlib.decompress(payload[2:]) if payload[1] == 1 else payload[2:]
    return any(type(item) is bytes for item in msgpack.unpackb(packed).get("schemas", []))


@dataclass
class FakeReceiver:
    """Subscribes as user "receiver" to every data topic and acks per PROTOCOL.md.

    `hold_at`: acknowledge no further than this seq (None: as far as the chain goes).
    `acking`: False to receive without ever acknowledging. Feature schemas sent by reference
    are resolved from `schemas` (replace it to play a receiver with a new database): a part
    naming one not there is refused unaccounted and its names asked for, as the receiver does.
    """

    broker: Broker
    gateway: str = GATEWAY
    hold_at: int | None = None
    acking: bool = True
    client_id: str = "fake-receiver"
    received: list[ReceivedPart] = field(default_factory=list)
    records: dict[int, StoredRecord] = field(default_factory=dict)
    duplicates: int = 0
    acked: int = 0
    schemas: SchemaBook = field(default_factory=SchemaBook)
    by_reference: int = 0
    """Features and summary parts that named a schema by reference."""
    schema_requests: int = 0
    summaries: list[Part] = field(default_factory=list)
    """Summary parts (the summary profile), as received."""
    _splits: dict[tuple[int, int, int], set[int]] = field(default_factory=dict)
    _complete: set[tuple[int, int]] = field(default_factory=set)
    _client: aiomqtt.Client | None = None

    @property
    def chain_end(self) -> int:
        end = 0
        moved = True
        while moved:
            moved = False
            for lo, hi in self._complete:
                if lo <= end < hi:
                    end, moved = hi, True
        return end

    def summarised(self) -> set[int]:
        """Seqs accounted only by the summary part of a complete range: neither received in
        full nor absent on the gateway (PROTOCOL.md, "Uplink profiles")."""
        seqs: set[int] = set()
        for part in self.summaries:
            assert part.summary is not None
            if len(self._splits.get((part.lo, part.hi, part.parts), ())) == part.parts:
                absent = {s for first, last in part.summary.absent for s in range(first, last + 1)}
                seqs |= set(range(part.lo + 1, part.hi + 1)) - absent
        return seqs - self.records.keys()

    def ranges(self) -> list[tuple[int, int]]:
        """Distinct ranges in the order their first part arrived."""
        return list(dict.fromkeys((p.lo, p.hi) for p in self.received))

    async def run(self) -> None:
        """Stay connected (a persistent session), reconnecting while the broker is away."""
        while True:
            try:
                async with aiomqtt.Client(
                    **self.broker.client_args(
                        "receiver", identifier=self.client_id, clean_session=False
                    )
                ) as client:
                    self._client = client
                    await client.subscribe(f"{PREFIX}/+/+/+", qos=1)
                    async for message in client.messages:
                        await self._take(bytes(message.payload), str(message.topic))
            except aiomqtt.MqttError:
                self._client = None
                await asyncio.sleep(0.05)

    async def _take(self, payload: bytes, topic: str) -> None:
        try:
            part = decode_part(payload, topic, schemas=self.schemas)
        except UnknownSchemas as exc:
            self.schema_requests += 1
            if self._client is not None:
                request = encode_ack(self.gateway, self.acked, exc.refs)
                await self._client.publish(f"{PREFIX}/{self.gateway}/ack", request, qos=1)
            return
        self.by_reference += part.kind in ("features", "summary") and schema_by_reference(payload)
        self.received.append(
            ReceivedPart(
                part.lo, part.hi, part.part, part.parts, part.kind, part.asset,
                [seq for seq, _ in part.records],
            )
        )  # fmt: skip
        self._store_records(part.records)
        if part.summary is not None:
            self.summaries.append(part)
            for nested in part.summary.promoted:
                self._store_records(nested.records)
        split = self._splits.setdefault((part.lo, part.hi, part.parts), set())
        split.add(part.part)
        if len(split) == part.parts:
            self._complete.add((part.lo, part.hi))
        await self._acknowledge(resend=part.hi <= self.acked)

    def _store_records(self, records: list[SeqRecord]) -> None:
        for seq, record in records:
            if seq in self.records:
                self.duplicates += 1
            else:
                self.records[seq] = record

    async def _acknowledge(self, *, resend: bool = False) -> None:
        if not self.acking or self._client is None:
            return
        end = self.chain_end if self.hold_at is None else min(self.chain_end, self.hold_at)
        if end > self.acked or (resend and end > 0):
            self.acked = max(end, self.acked)
            await self._client.publish(
                f"{PREFIX}/{self.gateway}/ack", encode_ack(self.gateway, self.acked), qos=1,
                retain=True,
            )  # fmt: skip

    async def release(self, hold_at: int | None = None) -> None:
        """Move the hold (None: no hold) and acknowledge as far as allowed now."""
        self.hold_at = hold_at
        await self._acknowledge()


async def publish_retained_ack(broker: Broker, seq: int, gateway: str = GATEWAY) -> None:
    """What a receiver left behind: a retained ack for `gateway`."""
    async with aiomqtt.Client(**broker.client_args("receiver")) as client:
        await client.publish(
            f"{PREFIX}/{gateway}/ack", encode_ack(gateway, seq), qos=1, retain=True
        )


async def read_retained(broker: Broker, topic: str, username: str = "receiver") -> bytes:
    """The retained message on `topic` (waits for it to arrive after subscribing)."""
    async with aiomqtt.Client(**broker.client_args(username)) as client:
        await client.subscribe(topic, qos=1)
        async for message in client.messages:
            return bytes(message.payload)
    raise AssertionError("unreachable")
