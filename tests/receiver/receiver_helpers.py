"""Receiver test helpers: a gateway made of a plain aiomqtt client, receiver instances as tasks,
real SQLite files, and a throwaway PostgreSQL server when one can be started here."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import pytest
from broker import Broker, free_port

from appliance.records import Alert, FeatureVector, Score
from appliance.uplink.schema import (
    Part,
    SeqRecord,
    WireFormat,
    ack_topic,
    decode_ack,
    encode_part,
    split_range,
)
from receiver.db import Database, open_database
from receiver.service import Receiver
from receiver.settings import ReceiverSettings, parse_broker_url

PREFIX = "appliance"
GROUP = "rx"
DEADLINE_S = 20.0
PG_BIN = Path("/usr/lib/postgresql/15/bin")
NAMES = ("rms_x", "rms_y", "kurtosis_x", "peak_hz")


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], what: str, timeout_s: float = DEADLINE_S
) -> None:
    """Poll until `predicate` holds; fail after the deadline (a deadline, not a timing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


# --- records ----------------------------------------------------------------------------------


def vector(t: float, asset: str = "pump-1", names: tuple[str, ...] = NAMES) -> FeatureVector:
    values = np.random.default_rng(int(t * 1000)).normal(size=len(names))
    return FeatureVector(asset, t, names, values)


def score(t: float, asset: str = "pump-1", anomalous: bool = False) -> Score:
    return Score(asset, t, "ae@sha256:01", 3.0 if anomalous else 0.5, 2.0, anomalous, ())


def alert(t: float, asset: str = "pump-1") -> Alert:
    return Alert(asset, t, "critical", "anomaly_raised", f"{asset} anomalous")


def outbox_rows(lo: int, hi: int, t0: float = 1_767_225_600.0) -> list[SeqRecord]:
    """A gateway's outbox between lo and hi: a vector, then its score, every 2 seqs; an alert at
    every seq divisible by 7 (the score is dropped there)."""
    rows: list[SeqRecord] = []
    for seq in range(lo + 1, hi + 1):
        t = t0 + seq // 2
        if seq % 7 == 0:
            rows.append((seq, alert(t)))
        elif seq % 2:
            rows.append((seq, vector(t)))
        else:
            rows.append((seq, score(t, anomalous=seq % 10 == 0)))
    return rows


# --- a gateway --------------------------------------------------------------------------------


class FakeGateway:
    """Publishes parts like the appliance would and records the acks it receives."""

    def __init__(self, broker: Broker, gateway: str) -> None:
        self.broker = broker
        self.gateway = gateway
        self.acks: list[int] = []
        self.announcements: list[int] = []
        self.schema_requests: list[frozenset[bytes]] = []
        self._stack = contextlib.AsyncExitStack()
        self.client: aiomqtt.Client | None = None

    async def __aenter__(self) -> FakeGateway:
        client = aiomqtt.Client(**self.broker.client_args(self.gateway))
        self.client = await self._stack.enter_async_context(client)
        await client.subscribe(ack_topic(PREFIX, self.gateway), qos=1)
        listener = asyncio.create_task(self._listen(client))
        self._stack.callback(listener.cancel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            ack = decode_ack(payload, self.gateway)
            if ack.unknown_schemas:
                self.schema_requests.append(ack.unknown_schemas)
            elif ack.announced:
                self.announcements.append(ack.seq)
            else:
                self.acks.append(ack.seq)

    @property
    def acked(self) -> int:
        return max(self.acks, default=0)

    async def publish(
        self, parts: Sequence[Part], fmt: WireFormat = "json", known: Collection[bytes] = ()
    ) -> None:
        """`known`: feature schemas sent by reference (binary)."""
        assert self.client is not None
        for part in parts:
            await self.client.publish(part.topic(PREFIX), encode_part(part, fmt, known), qos=1)

    async def publish_raw(self, topic: str, payload: bytes) -> None:
        assert self.client is not None
        await self.client.publish(topic, payload, qos=1)

    async def send_range(
        self,
        lo: int,
        hi: int,
        rows: Sequence[SeqRecord] | None = None,
        fmt: WireFormat = "json",
        known: Collection[bytes] = (),
    ) -> list[Part]:
        parts = split_range(self.gateway, lo, hi, outbox_rows(lo, hi) if rows is None else rows)
        await self.publish(parts, fmt, known)
        return parts

    async def wait_ack(self, seq: int) -> None:
        await wait_until(lambda: self.acked >= seq, f"{self.gateway} acked up to {seq}")


GatewayFactory = Callable[[str], Awaitable[FakeGateway]]


@pytest.fixture
async def gateway(broker: Broker) -> AsyncIterator[GatewayFactory]:
    """gateway("gw-a") -> a connected FakeGateway (closed at teardown)."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(name: str) -> FakeGateway:
            return await stack.enter_async_context(FakeGateway(broker, name))

        yield make


# --- receivers --------------------------------------------------------------------------------


class RunningReceiver:
    def __init__(self, receiver: Receiver, database: Database) -> None:
        self.receiver = receiver
        self.database = database
        self.task: asyncio.Task[None] | None = None

    @property
    def stats(self) -> Any:
        return self.receiver.stats

    async def start(self) -> None:
        self.task = asyncio.create_task(self.receiver.run())
        await wait_until(self.receiver.subscribed.is_set, "the receiver subscribed")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


ReceiverFactory = Callable[..., Awaitable[RunningReceiver]]


def receiver_settings(mosquitto: Broker, db_url: str, **overrides: Any) -> ReceiverSettings:
    values: dict[str, Any] = {
        "broker": parse_broker_url(mosquitto.url("receiver")),
        "db_url": db_url,
        "ca_path": mosquitto.ca_path,
        "prefix": PREFIX,
        "group": GROUP,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.5,
        "db_retry_max_s": 0.2,
    }
    values.update(overrides)
    return ReceiverSettings(**values)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'receiver' / 'receiver.db'}"


@pytest.fixture
async def start_receiver(broker: Broker, db_url: str) -> AsyncIterator[ReceiverFactory]:
    """start_receiver(client_id=None, db_url=<test db>, start=True) -> a subscribed instance."""
    running: list[RunningReceiver] = []

    async def start(
        client_id: str | None = None, url: str | None = None, start: bool = True, **settings: Any
    ) -> RunningReceiver:
        config = receiver_settings(broker, url or db_url, client_id=client_id, **settings)
        database = await open_database(config.db_url)
        instance = RunningReceiver(Receiver(config, database), database)
        running.append(instance)
        if start:
            await instance.start()
        return instance

    yield start
    for instance in running:
        await instance.stop()
        await instance.database.close()


# --- PostgreSQL -------------------------------------------------------------------------------


def postgres_owner() -> str | None:
    """The user to run the server as: `postgres` when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("PostgreSQL: running as root and there is no 'postgres' user to run it")
    return "postgres"


def as_owner(owner: str | None, *command: str) -> list[str]:
    return ["runuser", "-u", owner, "--", *command] if owner else list(command)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL 15 server in a temp dir on a free port; its base URL. Skips if impossible."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN}")
    owner = postgres_owner()
    directory = Path(tempfile.mkdtemp(prefix="receiver-pg-"))
    if owner:
        shutil.chown(directory, owner)
    data, port = directory / "data", free_port()
    try:
        subprocess.run(
            as_owner(owner, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                     "--auth=trust", "--no-sync", "-E", "UTF8"),
            check=True, capture_output=True,
        )  # fmt: skip
        options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            as_owner(owner, str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options,
                     "-l", str(directory / "log"), "-w", "-t", "60", "start"),
            check=True, capture_output=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"PostgreSQL server could not be started here: {exc}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            as_owner(owner, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"),
            check=False, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh database on the session's server."""
    import psycopg

    name = f"receiver_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test runs on SQLite and on PostgreSQL (skipped when no server can be started)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'receiver.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def db(any_db_url: str) -> AsyncIterator[Database]:
    """An open database on each backend, closed after the test."""
    database = await open_database(any_db_url)
    yield database
    await database.close()
