"""Fetch on demand (PROTOCOL.md, "Fetch on demand"): a gateway's uplink on a real store, a real
receiver on SQLite and the real mosquitto with the shipped ACL; the data team's side as
`appliance-receiver fetch` (in process, and once as the command)."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import aiomqtt
import pytest
from broker import TEST_GATEWAYS, Broker
from link_proxy import LinkProxy
from receiver_helpers import ReceiverFactory, outbox_rows
from uplink_helpers import T0, mixed_records, running, same_record, settings_for, wait_for_value

from appliance.config import BrokerAddress
from appliance.records import FeatureVector
from appliance.store import Store, StoredRecord, StoreSettings
from appliance.uplink.commands import decode_reply
from appliance.uplink.publisher import Uplink
from appliance.uplink.schema import split_range
from receiver.db import Database, open_database
from receiver.fetch import (
    EXIT_LANDED,
    EXIT_NOT_LANDED,
    EXIT_REFUSED,
    FetchRequest,
    count_records,
    fetch,
)
from receiver.settings import parse_broker_url

GATEWAY = "gw-a"
MODELLER = "modeller"
SINCE, UNTIL = T0 + 10, T0 + 40


@pytest.fixture
def broker(make_broker: Callable[..., Broker]) -> Broker:
    return make_broker(users=(*TEST_GATEWAYS, MODELLER))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(StoreSettings(tmp_path / "gateway.db")) as opened:
        await opened.recorder.add_records(mixed_records(60))
        yield opened


def db_path(db_url: str) -> Path:
    return Path(db_url.removeprefix("sqlite:///"))


def forget_pump_1(db_url: str, where: str = "1") -> None:
    with sqlite3.connect(db_path(db_url)) as db:
        for table in ("features", "scores", "alerts"):
            db.execute(f"DELETE FROM {table} WHERE asset = 'pump-1' AND {where}")


def rows_of(db_url: str, asset: str) -> dict[str, list[int]]:
    with sqlite3.connect(db_path(db_url)) as db:
        return {
            table: [seq for (seq,) in db.execute(
                f"SELECT seq FROM {table} WHERE gateway = ? AND asset = ? AND t >= ? AND t < ?"
                " ORDER BY seq", (GATEWAY, asset, SINCE, UNTIL))]
            for table in ("features", "scores", "alerts")
        }  # fmt: skip


def request(**overrides: object) -> FetchRequest:
    values: dict[str, object] = {"gateway": GATEWAY, "asset": "pump-1", "since": SINCE,
                                 "until": UNTIL, "max_records": None, "wait_s": 20.0}  # fmt: skip
    values.update(overrides)
    return FetchRequest(**values)  # type: ignore[arg-type]


async def test_a_fetch_brings_exactly_the_assets_records_of_the_range_without_duplicates(
    broker: Broker, store: Store, start_receiver: ReceiverFactory, db_url: str
) -> None:
    instance = await start_receiver()
    uplink = Uplink(settings_for(broker), store.delivery)
    async with running(uplink.run()):
        await wait_for_value(store.delivery.acked_seq, 60, "everything acknowledged")
        with sqlite3.connect(db_path(db_url)) as db:
            parts_before = db.execute("SELECT count(*) FROM parts").fetchone()
        forget_pump_1(db_url, "seq % 4 <> 1")  # what the summary profile never sent
        kept = sum(map(len, rows_of(db_url, "pump-1").values()))
        other_asset = rows_of(db_url, "compressor-2")
        duplicates_before = instance.stats.duplicates_ignored
        database = await open_database(db_url)
        said: list[str] = []
        try:
            code = await fetch(request(), parse_broker_url(broker.url(MODELLER)),
                               broker.ca_path, database, said.append)  # fmt: skip
        finally:
            await database.close()
        assert uplink.status.connected and uplink.fetches.done == 1

    assert code == EXIT_LANDED, said
    wanted = [
        (seq, record) for seq, record in await store.history.outbox(limit=100)
        if record.asset == "pump-1" and SINCE <= record_time(record) < UNTIL
    ]  # fmt: skip
    landed = rows_of(db_url, "pump-1")
    assert sorted(itertools.chain(*landed.values())) == [seq for seq, _ in wanted]
    assert instance.stats.duplicates_ignored - duplicates_before == kept
    assert rows_of(db_url, "compressor-2") == other_asset, "another asset is not touched"
    database = await open_database(db_url)
    try:
        stored = {f.seq: f for f in await database.features(GATEWAY, "pump-1", SINCE, UNTIL)}
    finally:
        await database.close()
    features = [(seq, r) for seq, r in wanted if isinstance(r, FeatureVector)]
    assert sorted(stored) == [seq for seq, _ in features]
    for seq, record in features:
        back = FeatureVector(record.asset, stored[seq].t, record.names, stored[seq].values)
        assert same_record(record, back), seq
    with sqlite3.connect(db_path(db_url)) as db:
        assert db.execute("SELECT count(*) FROM parts").fetchone() == parts_before
        assert db.execute("SELECT acked_seq FROM gateways").fetchone() == (60,)
    assert said[-1].startswith(f"done: {len(wanted)} records of pump-1")


async def ask(
    broker: Broker, unanswerable: bytes, payloads: list[bytes]
) -> list[dict[str, object]]:
    """Publish raw payloads on gw-a's command topic as the data team; the outcomes answered
    (`unanswerable` first: its id cannot be read, so no answer comes)."""
    answers: list[dict[str, object]] = []
    async with aiomqtt.Client(**broker.client_args(MODELLER)) as client:
        await client.subscribe(f"appliance/{GATEWAY}/reply", qos=1)
        if unanswerable:
            await client.publish(f"appliance/{GATEWAY}/command", unanswerable, qos=1)
        for payload in payloads:
            await client.publish(f"appliance/{GATEWAY}/command", payload, qos=1)
            async with asyncio.timeout(20):
                async for message in client.messages:
                    answers.append(decode_reply(bytes(message.payload)).outcome)
                    break
    return answers


def command(command_id: str, **fields: object) -> bytes:
    body = {"v": 1, "id": command_id, "action": "fetch_records", "asset": "pump-1",
            "since": SINCE, "until": UNTIL, **fields}  # fmt: skip
    return json.dumps(body).encode()


async def test_refused_fetches_are_answered_with_the_reason_and_the_gateway_keeps_going(
    broker: Broker, store: Store
) -> None:
    uplink = Uplink(settings_for(broker), store.delivery)
    async with running(uplink.run()):
        await wait_for_value(lambda: asyncio.sleep(0, uplink.status.connected), True, "up")
        deep = b'{"v": 1, "id": "deep", "action": "fetch_records", "asset": ' + b"[" * 5000
        answers = await ask(broker, deep, [
            command("too-big", max_records=5),
            command("unknown", asset="pump-9"),
            command("backwards", since=UNTIL, until=SINCE),
            command("no-time", since="yesterday"),
            command("far", until=1e300),
            command("extra", rows="all"),
            command("ok"),
        ])  # fmt: skip
        refused = uplink.fetches.refused
        await wait_for_value(lambda: asyncio.sleep(0, uplink.fetches.done), 1, "the fetch done")
        connected = uplink.status.connected

    in_range = [
        seq for seq, record in await store.history.outbox(limit=100)
        if record.asset == "pump-1" and SINCE <= record_time(record) < UNTIL
    ]  # fmt: skip
    messages = [str(answer["message"]) for answer in answers[:-1]]
    assert [answer["accepted"] for answer in answers] == [False] * 6 + [True]
    assert f"too big: {len(in_range)} records of pump-1 in that range, more than 5" in messages[0]
    assert "unknown asset 'pump-9': this gateway stores compressor-2, pump-1" in messages[1]
    assert "since (1767225640.0) must be before until" in messages[2]
    assert "since must be a finite number" in messages[3]
    assert "until 1e+300 is outside" in messages[4]
    assert "unknown field(s) rows" in messages[5]
    assert answers[-1]["records"] == len(in_range) and answers[-1]["state"] == "sending"
    assert (answers[-1]["first_seq"], answers[-1]["last_seq"]) == (in_range[0], in_range[-1])
    assert refused == 7 and connected, "every refusal counted (the deep one too); the link is up"


def record_time(record: StoredRecord) -> float:
    return record.window_end if isinstance(record, FeatureVector) else record.t


async def run_cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", "fetch", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


@pytest.mark.slow  # four runs of the command, ~7 s: README's slow-suite list
async def test_the_fetch_command_end_to_end_and_its_errors(
    broker: Broker, store: Store, start_receiver: ReceiverFactory, db_url: str, tmp_path: Path
) -> None:
    await start_receiver()
    password = tmp_path / "modeller.password"
    password.write_text(broker.credentials[MODELLER].password)
    common = ["--broker", f"{broker.scheme}://{MODELLER}@{broker.host}:{broker.port}",
              "--password-file", str(password), "--ca", str(broker.ca_path), "--db", db_url,
              "--since", "2026-01-01T00:00:10", "--until", "2026-01-01T00:00:40"]  # fmt: skip
    uplink = Uplink(settings_for(broker), store.delivery)
    async with running(uplink.run()):
        await wait_for_value(store.delivery.acked_seq, 60, "everything acknowledged")
        landed = await run_cli(*common, "--gateway", GATEWAY, "--asset", "pump-1")
        refused = await run_cli(*common, "--gateway", GATEWAY, "--asset", "pump-9")
        unknown = await run_cli(*common, "--gateway", "gw-z", "--asset", "pump-1")
    offline = await run_cli(*common, "--gateway", GATEWAY, "--asset", "pump-1", "--wait", "5")

    assert landed[0] == EXIT_LANDED, landed[1]
    count = landed[1].split("accepted: ")[1].split(" ")[0]
    assert int(count) > 0 and f"done: {count} records of pump-1" in landed[1]
    assert "(0 new)" in landed[1], "already delivered: nothing new, nothing duplicated"
    assert refused[0] == EXIT_REFUSED and "unknown asset 'pump-9'" in refused[1], refused[1]
    assert unknown[0] == 2 and "unknown gateway 'gw-z'" in unknown[1], unknown[1]
    assert offline[0] == EXIT_NOT_LANDED and "gateway gw-a is offline" in offline[1], offline[1]


async def test_a_fetch_cut_by_a_lost_connection_goes_on_from_its_last_acknowledged_batch(
    broker: Broker, store: Store, start_receiver: ReceiverFactory, db_url: str
) -> None:
    await start_receiver()
    gate = asyncio.Event()
    gate.set()
    held = asyncio.Event()

    async def pace(seconds: float) -> None:  # the replay's wait: held while the gate is shut
        held.set()
        await gate.wait()
        await asyncio.sleep(seconds)

    async with LinkProxy(broker.port) as proxy:  # the gateway's link only; the receiver's stays
        settings = settings_for(broker, replay_records_per_s=200.0, max_records_per_message=4)
        address = BrokerAddress(settings.broker.tls, settings.broker.host, proxy.port)
        uplink = Uplink(replace(settings, broker=address), store.delivery, pace=pace)
        async with running(uplink.run()):
            await wait_for_value(store.delivery.acked_seq, 60, "everything acknowledged")
            forget_pump_1(db_url)  # what the summary profile never sent
            gate.clear()
            held.clear()
            (accepted,) = await ask(broker, b"", [command("cut")])
            await held.wait()  # a batch went, the next one waits for its turn
            sent_before = uplink.fetches.job.sent if uplink.fetches.job else 0
            proxy.drop()
            await wait_for_value(lambda: asyncio.sleep(0, uplink.status.connections), 2, "back")
            gate.set()
            await wait_for_value(lambda: asyncio.sleep(0, uplink.fetches.done), 1, "fetch done")

    wanted = [
        seq for seq, record in await store.history.outbox(limit=100)
        if record.asset == "pump-1" and SINCE <= record_time(record) < UNTIL
    ]  # fmt: skip
    assert accepted["records"] == len(wanted) and 0 < sent_before < len(wanted)
    await wait_for_value(lambda: landed_seqs(db_url), wanted, "every record of the fetch")


async def landed_seqs(db_url: str) -> list[int]:
    return sorted(itertools.chain(*rows_of(db_url, "pump-1").values()))


async def test_fetched_records_are_stored_once_and_counted_by_range_on_each_backend(
    db: Database,
) -> None:
    rows = outbox_rows(0, 40)
    parts = split_range(GATEWAY, 0, 40, rows)
    first = await db.ingest_fetched(parts)
    again = await db.ingest_fetched(parts)
    since, until = T0 + 5, T0 + 15
    expected = [
        seq for seq, record in rows
        if record.asset == "pump-1" and since <= record_time(record) < until and 3 <= seq <= 30
    ]  # fmt: skip

    assert sum(first) == len(rows) and sum(again) == 0, "a second fetch inserts nothing"
    assert expected and len(expected) < len(rows)
    assert await count_records(db, GATEWAY, "pump-1", since, until, 3, 30) == len(expected)
    assert await db.acked_seq(GATEWAY) is None, "no part, no ack: the chain never sees a fetch"


async def test_records_lost_after_the_gateway_said_done_are_asked_for_again(
    broker: Broker, store: Store, start_receiver: ReceiverFactory, db_url: str
) -> None:
    await start_receiver()
    said: list[str] = []

    def lose(lost: bool) -> None:
        """While lost, the receiver's database drops pump-1's rows (as if lost on the way)."""
        with sqlite3.connect(db_path(db_url)) as db:
            for table in ("features", "scores", "alerts"):
                db.execute(f"DROP TRIGGER IF EXISTS lose_{table}")
                if lost:
                    db.execute(f"CREATE TRIGGER lose_{table} BEFORE INSERT ON {table} WHEN "
                               "NEW.asset = 'pump-1' BEGIN SELECT RAISE(IGNORE); END")  # fmt: skip

    def say(line: str) -> None:
        if "asking again" in line:
            lose(False)
        said.append(line)

    uplink = Uplink(settings_for(broker), store.delivery)
    async with running(uplink.run()):
        await wait_for_value(store.delivery.acked_seq, 60, "everything acknowledged")
        forget_pump_1(db_url)  # what the summary profile never sent
        lose(True)
        database = await open_database(db_url)
        try:
            address = parse_broker_url(broker.url(MODELLER))
            code = await fetch(request(settle_s=0.3), address, broker.ca_path, database, say)
        finally:
            await database.close()
        fetched = uplink.fetches.done

    wanted = [
        seq for seq, record in await store.history.outbox(limit=100)
        if record.asset == "pump-1" and SINCE <= record_time(record) < UNTIL
    ]  # fmt: skip
    assert code == EXIT_LANDED, said
    assert any(f"{len(wanted)} of {len(wanted)} records missing after the gateway said done; "
               "asking again (1 of 2)" in line for line in said), said  # fmt: skip
    assert fetched == 2 and await landed_seqs(db_url) == wanted
