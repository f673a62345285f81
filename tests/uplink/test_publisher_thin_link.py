"""The publisher on a bad link (issue 15, item 4): a throttling proxy (tests/link_proxy.py)
between the gateway and a real mosquitto, with the fake receiver acking per PROTOCOL.md.

Each test waits on events (what the receiver got, the uplink's status), never on a clock: the
figures (stall lengths, latencies) are in bench/bench_thin_link.py.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from broker import Broker
from link_proxy import LinkProxy
from uplink_helpers import (
    T0,
    FakeReceiver,
    mixed_records,
    running,
    settings_for,
    wait_for_value,
    wait_until,
)

from appliance.config import BrokerAddress
from appliance.records import Alert, FeatureVector
from appliance.store import Store, StoreSettings
from appliance.uplink.publisher import Uplink
from appliance.uplink.settings import UplinkSettings

WIDE = tuple(f"f{i:03d}" for i in range(100))
"""100 features: about 2 KB of JSON per vector (the tests on a thin link send JSON)."""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(StoreSettings(tmp_path / "gateway.db")) as opened:
        yield opened


def through(proxy: LinkProxy, broker: Broker, **overrides: Any) -> UplinkSettings:
    settings = settings_for(broker, **overrides)
    address = BrokerAddress(settings.broker.tls, settings.broker.host, proxy.port)
    return replace(settings, broker=address)


def wide_vectors(count: int, start: int = 0, names: tuple[str, ...] = WIDE) -> list[FeatureVector]:
    rng = np.random.default_rng(start)
    return [
        FeatureVector("pump-1", T0 + i, names, rng.normal(size=len(names)))
        for i in range(start, start + count)
    ]


async def test_a_thin_link_with_a_long_queue_is_not_a_stall(broker: Broker, store: Store) -> None:
    """120 KB of backlog through 8 KB/s takes three stall timeouts to carry: the connection
    stays up, because only time without any PUBACK counts, not time spent queued."""
    await store.recorder.add_records(wide_vectors(60))
    receiver = FakeReceiver(broker)
    async with LinkProxy(broker.port, rate_bps=8_000) as proxy:
        uplink = Uplink(
            through(
                proxy,
                broker,
                stall_timeout_s=5.0,
                ack_timeout_s=60.0,  # the receiver's ack may take a while on this link
                max_records_per_message=500,
                wire_format="json",  # the sizes above
            ),
            store.delivery,
        )
        async with running(receiver.run()), running(uplink.run()):
            await wait_for_value(store.delivery.acked_seq, 60, "the backlog delivered")

    assert uplink.status.connections == 1 and uplink.status.last_error is None
    assert proxy.bytes_up > 60 * 1500, "the records went through the throttle"
    assert sorted(receiver.records) == list(range(1, 61)) and receiver.duplicates == 0


async def test_a_half_open_link_is_given_up_and_the_next_connection_delivers(
    broker: Broker, store: Store
) -> None:
    receiver = FakeReceiver(broker)
    async with LinkProxy(broker.port) as proxy:
        uplink = Uplink(through(proxy, broker, stall_timeout_s=1.0), store.delivery)
        async with running(receiver.run()), running(uplink.run()):
            await store.recorder.add_records(mixed_records(10))
            await wait_for_value(store.delivery.acked_seq, 10, "delivery before the link dies")
            proxy.freeze()  # no byte either way, no FIN
            await store.recorder.add_records(mixed_records(10, start=10))
            await wait_until(lambda: not uplink.status.connected, "the stall to be noticed")
            reason = uplink.status.last_error
            proxy.revive()
            await wait_for_value(store.delivery.acked_seq, 20, "delivery after the link is back")

    assert reason is not None and "no PUBACK for" in reason and "in flight" in reason
    assert uplink.status.connections >= 2
    assert sorted(receiver.records) == list(range(1, 21)) and receiver.duplicates == 0


async def test_a_silent_half_open_link_is_given_up_by_the_keepalive(
    broker: Broker, store: Store
) -> None:
    """Nothing to send, so nothing in flight: the MQTT keepalive notices it."""
    receiver = FakeReceiver(broker)
    async with LinkProxy(broker.port) as proxy:
        uplink = Uplink(through(proxy, broker, keepalive_s=1), store.delivery)
        async with running(receiver.run()), running(uplink.run()):
            await wait_until(lambda: uplink.status.connected, "the first connection")
            proxy.freeze()
            await wait_until(lambda: not uplink.status.connected, "the keepalive to give up")
            proxy.revive()
            await store.recorder.add_records(mixed_records(5))
            await wait_for_value(store.delivery.acked_seq, 5, "delivery on the next connection")

    assert uplink.status.connections >= 2


class Ceilings(random.Random):
    """Records the backoff's ceiling at each reconnect (the delay is drawn below it)."""

    def __init__(self) -> None:
        super().__init__(0)
        self.ceilings: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        self.ceilings.append(b)
        return b


async def test_the_backoff_resets_after_a_short_connection_that_delivered(
    broker: Broker, store: Store
) -> None:
    rng = Ceilings()
    receiver = FakeReceiver(broker)
    settings_kw: dict[str, Any] = {
        "backoff_initial_s": 0.1,
        "backoff_max_s": 60.0,
        "stable_after_s": 3600.0,  # only delivering data may reset it
    }
    async with LinkProxy(broker.port) as proxy:
        uplink = Uplink(through(proxy, broker, **settings_kw), store.delivery, rng=rng)
        async with running(receiver.run()), running(uplink.run()):
            for round_ in range(1, 5):
                await store.recorder.add_records(mixed_records(3, start=3 * round_))
                await wait_for_value(store.delivery.acked_seq, 3 * round_, "delivery")
                proxy.drop()
                await wait_until(lambda: len(rng.ceilings) == round_, "the reconnect")  # noqa: B023
            proxy.refusing = True  # connections that never deliver
            proxy.drop()
            await wait_until(lambda: len(rng.ceilings) >= 7, "failed connections")

    assert rng.ceilings[:4] == [0.1] * 4, "each short connection delivered: back to the start"
    assert rng.ceilings[4:7] == [0.2, 0.4, 0.8], "connections that delivered nothing back off"


async def test_a_reconnect_resends_only_the_parts_the_broker_did_not_take(
    broker: Broker, store: Store
) -> None:
    """The receiver holds its ack: every range is taken by the broker but none acknowledged.
    After the link drops, the next connection sends none of those parts again."""
    await store.recorder.add_records(mixed_records(40))
    receiver = FakeReceiver(broker, hold_at=0)
    async with LinkProxy(broker.port) as proxy:
        uplink = Uplink(through(proxy, broker, ack_timeout_s=3600.0), store.delivery)
        async with running(receiver.run()), running(uplink.run()):
            await wait_until(lambda: receiver.chain_end == 40, "every range at the receiver")
            await wait_until(lambda: uplink.status.published_records == 40, "every PUBACK")
            parts_before = len(receiver.received)
            proxy.drop()
            await wait_until(lambda: uplink.status.connections == 2, "the next connection")
            await store.recorder.add_records(mixed_records(4, start=40))
            await wait_until(lambda: receiver.chain_end == 44, "the new records")
            await receiver.release()
            await wait_for_value(store.delivery.acked_seq, 44, "everything acknowledged")

    again = [p for p in receiver.received[parts_before:] if p.hi <= 40]
    assert again == [], "no part taken before the drop was sent again"
    assert sorted(receiver.records) == list(range(1, 45)) and receiver.duplicates == 0


async def test_a_live_alert_overtakes_the_backlog_on_a_thin_link(
    broker: Broker, store: Store
) -> None:
    await store.recorder.add_records(wide_vectors(150))  # about 225 KB: a minute at 4 KB/s
    receiver = FakeReceiver(broker)
    async with LinkProxy(broker.port, rate_bps=4_000) as proxy:
        settings = through(
            proxy, broker, ack_timeout_s=60.0, max_records_per_message=500, wire_format="json"
        )
        uplink = Uplink(settings, store.delivery)
        async with running(receiver.run()), running(uplink.run()):
            await wait_until(lambda: len(receiver.records) >= 5, "the backlog to be under way")
            (alert_seq,) = await store.recorder.add_records(
                [Alert("pump-1", T0 + 500, "critical", "anomaly_raised", "pump-1 vibrates")]
            )
            await wait_until(lambda: alert_seq in receiver.records, "the alert")
            backlog_then = len(receiver.records) - 1

    assert backlog_then < 150 // 2, "the alert did not wait for the backlog"


async def test_live_records_are_gathered_into_one_range_and_an_alert_sends_them_at_once(
    broker: Broker, store: Store
) -> None:
    receiver = FakeReceiver(broker)
    stored = asyncio.Event()
    uplink = Uplink(settings_for(broker, live_batch_s=3600.0), store.delivery, new_data=stored)
    async with running(receiver.run()), running(uplink.run()):
        await wait_until(lambda: uplink.status.connected, "the connection")
        for i in range(6):
            await store.recorder.add_records(wide_vectors(1, start=i, names=("rms", "peak")))
            stored.set()
        await store.recorder.add_records([Alert("pump-1", T0 + 9, "warning", "spike_raised", "x")])
        stored.set()
        await wait_for_value(store.delivery.acked_seq, 7, "the batch delivered")

    assert receiver.ranges() == [(0, 7)], "six vectors and the alert in one range"
    assert [p.kind for p in receiver.received] == ["alerts", "features"], "the alert first"
