"""Failure modes of issue 4 against a real mosquitto (TLS, the shipped ACL), the real receiver
(in-process, SQLite) and real SQLite on the gateway: each gives a clear log line and status and
loses nothing. Refused credentials and a wrong CA are in test_publisher.py
(test_refused_credentials_..., test_a_broker_certificate_from_another_ca_...); here: a full disk
on the gateway and a receiver that is down for an hour, compressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, MutableMapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from broker import Broker
from delivery_check import compare, read_gateway_store, read_receiver_db
from structlog.testing import capture_logs
from uplink_helpers import (
    GATEWAY,
    PREFIX,
    T0,
    running,
    settings_for,
    wait_for_value,
    wait_until,
)

from appliance.records import FeatureVector, Score
from appliance.store import Store, StoredRecord, StoreSettings, run_store_writer
from appliance.uplink.publisher import Uplink
from receiver.db import open_database
from receiver.service import Receiver
from receiver.settings import ReceiverSettings, parse_broker_url

WIDE = tuple(f"ch{c:02d}_f{k:02d}" for c in range(40) for k in range(15))
"""600 features: one vector (4.8 KB) needs pages of its own, so a full disk refuses it."""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(StoreSettings(tmp_path / "gateway.db")) as opened:
        yield opened


@contextlib.asynccontextmanager
async def real_receiver(
    broker: Broker, db: Path, client_id: str | None = None
) -> AsyncIterator[Receiver]:
    """The receiver of receiver/ on a SQLite file, with a clean session (while it is away the
    broker drops what the gateway publishes) unless given a client id; stopped and closed at the
    end of the block."""
    settings = ReceiverSettings(
        broker=parse_broker_url(broker.url("receiver")),
        db_url=f"sqlite:///{db}",
        ca_path=broker.ca_path,
        prefix=PREFIX,
        client_id=client_id,
        reconnect_min_s=0.05,
        reconnect_max_s=0.5,
        db_retry_max_s=0.2,
    )
    database = await open_database(settings.db_url)
    receiver = Receiver(settings, database)
    try:
        async with running(receiver.run()):
            await wait_until(receiver.subscribed.is_set, "the receiver to subscribe")
            yield receiver
    finally:
        await database.close()


async def assert_receiver_has_everything(gateway_db: Path, receiver_db: Path) -> int:
    """Every record in the gateway's store is at the receiver exactly once, with the same
    content, seqs 1..last without a gap, and the gateway's acked seq is its last seq."""
    gateway = await read_gateway_store(gateway_db)
    receiver = read_receiver_db(receiver_db, GATEWAY)
    comparison = compare(gateway.side, gateway.last_seq, receiver.side)
    assert gateway.acked_seq == gateway.last_seq > 0
    assert (comparison.missing, comparison.unexpected, comparison.different) == ([], [], [])
    assert comparison.duplicates == 0 and comparison.gateway_gaps == []
    assert sorted(receiver.side.records) == list(range(1, gateway.last_seq + 1))
    assert receiver.acked_seq == gateway.last_seq
    return gateway.last_seq


def wide_vectors(count: int, start: int = 0) -> list[FeatureVector]:
    rng = np.random.default_rng(start)
    return [
        FeatureVector("pump-1", T0 + i, WIDE, rng.normal(size=len(WIDE)))
        for i in range(start, start + count)
    ]


def put_all(queue: asyncio.Queue[StoredRecord], records: Sequence[StoredRecord]) -> None:
    for record in records:
        queue.put_nowait(record)


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_a_full_gateway_disk_holds_new_records_back_and_loses_none(
    broker: Broker, store: Store, tmp_path: Path
) -> None:
    queue: asyncio.Queue[StoredRecord] = asyncio.Queue()
    stored = asyncio.Event()
    uplink = Uplink(settings_for(broker), store.delivery, new_data=stored)
    writer = run_store_writer(store.recorder, queue, retry_delays_s=(0.05,), on_stored=stored.set)

    with capture_logs() as logs:
        async with (
            real_receiver(broker, tmp_path / "receiver.db"),
            running(writer),
            running(uplink.run()),
        ):
            put_all(queue, wide_vectors(20))
            await wait_for_value(store.delivery.acked_seq, 20, "the first records delivered")
            await store.set_max_page_count_for_tests(1)  # the disk is full from here on
            put_all(queue, wide_vectors(40, start=20))
            await wait_until(lambda: store.stats.write_errors >= 3, "writes failing")
            await wait_until(lambda: uplink.status.backlog_records == 0, "a fresh status")
            while_full = (uplink.status.connected, uplink.status.acked_seq, queue.qsize())
            await store.set_max_page_count_for_tests(None)  # space again
            await queue.join()
            await wait_for_value(store.delivery.acked_seq, 60, "the held records delivered")

    assert while_full == (True, 20, 0), "connected, all stored delivered, the rest held"
    failed = events(logs, "store_write_failed")
    assert len(failed) == store.stats.write_errors >= 3, "each failed write logged, counted"
    assert all(entry["log_level"] == "warning" and entry["disk_full"] for entry in failed)
    assert "database or disk is full" in failed[0]["reason"]
    assert failed[0]["records"] == 40, "the whole batch waits in memory, nothing dropped"
    assert await assert_receiver_has_everything(tmp_path / "gateway.db", tmp_path / "receiver.db")


MINUTE_S = 60.0
COMPRESSION = 600.0
"""Real time in test time: a minute in 0.1 s. The outage and the uplink's ack timeouts (default
120 s, doubling while nothing moves, up to 3600 s) shrink by the same factor."""
OUTAGE_S = 70 * MINUTE_S / COMPRESSION
"""Down for 70 minutes: the last timed resend came at 62 minutes, the next is due at 122."""


async def test_a_receiver_down_for_an_hour_is_named_and_its_backlog_arrives_in_full(
    broker: Broker, store: Store, tmp_path: Path
) -> None:
    settings = settings_for(
        broker, ack_timeout_s=120.0 / COMPRESSION, ack_timeout_max_s=3600.0 / COMPRESSION
    )
    uplink = Uplink(settings, store.delivery)
    receiver_db = tmp_path / "receiver.db"

    with capture_logs() as logs:
        async with running(uplink.run()):
            async with real_receiver(broker, receiver_db):
                await store.recorder.add_records(live_records(20))
                await wait_for_value(store.delivery.acked_seq, 20, "delivery before the outage")
            outage_starts_at = len(logs)  # a slow ack before it may already have been resent
            produced = await produce_for(store, OUTAGE_S)
            await wait_until(lambda: uplink.status.backlog_records == produced, "the status")
            status = replace(uplink.status)
            backlog_age = status.backlog_age_s(time.time())
            async with real_receiver(broker, receiver_db):
                back = time.monotonic()
                await wait_for_value(
                    store.delivery.acked_seq, 20 + produced, "the backlog delivered"
                )
                recovered_in = time.monotonic() - back

    assert status.connected and status.acked_seq == 20 and status.resends >= 4
    assert backlog_age is not None and backlog_age > 0.9 * OUTAGE_S, "the backlog is dated"
    resending = events(logs[outage_starts_at:], "uplink_resending")
    assert resending[0]["log_level"] == "warning" and resending[0]["acked_seq"] == 20
    assert "no acknowledgement for" in resending[0]["reason"]
    assert "receiver down" in resending[0]["reason"]
    back_again = [e for e in resending if "the receiver is back" in e["reason"]]
    assert len(back_again) == 1 and back_again[0] is resending[-1], "re-sent once it was back"
    assert recovered_in < 20 * MINUTE_S / COMPRESSION, "not when the next timed resend is due"
    assert await assert_receiver_has_everything(tmp_path / "gateway.db", receiver_db)


async def test_what_a_restarted_broker_dropped_is_sent_again_when_a_receiver_subscribes(
    broker: Broker, store: Store, tmp_path: Path
) -> None:
    """Mosquitto forgets shared subscriptions when it restarts (persistent sessions or not):
    until a receiver subscribes again, it PUBACKs the gateway's parts and drops them. The
    receiver's announcement must bring them at once, not the ack timeout (120 s here)."""
    uplink = Uplink(settings_for(broker, ack_timeout_s=120.0), store.delivery)
    receiver_db = tmp_path / "receiver.db"

    with capture_logs() as logs:
        async with running(uplink.run()):
            async with real_receiver(broker, receiver_db, client_id="rx-persistent"):
                await store.recorder.add_records(live_records(20))
                await wait_for_value(store.delivery.acked_seq, 20, "delivery before the restart")
            broker.stop()
            broker.start()
            await wait_until(lambda: uplink.status.connected, "the gateway reconnected")
            await store.recorder.add_records(live_records(20))
            await wait_until(lambda: uplink.status.published_records == 40, "the broker's PUBACKs")
            async with real_receiver(broker, receiver_db, client_id="rx-persistent") as receiver:
                await wait_for_value(store.delivery.acked_seq, 40, "the dropped parts again")

    assert receiver.stats.records_inserted == 20, "the broker had dropped them: sent again"
    resending = events(logs, "uplink_resending")
    assert len(resending) == 1 and "a receiver subscribed" in resending[0]["reason"]
    assert await assert_receiver_has_everything(tmp_path / "gateway.db", receiver_db)


def live_records(count: int) -> list[StoredRecord]:
    """A feature vector and its score, timed now."""
    now = time.time()
    return [
        record
        for i in range(count // 2)
        for record in (
            FeatureVector("pump-1", now + i, ("rms", "peak"), np.array([0.1 * i, 2.0])),
            Score("pump-1", now + i, "ae@sha256:01", 0.5, 2.0, False, ("rms",)),
        )
    ]


async def produce_for(store: Store, seconds: float) -> int:
    """The gateway goes on storing records (two every 50 ms) for `seconds`; how many."""
    produced = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        produced += len(await store.recorder.add_records(live_records(2)))
        await asyncio.sleep(0.05)
    return produced
