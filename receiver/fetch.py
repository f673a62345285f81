"""`appliance-receiver fetch`: ask one gateway for an asset's full records of a time range
(PROTOCOL.md, "Fetch on demand") and wait until they landed in the receiver's database.

The command talks to the broker as the data team's user (its ACL lets it write commands and
read replies and status: receiver/mosquitto/acl.conf) and reads the database the receivers
write; the records themselves reach the database through the running receiver instances.
Landed means: the gateway said done, and the database holds at least as many records of that
asset, range and seq span as the gateway counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from appliance.net.broker import BrokerAddress
from appliance.uplink.commands import (
    Command,
    Reply,
    command_topic,
    decode_reply,
    encode_command,
    reply_topic,
)
from appliance.uplink.errors import SchemaError
from appliance.uplink.schema import decode_status, status_topic
from receiver.db import Database
from receiver.errors import ReceiverError

EXIT_LANDED, EXIT_REFUSED, EXIT_NOT_LANDED = 0, 1, 3
STATUS_WAIT_S = 5.0
"""How long to wait for the gateway's retained status (it comes right after SUBACK)."""
POLL_S = 0.5
"""How often the database is counted while records land."""


@dataclass(frozen=True)
class FetchRequest:
    gateway: str
    asset: str
    since: float
    until: float
    max_records: int | None
    wait_s: float
    """Give up when neither an answer nor a new record came for this long."""
    prefix: str = "appliance"


class FetchFailed(Exception):
    """The fetch ended without every record landed: the message says why, `code` the exit."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


async def fetch(
    request: FetchRequest,
    broker: BrokerAddress,
    ca: Path | None,
    database: Database,
    say: Callable[[str], None] = print,
) -> int:
    """Ask, wait, report; the exit code (EXIT_...). ReceiverError for an unknown gateway or a
    broker that cannot be reached."""
    if request.gateway not in await database.gateways():
        raise ReceiverError(
            f"unknown gateway {request.gateway!r}: the receiver's database has no record of it "
            "(check the id, and --db)"
        )
    try:
        async with connected(broker, ca) as client:
            return await Exchange(request, client, database, say).run()
    except FetchFailed as exc:
        say(f"fetch: {exc}")
        return exc.code
    except aiomqtt.MqttError as exc:
        raise ReceiverError(f"{broker.redacted()}: {exc}") from exc


@contextlib.asynccontextmanager
async def connected(broker: BrokerAddress, ca: Path | None) -> AsyncIterator[aiomqtt.Client]:
    tls = ssl.create_default_context(cafile=str(ca) if ca else None) if broker.tls else None
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username=broker.username,
        password=broker.password,
        identifier=f"appliance-fetch-{secrets.token_hex(6)}",
        clean_session=True,
        tls_context=tls,
    ) as client:
        yield client


class Exchange:
    """One fetch: the gateway's status, the command, its answers, the records landing."""

    def __init__(
        self,
        request: FetchRequest,
        client: aiomqtt.Client,
        database: Database,
        say: Callable[[str], None],
    ) -> None:
        self.request = request
        self.client = client
        self.database = database
        self.say = say
        self.id = secrets.token_hex(8)
        self._messages = client.messages
        self._status_topic = status_topic(request.prefix, request.gateway)

    async def run(self) -> int:
        r = self.request
        await self.client.subscribe(self._status_topic, qos=1)
        await self.client.subscribe(reply_topic(r.prefix, r.gateway), qos=1)
        await self._check_online()
        command = Command(self.id, "fetch_records", asset=r.asset, since=r.since, until=r.until,
                          max_records=r.max_records)  # fmt: skip
        await self.client.publish(command_topic(r.prefix, r.gateway), encode_command(command),
                                  qos=1)  # fmt: skip
        self.say(f"asked gateway {r.gateway} for {r.asset} records {r.since} <= t < {r.until} "
                 f"(fetch {self.id})")  # fmt: skip
        accepted = await self._answer()
        return await self._landing(accepted)

    async def _check_online(self) -> None:
        message = await self._next(STATUS_WAIT_S)
        if message is None or not message.topic.matches(self._status_topic):
            raise FetchFailed(
                f"gateway {self.request.gateway} has never connected to this broker (no "
                f"retained status on {self._status_topic}; check --prefix)",
                EXIT_NOT_LANDED,
            )
        self._check_state(bytes(message.payload))

    def _check_state(self, payload: bytes) -> None:
        try:
            status = decode_status(payload)
        except SchemaError:
            return
        if status.state != "online":
            raise FetchFailed(
                f"gateway {self.request.gateway} is offline: ask again once it is back (records "
                "that already landed are not duplicated)",
                EXIT_NOT_LANDED,
            )

    async def _answer(self) -> dict[str, Any]:
        reply = await self._reply(self.request.wait_s)
        if reply is None:
            raise FetchFailed(
                f"no answer from gateway {self.request.gateway} within {self.request.wait_s:g} s "
                "(is it running a version that fetches? its log says why)",
                EXIT_NOT_LANDED,
            )
        outcome = reply.outcome
        if outcome.get("accepted") is not True:
            raise FetchFailed(f"refused by gateway {reply.gateway}: {outcome.get('message')}",
                              EXIT_REFUSED)  # fmt: skip
        self.say(f"accepted: {outcome.get('records')} records (seq {outcome.get('first_seq')}.."
                 f"{outcome.get('last_seq')}), sent at the gateway's replay rate")  # fmt: skip
        return outcome

    async def _landing(self, accepted: dict[str, Any]) -> int:
        total = int(accepted.get("records", 0))
        started = time.monotonic()
        first, last = int(accepted.get("first_seq", 0)), int(accepted.get("last_seq", 0))
        before = landed = await self._count(first, last)
        done = accepted.get("state") == "done"
        progress_at = time.monotonic()
        while not (done and landed >= total):
            reply = await self._reply(POLL_S)
            if reply is not None:
                if reply.outcome.get("accepted") is not True:
                    raise FetchFailed(f"gateway {reply.gateway}: {reply.outcome.get('message')}",
                                      EXIT_REFUSED)  # fmt: skip
                if reply.outcome.get("state") == "done":
                    done = True
                    total = int(reply.outcome.get("sent", total))  # less if evicted meanwhile
                progress_at = time.monotonic()
            count = await self._count(first, last)
            if count != landed:
                landed, progress_at = count, time.monotonic()
                self.say(f"landed {landed} of {total}")
            if time.monotonic() - progress_at > self.request.wait_s:
                raise FetchFailed(
                    f"{landed} of {total} records landed, then nothing for "
                    f"{self.request.wait_s:g} s (gateway said done: {done}; are receivers running? "
                    "`appliance-receiver dead-letters` shows refused parts); run the same "
                    "command again: what landed is not duplicated",
                    EXIT_NOT_LANDED,
                )
        self.say(f"done: {landed} records of {self.request.asset} in the database "
                 f"({landed - before} new) after {time.monotonic() - started:.1f} s")  # fmt: skip
        return EXIT_LANDED

    async def _reply(self, timeout_s: float) -> Reply | None:
        """The next answer to this fetch within `timeout_s` (a status saying offline ends it)."""
        deadline = time.monotonic() + timeout_s
        while (message := await self._next(deadline - time.monotonic())) is not None:
            if message.topic.matches(self._status_topic):
                self._check_state(bytes(message.payload))
                continue
            with contextlib.suppress(SchemaError):  # not a reply anyone can read
                reply = decode_reply(bytes(message.payload))
                if reply.id == self.id:
                    return reply
        return None

    async def _next(self, timeout_s: float) -> aiomqtt.Message | None:
        if timeout_s <= 0:
            return None
        try:
            async with asyncio.timeout(timeout_s):
                return await anext(self._messages)
        except TimeoutError:
            return None

    async def _count(self, first_seq: int, last_seq: int) -> int:
        r = self.request
        return await count_records(self.database, r.gateway, r.asset, r.since, r.until,
                                   first_seq, last_seq)  # fmt: skip


async def count_records(
    database: Database,
    gateway: str,
    asset: str,
    since: float,
    until: float,
    first_seq: int,
    last_seq: int,
) -> int:
    """Records of the asset in the database with since <= t < until and a seq in the span."""
    postgres = database.dialect.name == "postgresql"
    mark = "%s" if postgres else "?"
    time_mark = f"to_timestamp({mark})" if postgres else mark
    where = (
        f"gateway = {mark} AND asset = {mark} AND t >= {time_mark} AND t < {time_mark}"
        f" AND seq >= {mark} AND seq <= {mark}"
    )
    sql = " + ".join(
        f"(SELECT count(*) FROM {table} WHERE {where})"
        for table in ("features", "scores", "alerts")
    )
    parameters = (gateway, asset, since, until, first_seq, last_seq) * 3
    rows = await database.read(f"SELECT {sql} AS n", parameters)
    return int(rows[0]["n"])
