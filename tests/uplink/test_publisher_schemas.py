"""Feature schemas by reference (PROTOCOL.md, "Schema references") between the publisher and a
receiver on a real mosquitto and a real store: names until the receiver has acknowledged a part
that carried them, references after; a receiver that lost them (a new database) asks, and gets
every record anyway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from broker import Broker
from uplink_helpers import (
    FakeReceiver,
    mixed_records,
    running,
    same_record,
    settings_for,
    wait_for_value,
    wait_until,
)

from appliance.store import Store, StoreSettings
from appliance.uplink.publisher import Uplink
from appliance.uplink.schema import SchemaBook


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(StoreSettings(tmp_path / "gateway.db")) as opened:
        yield opened


async def test_schemas_go_by_reference_once_acknowledged_and_are_sent_again_when_unknown(
    broker: Broker, store: Store
) -> None:
    records = mixed_records(90)
    receiver = FakeReceiver(broker)
    uplink = Uplink(settings_for(broker, ack_timeout_s=60.0), store.delivery)

    async with running(receiver.run()), running(uplink.run()):
        await store.recorder.add_records(records[:30])
        await wait_for_value(store.delivery.acked_seq, 30, "the first records acknowledged")
        await store.recorder.add_records(records[30:60])
        await wait_for_value(store.delivery.acked_seq, 60, "the next records acknowledged")
        by_reference = receiver.by_reference
        receiver.schemas = SchemaBook()  # a receiver with a new database
        await store.recorder.add_records(records[60:])
        await wait_until(lambda: receiver.schema_requests > 0, "the receiver to ask for names")
        await wait_for_value(store.delivery.acked_seq, 90, "every record acknowledged")

    assert by_reference > 0, "known schemas went by reference"
    assert sorted(receiver.records) == list(range(1, 91))
    for seq, record in enumerate(records, start=1):
        assert same_record(receiver.records[seq], record), seq
    assert uplink.status.resends >= 1
