"""The fleet simulator (fleet_sim.py, the scale bench's load) against a real mosquitto and two
receiver instances on the shared subscription: every record every simulated gateway made is in
the database exactly once, also after links dropped under the gateways mid-stream."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from broker import BrokerFactory
from fleet_sim import Fleet, FleetSettings, check_database, gateway_names
from receiver_helpers import RunningReceiver, receiver_settings, wait_until

from receiver.db import open_database
from receiver.service import Receiver

GATEWAYS = 20


async def test_a_small_fleet_with_dropped_links_is_stored_exactly_once(
    make_broker: BrokerFactory, tmp_path: Path
) -> None:
    names = gateway_names(GATEWAYS)
    broker = make_broker(users=tuple(names), tls=False)
    db_url = f"sqlite:///{tmp_path / 'receiver.db'}"
    receivers = []
    for index in (1, 2):
        settings = receiver_settings(broker, db_url, client_id=f"rx-{index}")
        database = await open_database(db_url)
        receivers.append(RunningReceiver(Receiver(settings, database), database))
    passwords = {name: broker.credentials[name].password for name in names}
    fleet = Fleet(names, FleetSettings(broker.host, broker.port, passwords, records_per_s=40,
                                       live_batch_s=0.1, ack_timeout_s=1.0,
                                       reconnect_min_s=0.05, reconnect_max_s=0.2))  # fmt: skip
    stop = asyncio.Event()
    try:
        for receiver in receivers:
            await receiver.start()
        running = asyncio.create_task(fleet.run(stop))
        await wait_until(lambda: fleet.connected == GATEWAYS, "every gateway connected")
        await wait_until(lambda: fleet.counters.made >= 20 * GATEWAYS, "a second of records")
        rng = random.Random(1)
        for gateway in rng.sample(fleet.gateways, 4):
            assert gateway.drop_link(0.2)
        await wait_until(lambda: fleet.counters.made >= 40 * GATEWAYS, "more records")
        fleet.producing = False
        await wait_until(fleet.all_acked, "every record acknowledged")
        stop.set()
        await running
        check = await check_database(receivers[0].database, fleet.last_seqs())
    finally:
        stop.set()
        for receiver in receivers:
            await receiver.stop()
            await receiver.database.close()

    assert check.ok and check.complete, check
    assert check.rows >= 40 * GATEWAYS
    assert fleet.counters.link_drops == 4
    assert fleet.counters.connects >= GATEWAYS + 4
    committed = [receiver.stats.parts_committed for receiver in receivers]
    assert min(committed) > 0, committed  # the shared subscription split the parts
    assert sum(receiver.stats.records_inserted for receiver in receivers) == check.rows
