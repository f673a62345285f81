"""`appliance-receiver fetch`: ask one gateway for an asset's full records of a time range
(PROTOCOL.md, "Fetch on demand") and wait until they landed in the receiver's database.

The command talks to the broker as the data team's user (its ACL lets it write commands and
read replies and status: receiver/mosquitto/acl.conf) and reads the database the receivers
write; the records themselves reach the database through the running receiver instances.
Landed means: the gateway said done, and the database holds at least as many records of that
asset, range and seq span as the gateway counted. Records still missing a few seconds after
done were acknowledged by the broker but lost on the way (a broker restart): the command asks
again (MAX_REASKS times); what already landed is a duplicate there, ignored.
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
MAX_REASKS = 2
"""How often records missing after the gateway said done are asked for again."""


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
    settle_s: float = 3.0
    """After the gateway said done, records still missing this long are asked for again."""


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
        raise ReceiverError(
            f"{broker.redacted()}: {exc} (run the command again: records that landed are not "
            "duplicated)"
        ) from exc


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
        return await self._landing(await self._ask())

    async def _ask(self) -> dict[str, Any]:
        """Publish the command (with a new id) and return the gateway's acceptance."""
        r = self.request
        self.id = secrets.token_hex(8)
        command = Command(self.id, "fetch_records", asset=r.asset, since=r.since, until=r.until,
                          max_records=r.max_records)  # fmt: skip
        await self.client.publish(command_topic(r.prefix, r.gateway), encode_command(command),
                                  qos=1)  # fmt: skip
        self.say(f"asked gateway {r.gateway} for {r.asset} records {r.since} <= t < {r.until} "
                 f"(fetch {self.id})")  # fmt: skip
        return await self._answer()

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
        started = time.monotonic()
        span = Span.of(accepted)
        before = landed = await self._count(span)
        progress_at = time.monotonic()
        asked = 1
        while True:
            if span.done and landed >= span.total:
                landed = await self._count(span)  # once more: what was counted may be gone
                if landed >= span.total:
                    break
            settled = time.monotonic() - progress_at > self.request.settle_s
            if span.done and settled and asked <= MAX_REASKS:
                # Sent and acknowledged by the broker, yet missing: lost on the way (a broker
                # restart drops what it took for a shared subscription not yet restored).
                self.say(f"{span.total - landed} of {span.total} records missing after the "
                         f"gateway said done; asking again ({asked} of {MAX_REASKS})")  # fmt: skip
                asked += 1
                span, progress_at = Span.of(await self._ask()), time.monotonic()
            reply = await self._reply(POLL_S)
            if reply is not None:
                span, progress_at = answered(span, reply), time.monotonic()
            count = await self._count(span)
            if count != landed:
                landed, progress_at = count, time.monotonic()
                self.say(f"landed {landed} of {span.total}")
            if time.monotonic() - progress_at > self.request.wait_s:
                raise FetchFailed(
                    f"{landed} of {span.total} records landed, then nothing for "
                    f"{self.request.wait_s:g} s (gateway said done: {span.done}; are receivers "
                    "running? `appliance-receiver dead-letters` shows refused parts); run the "
                    "same command again: what landed is not duplicated",
                    EXIT_NOT_LANDED,
                )
        took = time.monotonic() - started
        self.say(f"done: {landed} records of {self.request.asset} in the database "
                 f"({max(0, landed - before)} new) after {took:.1f} s")  # fmt: skip
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

    async def _count(self, span: Span) -> int:
        r = self.request
        return await count_records(self.database, r.gateway, r.asset, r.since, r.until,
                                   span.first_seq, span.last_seq)  # fmt: skip


@dataclass(frozen=True)
class Span:
    """What the gateway said it sends: how many records, their seqs, whether all went."""

    total: int
    first_seq: int
    last_seq: int
    done: bool

    @classmethod
    def of(cls, outcome: dict[str, Any]) -> Span:
        return cls(int(outcome.get("records", 0)), int(outcome.get("first_seq", 0)),
                   int(outcome.get("last_seq", 0)), outcome.get("state") == "done")  # fmt: skip


def answered(span: Span, reply: Reply) -> Span:
    """The span after a later answer: done (with what was sent: fewer if rows were evicted
    meanwhile), or FetchFailed when the gateway gave up."""
    outcome = reply.outcome
    if outcome.get("accepted") is not True:
        raise FetchFailed(f"gateway {reply.gateway}: {outcome.get('message')}", EXIT_REFUSED)
    if outcome.get("state") != "done":
        return span
    return Span(int(outcome.get("sent", span.total)), span.first_seq, span.last_seq, True)


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
