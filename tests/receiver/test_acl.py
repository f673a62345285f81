"""The shipped ACL (receiver/mosquitto/acl.conf) enforced by a real mosquitto: each gateway may
write only under its own prefix and read only its own ack.

Mosquitto 2.0.11 drops a denied publish and closes the publisher's connection (MQTT 3.1.1 cannot
say "not authorised"); the tests do not depend on the disconnect, only on the message never
reaching a subscriber: a marker published afterwards arrives, the denied message never does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiomqtt
import pytest
from broker import SHIPPED_ACL, TEST_GATEWAYS, Broker, BrokerFactory
from receiver_helpers import wait_until

from appliance.uplink.schema import encode_ack, encode_status

Seen = list[tuple[str, bytes]]
# The shipped ACL plus a watcher who may read everything, to see what would leak.
WATCHER_ACL = SHIPPED_ACL.read_text() + "\nuser watcher\ntopic read #\n"


@pytest.fixture
def broker(make_broker: BrokerFactory) -> Broker:
    return make_broker(users=(*TEST_GATEWAYS, "watcher"), acl=WATCHER_ACL)


@contextlib.asynccontextmanager
async def watching(broker: Broker, topic: str) -> AsyncIterator[Seen]:
    """Everything that arrives on `topic`, as the watcher (who may read everything)."""
    seen: Seen = []
    async with aiomqtt.Client(**broker.client_args("watcher")) as client:
        await client.subscribe(topic, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                seen.append((message.topic.value, message.payload))

        task = asyncio.create_task(collect())
        try:
            yield seen
        finally:
            task.cancel()


async def try_publish(broker: Broker, user: str, topic: str, payload: bytes) -> None:
    """Publish as `user`; a broker that cuts the connection for it is not an error here."""
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client(**broker.client_args(user)) as client:
            await client.publish(topic, payload, qos=1)


async def marker_arrives(broker: Broker, user: str, topic: str, seen: Seen) -> None:
    async with aiomqtt.Client(**broker.client_args(user)) as client:
        await client.publish(topic, b"marker", qos=1)
    await wait_until(lambda: (topic, b"marker") in seen, f"the marker on {topic}")


@pytest.mark.parametrize(
    "forbidden",
    [
        "appliance/gw-b/features/pump-1",  # another gateway's data
        "appliance/gw-b/status",  # another gateway's status
        "appliance/gw-a/ack",  # its own ack: only the receiver may say what it has
        "elsewhere/gw-a/features/pump-1",  # outside the prefix
    ],
)
async def test_a_gateway_cannot_publish_outside_its_own_topics(
    broker: Broker, forbidden: str
) -> None:
    async with watching(broker, "#") as seen:
        await try_publish(broker, "gw-a", forbidden, b"forged")
        await marker_arrives(broker, "gw-a", "appliance/gw-a/features/pump-1", seen)

    assert [topic for topic, _ in seen] == ["appliance/gw-a/features/pump-1"]


async def test_a_gateway_may_publish_its_data_status_and_last_will(broker: Broker) -> None:
    will = aiomqtt.Will("appliance/gw-a/status", encode_status("gw-a", "offline"), 1, True)
    async with watching(broker, "appliance/gw-a/#") as seen:
        async with aiomqtt.Client(**broker.client_args("gw-a"), will=will) as client:
            await client.publish("appliance/gw-a/status", encode_status("gw-a", "online"), 1)
            await client.publish("appliance/gw-a/gap/_", b"{}", qos=1)
        await wait_until(lambda: len(seen) == 2, "status and gap")
    assert [topic for topic, _ in seen] == ["appliance/gw-a/status", "appliance/gw-a/gap/_"]


async def test_a_gateway_reads_its_own_ack_and_not_another_gateways(broker: Broker) -> None:
    async with aiomqtt.Client(**broker.client_args("receiver")) as receiver:
        for gateway, seq in (("gw-a", 10), ("gw-b", 20)):
            await receiver.publish(
                f"appliance/{gateway}/ack", encode_ack(gateway, seq), qos=1, retain=True
            )

    received: Seen = []
    async with aiomqtt.Client(**broker.client_args("gw-a")) as client:
        await client.subscribe("appliance/gw-b/ack", qos=1)  # retained, but not for gw-a
        await client.subscribe("appliance/gw-a/ack", qos=1)
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            received.append((message.topic.value, message.payload))
            break

    assert received == [("appliance/gw-a/ack", encode_ack("gw-a", 10))]


async def test_a_gateway_cannot_read_another_gateways_data(broker: Broker) -> None:
    seen: Seen = []
    async with aiomqtt.Client(**broker.client_args("gw-a")) as spy:
        await spy.subscribe("appliance/gw-b/#", qos=1)
        await spy.subscribe("appliance/gw-a/ack", qos=1)
        async with aiomqtt.Client(**broker.client_args("gw-b")) as victim:
            await victim.publish("appliance/gw-b/features/pump-1", b"secret", qos=1)
        async with aiomqtt.Client(**broker.client_args("receiver")) as receiver:
            await receiver.publish("appliance/gw-a/ack", encode_ack("gw-a", 1), qos=1)
        async for message in spy.messages:
            assert isinstance(message.payload, bytes)
            seen.append((message.topic.value, message.payload))
            break

    assert seen == [("appliance/gw-a/ack", encode_ack("gw-a", 1))]
