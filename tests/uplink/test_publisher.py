"""The uplink publisher against a real mosquitto (TLS, passwords, the shipped ACL) and real SQLite.

A fake receiver (uplink_helpers.FakeReceiver) applies the protocol's acknowledgement rule, so the
tests check what the publisher puts on the wire and what it marks delivered in the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from broker import Broker
from structlog.testing import capture_logs
from uplink_helpers import (
    GATEWAY,
    PREFIX,
    T0,
    FakeReceiver,
    mixed_records,
    publish_retained_ack,
    read_retained,
    running,
    same_record,
    settings_for,
    wait_for_value,
    wait_until,
)

from appliance.store import Store, StoreSettings
from appliance.uplink.publisher import Uplink
from appliance.uplink.schema import decode_status

BrokerFactory = Callable[..., Broker]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(StoreSettings(tmp_path / "gateway.db")) as opened:
        yield opened


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_the_outbox_leaves_in_seq_order_as_ranges_and_the_ack_marks_it_delivered(
    broker: Broker, store: Store
) -> None:
    records = mixed_records(30)
    seqs = await store.recorder.add_records(records)
    receiver = FakeReceiver(broker)
    uplink = Uplink(settings_for(broker), store.delivery)

    async with running(receiver.run()), running(uplink.run()):
        await wait_for_value(
            store.delivery.acked_seq, 30, "the store to be acknowledged up to seq 30"
        )
        await wait_until(lambda: uplink.status.acked_seq == 30, "the status to show the ack")
        status = decode_status(await read_retained(broker, f"{PREFIX}/{GATEWAY}/status"))
        connected = uplink.status.connected

    assert seqs == list(range(1, 31))
    assert sorted(receiver.records) == seqs and receiver.duplicates == 0
    for seq, record in zip(seqs, records, strict=True):
        assert same_record(receiver.records[seq], record), seq
    for part in receiver.received:
        assert part.seqs == sorted(part.seqs) and all(part.lo < s <= part.hi for s in part.seqs)
        assert part.kind in ("features", "scores", "alerts")
    ranges = sorted(receiver.ranges())
    assert all(hi - lo <= 8 for lo, hi in ranges), "max_records_per_message caps a range"
    assert [lo for lo, _ in ranges] == [0, *(hi for _, hi in ranges[:-1])], "no hole, no overlap"
    assert ranges[-1][1] == 30
    stats = await store.delivery.outbox_stats()
    assert (stats.records, stats.acked_seq, stats.last_seq) == (0, 30, 30)
    assert len(await store.history.outbox(limit=100)) == 30, "delivered rows stay for local use"
    assert connected and uplink.status.published_records >= 30
    assert (status.gateway, status.state) == (GATEWAY, "online")
    assert status.fields["version"] and status.fields["last_seq"] == 30


async def test_exactly_what_the_receiver_acknowledges_is_marked_delivered(
    broker: Broker, store: Store
) -> None:
    await store.recorder.add_records(mixed_records(30))
    receiver = FakeReceiver(broker, hold_at=12)
    uplink = Uplink(settings_for(broker), store.delivery)

    async with running(receiver.run()), running(uplink.run()):
        await wait_until(lambda: receiver.chain_end == 30, "the receiver to have every range")
        await wait_for_value(store.delivery.acked_seq, 12, "the store to take the ack of seq 12")
        held = await store.delivery.outbox_stats()
        await receiver.release()
        await wait_for_value(store.delivery.acked_seq, 30, "the rest to be acknowledged")

    assert (held.records, held.acked_seq) == (18, 12)
    ((_, first_held),) = await store.history.outbox(after_seq=12, limit=1)
    assert held.oldest_t == T0 + 12, "dated by seq 13, the first not acknowledged"
    assert first_held.asset == "pump-1"
    assert (await store.delivery.outbox_stats()).records == 0


async def test_broker_down_at_start_then_live_records_first_and_the_backlog_after(
    make_broker: BrokerFactory, store: Store
) -> None:
    broker = make_broker()
    broker.stop()
    gate = asyncio.Event()

    async def held_pace(_: float) -> None:
        await gate.wait()

    settings = settings_for(broker, replay_records_per_s=1.0)
    uplink = Uplink(settings, store.delivery, pace=held_pace)
    receiver = FakeReceiver(broker)
    with capture_logs() as logs:
        async with running(uplink.run()):
            await wait_until(lambda: uplink.status.connect_failures >= 3, "three failed connects")
            down = uplink.status.last_error
            await store.recorder.add_records(mixed_records(24))
            await wait_until(lambda: uplink.status.backlog_records == 24, "the backlog to show")
            assert not uplink.status.connected

            broker.start()
            async with running(receiver.run()):
                # Live tail (16, 24] first, then the first backlog range; the next waits its turn.
                await wait_until(lambda: len(receiver.ranges()) >= 2, "tail and first backlog")
                # found by polling (poll_s)
                await store.recorder.add_records(mixed_records(1, start=24))
                await wait_until(lambda: 25 in receiver.records, "the live record")
                gate.set()
                await wait_for_value(store.delivery.acked_seq, 25, "everything to be acknowledged")

    assert down == f"connection refused by 127.0.0.1:{broker.port} (is the broker running?)"
    failures = [e for e in events(logs, "uplink_connect_failed") if e["reason"] == down]
    assert len(failures) == 1, "one log line per state change, not per attempt"
    assert failures[0]["log_level"] == "warning"
    ranges = receiver.ranges()
    assert ranges[0] == (16, 24), "the newest records go first"
    assert ranges[1] == (0, 8), "then the backlog, oldest first"
    assert ranges.index((24, 25)) < ranges.index((8, 16)), "live records overtake the backlog"
    assert sorted(receiver.records) == list(range(1, 26))
    assert uplink.status.connections == 1


async def test_refused_credentials_give_one_clear_line_and_lose_nothing(
    broker: Broker, store: Store
) -> None:
    await store.recorder.add_records(mixed_records(10))
    wrong = Uplink(settings_for(broker, password="not-the-password"), store.delivery)

    with capture_logs() as logs:
        async with running(wrong.run()):
            await wait_until(lambda: wrong.status.connect_failures >= 3, "three refusals")
            state = wrong.status.state

    reason = "broker refused our credentials (not authorised)"
    assert wrong.status.last_error == reason
    assert state.startswith("reconnecting in ") and state.endswith(reason)
    assert wrong.status.connections == 0
    assert [e["reason"] for e in events(logs, "uplink_connect_failed")] == [reason]
    assert (await store.delivery.outbox_stats()).records == 10
    await deliver_everything(broker, store, 10)


async def test_a_broker_certificate_from_another_ca_is_refused_clearly_and_loses_nothing(
    broker: Broker, store: Store, wrong_ca: Path
) -> None:
    await store.recorder.add_records(mixed_records(10))
    untrusting = Uplink(settings_for(broker, ca_file=wrong_ca), store.delivery)

    with capture_logs() as logs:
        async with running(untrusting.run()):
            await wait_until(lambda: untrusting.status.connect_failures >= 3, "three failures")

    reason = untrusting.status.last_error
    assert reason is not None
    assert reason.startswith("TLS: certificate verify failed for host 127.0.0.1: ")
    assert [e["reason"] for e in events(logs, "uplink_connect_failed")] == [reason]
    assert (await store.delivery.outbox_stats()).records == 10
    await deliver_everything(broker, store, 10)


async def deliver_everything(broker: Broker, store: Store, last_seq: int) -> None:
    receiver = FakeReceiver(broker)
    async with running(receiver.run()), running(Uplink(settings_for(broker), store.delivery).run()):
        await wait_for_value(store.delivery.acked_seq, last_seq, "delivery with the right settings")
    assert sorted(receiver.records) == list(range(1, last_seq + 1))


async def test_ack_by_broker_marks_a_range_delivered_once_every_part_got_its_puback(
    broker: Broker, store: Store
) -> None:
    await store.recorder.add_records(mixed_records(40))
    uplink = Uplink(settings_for(broker, ack="broker"), store.delivery)

    async with running(uplink.run()):
        await wait_for_value(store.delivery.acked_seq, 40, "PUBACKs to acknowledge everything")
        await store.recorder.add_records(mixed_records(5, start=40))
        await wait_for_value(store.delivery.acked_seq, 45, "new records too")

    assert uplink.status.published_records == 45
    assert uplink.status.ack_mode == "broker"
    assert (await store.delivery.outbox_stats()).records == 0


async def test_records_the_receiver_never_got_are_sent_again_when_the_ack_stalls(
    broker: Broker, store: Store
) -> None:
    await store.recorder.add_records(mixed_records(20))
    uplink = Uplink(settings_for(broker, ack_timeout_s=0.3, ack_timeout_max_s=0.6), store.delivery)
    receiver = FakeReceiver(broker)

    with capture_logs() as logs:
        async with running(uplink.run()):
            # Nobody subscribed yet: the broker drops every message (a receiver that was down).
            await wait_until(lambda: uplink.status.published_records >= 20, "all sent once")
            await wait_until(lambda: uplink.status.resends >= 1, "a resend after the timeout")
            async with running(receiver.run()):
                await wait_for_value(
                    store.delivery.acked_seq, 20, "the resent records acknowledged"
                )

    assert sorted(receiver.records) == list(range(1, 21))
    assert events(logs, "uplink_resending")[0]["log_level"] == "warning"


async def test_a_broker_killed_mid_stream_loses_nothing(
    make_broker: BrokerFactory, store: Store
) -> None:
    broker = make_broker()
    receiver = FakeReceiver(broker)
    uplink = Uplink(settings_for(broker), store.delivery)

    async with running(receiver.run()), running(uplink.run()):
        await store.recorder.add_records(mixed_records(30))
        await wait_for_value(store.delivery.acked_seq, 30, "the first batch")
        broker.kill()
        await store.recorder.add_records(mixed_records(30, start=30))
        await wait_until(lambda: not uplink.status.connected, "the uplink to notice")
        broker.start()
        await store.recorder.add_records(mixed_records(30, start=60))
        await wait_for_value(store.delivery.acked_seq, 90, "everything after the restart")

    assert sorted(receiver.records) == list(range(1, 91))
    assert uplink.status.reconnects >= 1
    assert uplink.status.last_error is not None


async def test_a_reconnecting_gateway_declares_the_gap_of_what_was_already_acknowledged(
    broker: Broker, store: Store
) -> None:
    await store.recorder.add_records(mixed_records(12))
    await store.delivery.acknowledge(7)
    receiver = FakeReceiver(broker)

    async with running(receiver.run()), running(Uplink(settings_for(broker), store.delivery).run()):
        await wait_for_value(store.delivery.acked_seq, 12, "the rest to be acknowledged")

    first = receiver.received[0]
    assert (first.lo, first.hi, first.kind, first.seqs) == (0, 7, "gap", [])
    assert sorted(receiver.records) == list(range(8, 13))


async def test_a_replaced_store_is_renumbered_above_the_receivers_ack(
    broker: Broker, store: Store
) -> None:
    await publish_retained_ack(broker, 1000)  # what the gateway's previous store reached
    records = mixed_records(5)
    await store.recorder.add_records(records)
    receiver = FakeReceiver(broker)

    with capture_logs() as logs:
        async with (
            running(receiver.run()),
            running(Uplink(settings_for(broker), store.delivery).run()),
        ):
            await wait_for_value(
                store.delivery.acked_seq, 1005, "the renumbered records acknowledged"
            )

    assert sorted(receiver.records) == list(range(1001, 1006))
    for seq, record in zip(range(1001, 1006), records, strict=True):
        assert same_record(receiver.records[seq], record)
    assert events(logs, "uplink_store_behind_receiver")[0]["renumbered"] == 5
    assert [seq for seq, _ in await store.history.outbox()] == list(range(1001, 1006))
    assert await store.recorder.add_records(mixed_records(1, start=5)) == [1006]


async def test_a_clean_stop_says_offline(broker: Broker, store: Store) -> None:
    uplink = Uplink(settings_for(broker), store.delivery)
    async with running(uplink.run()):
        await wait_until(lambda: uplink.status.connected, "the connection")

    status = decode_status(await read_retained(broker, f"{PREFIX}/{GATEWAY}/status"))
    assert status.state == "offline"
    assert uplink.status.state == "stopped" and not uplink.status.connected


async def test_an_acl_that_refuses_our_ack_topic_is_named_instead_of_resending_forever(
    broker: Broker, store: Store
) -> None:
    await store.recorder.add_records(mixed_records(5))
    other_user = settings_for(broker, username="gw-b", password=broker.credentials["gw-b"].password)
    uplink = Uplink(other_user, store.delivery)

    async with running(uplink.run()):
        await wait_until(lambda: uplink.status.last_error is not None, "the refusal")

    assert uplink.status.last_error is not None
    assert uplink.status.last_error.startswith(
        f"broker refused our subscription to {PREFIX}/{GATEWAY}/ack (does its ACL let user gw-b "
        "read it? with the shipped ACL the username must be the gateway id)"
    )
    assert await store.delivery.acked_seq() == 0
