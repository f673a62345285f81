"""Receiver instances against a real mosquitto (TLS, passwords, the shipped ACL) and real SQLite:
a gateway is a plain aiomqtt client publishing parts and waiting for its acks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
from broker import Broker
from receiver_helpers import (
    GatewayFactory,
    ReceiverFactory,
    outbox_rows,
    receiver_settings,
    wait_until,
)
from structlog.testing import capture_logs

from appliance.records import FeatureVector
from appliance.uplink.schema import encode_part, split_range
from receiver.db import open_database
from receiver.service import Receiver
from receiver.settings import parse_broker_url


async def test_parts_are_committed_and_acknowledged(
    start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    rx = await start_receiver()
    gw = await gateway("gw-a")

    parts = await gw.send_range(0, 30)
    await gw.wait_ack(30)

    assert gw.acks == [30]
    assert rx.stats.parts_committed == len(parts)
    assert rx.stats.records_inserted == 30
    features = await rx.database.features("gw-a", "pump-1", 0, 1e11)
    assert [f.seq for f in features] == [
        seq for seq, record in outbox_rows(0, 30) if isinstance(record, FeatureVector)
    ]


async def test_duplicates_are_ignored_exactly_and_the_ack_is_sent_again(
    start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    rx = await start_receiver()
    gw = await gateway("gw-a")
    parts = await gw.send_range(0, 30)
    await gw.wait_ack(30)

    await gw.publish(parts)
    await wait_until(lambda: rx.stats.parts_committed == 2 * len(parts), "re-sent parts")
    await wait_until(lambda: len(gw.acks) >= 2, "the ack again for the re-sent range")

    assert set(gw.acks) == {30}
    assert (rx.stats.records_inserted, rx.stats.duplicates_ignored) == (30, 30)
    assert len(await rx.database.features("gw-a", "pump-1", 0, 1e11)) == len(parts[0].records)


async def test_out_of_order_ranges_are_acknowledged_once_they_chain(
    start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    rx = await start_receiver()
    gw = await gateway("gw-a")

    later = await gw.send_range(20, 40)  # live data first
    await wait_until(lambda: rx.stats.parts_committed == len(later), "later range committed")
    assert await rx.database.acked_seq("gw-a") == 0

    backlog = split_range("gw-a", 0, 20, outbox_rows(0, 20))
    await gw.publish(backlog[::-1])
    await gw.wait_ack(40)

    assert max(gw.acks) == 40 and all(ack in (20, 40) for ack in gw.acks)


async def test_a_gap_part_closes_the_chain(
    start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    await start_receiver()
    gw = await gateway("gw-a")

    await gw.send_range(10, 20)
    await gw.send_range(0, 10, rows=[])  # evicted before it was sent

    await gw.wait_ack(20)


async def test_a_hole_holds_the_ack_until_it_is_filled(
    start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    rx = await start_receiver()
    gw = await gateway("gw-a")
    await gw.send_range(0, 10)
    await gw.wait_ack(10)
    sent = await gw.send_range(20, 30)
    await wait_until(lambda: rx.stats.parts_committed == 3 + len(sent), "both ranges committed")

    (row,) = await rx.database.gateway_status()
    assert (row["acked_seq"], row["holes"], row["missing_seqs"]) == (10, 1, 10)

    await gw.send_range(10, 20)
    await gw.wait_ack(30)


async def test_two_instances_on_the_shared_subscription_split_the_load(
    start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    first = await start_receiver(client_id="rx-1")
    second = await start_receiver(client_id="rx-2")
    gw = await gateway("gw-a")

    for lo in range(0, 400, 10):
        await gw.send_range(lo, lo + 10)
    await gw.wait_ack(400)

    parts = (first.stats.parts_committed, second.stats.parts_committed)
    assert min(parts) > 0, parts
    assert first.stats.records_inserted + second.stats.records_inserted == 400
    assert first.stats.duplicates_ignored + second.stats.duplicates_ignored == 0
    assert await first.database.acked_seq("gw-a") == 400


async def test_a_payload_whose_gateway_id_differs_from_its_topic_is_refused(
    start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    rx = await start_receiver()
    gw = await gateway("gw-a")
    (forged,) = split_range("gw-b", 0, 1, outbox_rows(0, 1))  # gw-b's records...

    with capture_logs() as logs:
        await gw.publish_raw("appliance/gw-a/features/pump-1", encode_part(forged))  # ...by gw-a
        await wait_until(lambda: rx.stats.rejected_total == 1, "the forged payload refused")

    assert rx.stats.rejected == {"gateway_mismatch": 1}
    assert await rx.database.gateways() == []
    (entry,) = [e for e in logs if e["event"] == "receiver_rejected_payload"]
    assert entry["reason"] == "gateway_mismatch"
    assert entry["topic"] == "appliance/gw-a/features/pump-1"
    assert "'gw-b'" in entry["detail"]


async def test_malformed_payloads_are_counted_by_reason_and_dropped(
    start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    rx = await start_receiver()
    gw = await gateway("gw-a")
    (part,) = split_range("gw-a", 0, 1, outbox_rows(0, 1))
    newer = json.loads(encode_part(part)) | {"v": 2}

    await gw.publish_raw("appliance/gw-a/features/pump-1", b"\x00not json")
    await gw.publish_raw("appliance/gw-a/features/pump-1", json.dumps(newer).encode())
    await gw.publish_raw("appliance/gw-a/status2/x", b"{}")
    await gw.publish([part])
    await gw.wait_ack(1)

    assert rx.stats.rejected == {"bad_json": 1, "bad_version": 1, "bad_topic": 1}
    assert rx.stats.messages == 4


async def test_a_restarted_instance_gets_what_was_published_while_it_was_down(
    start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    rx = await start_receiver(client_id="rx-persistent")
    await rx.stop()
    gw = await gateway("gw-a")

    await gw.send_range(0, 20)  # nobody is connected: the broker queues it for the session
    again = await start_receiver(client_id="rx-persistent")
    await gw.wait_ack(20)

    assert again.stats.records_inserted == 20


async def test_a_restarted_instance_announces_every_known_gateways_ack(
    start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    rx = await start_receiver()
    gw_a, gw_b = await gateway("gw-a"), await gateway("gw-b")
    await gw_a.send_range(0, 10)
    await gw_b.send_range(0, 4)
    await gw_a.wait_ack(10)
    await gw_b.wait_ack(4)
    await rx.stop()

    again = await start_receiver()  # a clean session: it says what it has, unasked
    await wait_until(lambda: gw_a.announcements and gw_b.announcements, "the announcements")

    assert (gw_a.acks, gw_b.acks) == ([10, 10], [4, 4]), "retained again, then announced"
    assert (gw_a.announcements, gw_b.announcements) == ([10], [4])
    assert again.stats.acks_published == 2 and again.stats.messages == 0


async def test_the_receiver_reconnects_after_a_broker_restart(
    broker: Broker, start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    rx = await start_receiver(client_id="rx-1")
    connects = rx.stats.connects
    broker.stop()
    await wait_until(lambda: not rx.receiver.subscribed.is_set(), "the receiver noticed")
    broker.start()
    await wait_until(lambda: rx.stats.connects > connects, "the receiver reconnected")

    gw = await gateway("gw-a")
    await gw.send_range(0, 10)
    await gw.wait_ack(10)
    assert rx.stats.disconnects >= 1


async def test_the_acks_are_retained_for_a_gateway_that_reconnects(
    broker: Broker, start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    await start_receiver()
    gw = await gateway("gw-a")
    await gw.send_range(0, 10)
    await gw.wait_ack(10)

    later = await gateway("gw-a")  # a new connection: the retained ack arrives at subscribe
    await later.wait_ack(10)


async def test_a_database_shared_with_another_receiver_sees_its_acks(
    start_receiver: ReceiverFactory, gateway: GatewayFactory, db_url: str
) -> None:
    await start_receiver()
    gw = await gateway("gw-a")
    await gw.send_range(0, 10)
    await gw.wait_ack(10)

    reader = await open_database(db_url)
    try:
        assert await reader.acked_seq("gw-a") == 10
    finally:
        await reader.close()


async def run_until_disconnected_twice(receiver: Receiver) -> list[str]:
    """Run `receiver` until it failed to connect twice; the reasons it logged."""
    with capture_logs() as logs:
        task = asyncio.create_task(receiver.run())
        try:
            await wait_until(lambda: receiver.stats.disconnects >= 2, "two failed connections")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return [e["reason"] for e in logs if e["event"] == "receiver_disconnected"]


async def test_refused_credentials_are_logged_plainly_and_retried(
    broker: Broker, db_url: str
) -> None:
    wrong = parse_broker_url(broker.url("receiver", password="wrong"))
    database = await open_database(db_url)
    try:
        receiver = Receiver(receiver_settings(broker, db_url, broker=wrong), database)
        reasons = await run_until_disconnected_twice(receiver)
    finally:
        await database.close()
    assert reasons[0] == "broker refused our credentials (not authorised)", reasons
    assert receiver.stats.connects == 0


async def test_a_wrong_ca_is_logged_plainly_and_retried(
    broker: Broker, db_url: str, wrong_ca: Path
) -> None:
    database = await open_database(db_url)
    try:
        receiver = Receiver(receiver_settings(broker, db_url, ca_path=wrong_ca), database)
        reasons = await run_until_disconnected_twice(receiver)
    finally:
        await database.close()
    assert reasons[0].startswith("TLS: certificate verify failed for host "), reasons
    assert reasons[0].endswith("(check --ca)"), reasons


async def test_two_instances_share_a_postgresql_database(
    start_receiver: ReceiverFactory, gateway: GatewayFactory, postgres_url: str
) -> None:
    first = await start_receiver(client_id="rx-pg-1", url=postgres_url)
    second = await start_receiver(client_id="rx-pg-2", url=postgres_url)
    gw = await gateway("gw-a")

    for lo in range(0, 200, 10):
        await gw.send_range(lo, lo + 10)
    await gw.send_range(0, 10)  # a duplicate range, too
    await gw.wait_ack(200)

    assert min(first.stats.parts_committed, second.stats.parts_committed) > 0
    assert first.stats.records_inserted + second.stats.records_inserted == 200
    (row,) = await first.database.gateway_status()
    assert (row["acked_seq"], row["holes"], row["incomplete_ranges"]) == (200, 0, 0)


async def test_a_message_is_acknowledged_to_the_broker_only_after_its_commit(
    start_receiver: ReceiverFactory,
    gateway: GatewayFactory,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database is locked while the part arrives: the instance retries, is stopped before it
    could commit, and the broker gives the same message to the restarted instance."""
    monkeypatch.setattr("receiver.db.sqlite.BUSY_TIMEOUT_S", 0.02)
    rx = await start_receiver(client_id="rx-1")
    path = db_url.removeprefix("sqlite:///")
    blocker = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        gw = await gateway("gw-a")
        await gw.send_range(0, 1)
        await wait_until(lambda: rx.stats.db_retries >= 2, "commits refused while locked")
        await rx.stop()
    finally:
        blocker.close()
    assert rx.stats.parts_committed == 0

    again = await start_receiver(client_id="rx-1")
    await gw.wait_ack(1)
    assert again.stats.records_inserted == 1
