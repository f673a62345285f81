"""One receiver instance: MQTT shared subscription in, database transactions, acks out.

Each data message is decoded and committed (the messages waiting at once in one transaction,
retried with backoff while the database fails transiently), and only then acknowledged to the
broker (a manual PUBACK: a receiver that dies before committing gets the message again). A
message that can never be stored (it does not decode, or the database refuses it for good) is
refused: counted by reason, logged with the topic, kept in the dead_letters table and, if its
header was valid, accounted in its range so the gateway's ack moves past it (PROTOCOL.md,
"Refused parts"); then it is PUBACKed like any other, so the broker does not redeliver it. Acks
for the gateways go out through a small outbox that keeps only the newest per gateway, so a burst
of messages costs one publish per gateway; on every (re)subscription each known gateway's ack is
published again and announced (PROTOCOL.md). The connection is retried with exponential backoff
and jitter; this task owns that policy.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiomqtt
import structlog
from paho.mqtt.reasoncodes import ReasonCode

from appliance.net.backoff import Backoff
from appliance.net.cancellation import raise_if_cancelling
from appliance.net.mqtt import describe_failure, innermost
from appliance.uplink.schema import (
    Part,
    PartHeader,
    RecordsError,
    SchemaBook,
    SchemaError,
    UnknownSchemas,
    ack_topic,
    decode_part,
    encode_ack,
    parse_data_topic,
    shared_subscription,
)
from appliance.uplink.schema.fetched import (
    FETCHED_LEVEL,
    data_topic_of_fetched,
    fetched_subscription,
)
from receiver.db import Database, IngestResult
from receiver.db.database import Refusal
from receiver.db.rows import DeadLetter
from receiver.errors import DatabaseError, ReceiverError
from receiver.settings import ReceiverSettings
from receiver.stats import ReceiverStats

log = structlog.get_logger(__name__)

SUBSCRIBE_FAILED = 0x80
DB_RETRY_MIN_S = 0.1
MAX_BATCH = 64
"""Messages committed in one transaction at most (the broker lets 100 be unacknowledged)."""
T = TypeVar("T")


class AckOutbox:
    """The newest ack per gateway not yet published."""

    def __init__(self) -> None:
        self._pending: dict[str, int] = {}
        self._ready = asyncio.Event()
        self.schema_requests: dict[str, tuple[int, frozenset[bytes]]] = {}
        self.announcements: dict[str, int] = {}

    def put(self, gateway: str, seq: int) -> None:
        if seq >= self._pending.get(gateway, -1):
            self._pending[gateway] = seq
            self._ready.set()

    def ask_for_schemas(self, gateway: str, seq: int, refs: frozenset[bytes]) -> None:
        """Ask the gateway (once, not retained) for the names of these feature schemas."""
        _, asked = self.schema_requests.get(gateway, (seq, frozenset()))
        self.schema_requests[gateway] = (seq, asked | refs)
        self._ready.set()

    def announce(self, acks: dict[str, int]) -> None:
        """Each gateway's ack, retained as usual, then once more as an announcement (not
        retained): this receiver has just subscribed."""
        for gateway, seq in acks.items():
            self.put(gateway, seq)
        self.announcements.update(acks)

    async def take(self) -> dict[str, int]:
        await self._ready.wait()
        self._ready.clear()
        taken, self._pending = self._pending, {}
        return taken


class Receiver:
    """`await run()` until cancelled. `subscribed` is set while the subscription stands."""

    def __init__(
        self,
        settings: ReceiverSettings,
        database: Database,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.database = database
        self.stats = ReceiverStats()
        self.subscribed = asyncio.Event()
        self.client_id = settings.effective_client_id
        self._acks = AckOutbox()
        self._clock = clock
        self._rng = random.Random()  # for every backoff (seeding one per message takes ~20 µs)
        self._schemas = SchemaBook()
        self.on_alerts: Callable[[Part], None] | None = None
        """Called with each alerts part that brought new records (the webhooks; never blocks)."""

    async def run(self) -> None:
        """Connect, subscribe and ingest; reconnect after any broker or network failure."""
        backoff = Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s, self._rng)
        if not self.settings.persistent_session:
            log.info("receiver_clean_session", client_id=self.client_id,
                     hint="pass --client-id for a persistent session")  # fmt: skip
        while True:
            connects = self.stats.connects
            try:
                await self._session(backoff)
                reason = "the broker ended the session"
            except* aiomqtt.MqttError as failures:
                reason = self._describe(innermost(failures), self.stats.connects > connects)
            raise_if_cancelling()
            self.stats.disconnects += 1
            delay = backoff.next_delay()
            log.warning("receiver_disconnected", broker=self.settings.broker.redacted(),
                        reason=reason, retry_in_s=round(delay, 2))  # fmt: skip
            await asyncio.sleep(delay)

    def _describe(self, exc: BaseException, connected: bool) -> str:
        """Why the connection failed or was lost, for the log; a certificate the broker was not
        trusted by says which option to look at."""
        broker = self.settings.broker
        reason = describe_failure(exc, broker.host, broker.port, connected=connected)
        return f"{reason} (check --ca)" if reason.startswith("TLS:") else reason

    async def _session(self, backoff: Backoff) -> None:
        client = self._make_client()
        # PUBACK only after the transaction committed (paho's manual ack; aiomqtt has no API).
        client._client.manual_ack_set(True)
        async with client:
            for topic in (
                shared_subscription(self.settings.group, self.settings.prefix),
                fetched_subscription(self.settings.group, self.settings.prefix),
            ):
                granted = await client.subscribe(topic, qos=1)
                if subscription_refused(granted):
                    raise ReceiverError(f"the broker refused the subscription {topic} (ACL?)")
            self.stats.connects += 1
            backoff.reset()
            log.info("receiver_subscribed", topic=topic, client_id=self.client_id,
                     broker=self.settings.broker.redacted())  # fmt: skip
            self.subscribed.set()
            try:
                await self._announce_acks()
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._publish_acks(client))
                    await self._consume(client)
            finally:
                self.subscribed.clear()

    async def _announce_acks(self) -> None:
        """Publish every known gateway's ack again, and announce it (PROTOCOL.md): a gateway
        that sent while no receiver was subscribed (mosquitto forgets shared subscriptions when
        it restarts, and drops what matches none) sends it again at once instead of waiting out
        its ack timeout."""
        try:
            acks = await self.database.acks()
        except DatabaseError as exc:
            log.warning("receiver_acks_not_announced", reason=str(exc))
            return
        self._acks.announce(acks)

    def _make_client(self) -> aiomqtt.Client:
        settings = self.settings
        tls_context = None
        if settings.broker.tls:
            cafile = str(settings.ca_path) if settings.ca_path else None
            tls_context = ssl.create_default_context(cafile=cafile)
        return aiomqtt.Client(
            settings.broker.host,
            settings.broker.port,
            username=settings.broker.username,
            password=settings.broker.password,
            identifier=self.client_id,
            clean_session=not settings.persistent_session,
            keepalive=settings.keepalive_s,
            tls_context=tls_context,
        )

    async def _consume(self, client: aiomqtt.Client) -> None:
        """Take the messages waiting (up to MAX_BATCH) at once: one transaction commits them,
        then each is PUBACKed, in the order received."""
        async for first in client.messages:
            raise_if_cancelling()
            batch = [first]
            while len(batch) < MAX_BATCH and len(client.messages) > 0:
                batch.append(await anext(client.messages))
            received = [(m.topic.value, payload_bytes(m.payload)) for m in batch]
            try:
                await self.handle_batch(received)
            except Exception:  # a bug of ours; one message must not end the fleet's receiver
                self.stats.rejected["internal_error"] += len(batch)
                log.exception("receiver_handle_failed", topics=sorted({t for t, _ in received}),
                              messages=len(batch))  # fmt: skip
            for message in batch:
                if message.qos > 0:
                    client._client.ack(message.mid, message.qos)

    async def handle(self, topic: str, payload: bytes) -> IngestResult | None:
        """Decode and commit one data message; None if it was refused."""
        return (await self.handle_batch([(topic, payload)]))[0]

    async def handle_batch(self, messages: list[tuple[str, bytes]]) -> list[IngestResult | None]:
        """Decode (topic, payload) messages and commit the parts in one transaction; per
        message its result, None if it was refused. Should the database refuse the batch for
        good, each part is committed (or refused) on its own, so one bad part refuses only
        itself."""
        self.stats.messages += len(messages)
        parts: dict[int, Part] = {}
        fetched: dict[int, Part] = {}
        for index, (topic, payload) in enumerate(messages):
            data_topic = data_topic_of_fetched(self.settings.prefix, topic)
            part = await self._decode(topic, payload, data_topic)
            if part is not None:
                (parts if data_topic is None else fetched)[index] = part
        results: list[IngestResult | None] = [None] * len(messages)
        if fetched:
            await self._commit_fetched(messages, fetched, results)
        if len(parts) > 1:
            try:
                committed = await self._retrying(
                    lambda: self.database.ingest_many(list(parts.values()), self._clock())
                )
            except DatabaseError:
                committed = None
            if committed is not None:
                for (index, part), result in zip(parts.items(), committed, strict=True):
                    results[index] = self._committed(part, result)
                return results
        for index, part in parts.items():
            results[index] = await self._commit(*messages[index], part)
        return results

    async def _decode(self, topic: str, payload: bytes, data_topic: str | None) -> Part | None:
        """The part, or None once the message is refused. A fetched part is decoded against
        `data_topic` and never accounted in a range."""
        try:
            return await self._decode_part(payload, data_topic or topic)
        except UnknownSchemas as exc:
            await self._refuse(topic, payload, exc.reason, str(exc), None)  # never accounted
            await self._ask_for_schemas(exc)
        except SchemaError as exc:
            header = exc.header if isinstance(exc, RecordsError) else None
            if data_topic is not None:
                header = None
            await self._refuse(topic, payload, exc.reason, str(exc), header)
        except Exception as exc:  # a decoder bug: refused like bad input, never fatal
            await self._refuse(topic, payload, "undecodable", describe_exception(exc), None)
        return None

    async def _commit_fetched(
        self,
        messages: list[tuple[str, bytes]],
        fetched: dict[int, Part],
        results: list[IngestResult | None],
    ) -> None:
        """Store the records of fetched parts (PROTOCOL.md, "Fetch on demand"): one transaction
        for all, or each on its own if the database refuses them for good; no ack moves."""
        batches = [fetched] if len(fetched) > 1 else []
        batches += [{index: part} for index, part in fetched.items()]
        for batch in batches:
            if any(results[index] is not None for index in batch):
                continue
            try:
                inserted = await self._retrying(self._fetched_storer(list(batch.values())))
            except DatabaseError as exc:
                if len(batch) == 1:
                    ((index, part),) = batch.items()
                    await self._refuse(*messages[index], exc.reason, str(exc), None)
                continue
            for (index, part), count in zip(batch.items(), inserted, strict=True):
                results[index] = self._fetched_committed(part, count)

    def _fetched_storer(self, parts: list[Part]) -> Callable[[], Awaitable[list[int]]]:
        return lambda: self.database.ingest_fetched(parts)

    def _fetched_committed(self, part: Part, inserted: int) -> IngestResult:
        self.stats.fetched_parts_committed += 1
        self.stats.records_inserted += inserted
        self.stats.duplicates_ignored += len(part.records) - inserted
        return IngestResult(inserted, len(part.records) - inserted, 0, False, False)

    async def _decode_part(self, payload: bytes, topic: str) -> Part:
        """decode_part with the schemas seen so far; a reference to one not seen is looked up
        in the database (another instance, or this one before a restart, stored it)."""
        max_bytes = self.settings.max_payload_bytes
        try:
            return decode_part(payload, topic, max_bytes, self._schemas)
        except UnknownSchemas as exc:
            unknown, refs = exc, exc.refs
            try:
                stored = await self._retrying(lambda: self.database.schemas_by_ref(refs))
            except DatabaseError:
                raise unknown from None
            for names in stored:
                self._schemas.learn(names)
            return decode_part(payload, topic, max_bytes, self._schemas)

    async def _ask_for_schemas(self, exc: UnknownSchemas) -> None:
        """Tell the gateway which schemas to send the names of (PROTOCOL.md, "Schema
        references"): it then sends everything unacknowledged again, names included."""
        if exc.header is None:
            return
        gateway = exc.header.gateway
        try:
            seq = await self.database.acked_seq(gateway)
        except DatabaseError:
            seq = None
        self.stats.schema_requests += 1
        self._acks.ask_for_schemas(gateway, seq or 0, exc.refs)

    async def _commit(self, topic: str, payload: bytes, part: Part) -> IngestResult | None:
        """Commit one part in its own transaction; None if the database refused it."""
        try:
            result = await self._retrying(lambda: self.database.ingest(part, self._clock()))
        except DatabaseError as exc:
            await self._refuse(topic, payload, exc.reason, str(exc), part.header)
            return None
        return self._committed(part, result)

    def _committed(self, part: Part, result: IngestResult) -> IngestResult:
        self.stats.parts_committed += 1
        self.stats.records_inserted += result.inserted
        self.stats.duplicates_ignored += result.duplicates
        self._note_ack(part.gateway, result)
        if self.on_alerts is not None and part.kind == "alerts" and result.inserted:
            self.on_alerts(part)
        return result

    def _note_ack(self, gateway: str, result: IngestResult) -> None:
        ack = result.ack_to_publish
        if ack is not None:
            self._acks.put(gateway, ack)

    async def _retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run a database operation, retrying transient failures with backoff; a DatabaseError
        that is not transient is raised."""
        backoff = Backoff(DB_RETRY_MIN_S, self.settings.db_retry_max_s, self._rng)
        while True:
            try:
                return await operation()
            except DatabaseError as exc:
                if not exc.transient:
                    raise
                self.stats.db_retries += 1
                delay = backoff.next_delay()
                log.warning("receiver_db_retry", reason=str(exc), retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)

    async def _refuse(
        self, topic: str, payload: bytes, reason: str, detail: str, header: PartHeader | None
    ) -> None:
        """Count, keep and log a message that cannot be stored; account its part if it can."""
        letter = DeadLetter(gateway_of(topic), topic, payload, reason, detail, self._clock())
        try:
            refusal = await self._retrying(lambda: self.database.refuse(letter, header))
        except DatabaseError as exc:
            self.stats.rejected[reason] += 1
            self.stats.dead_letter_failures += 1
            log.error("receiver_dead_letter_failed", reason=reason, topic=topic, detail=detail,
                      error=str(exc))  # fmt: skip
            return
        self._count_refusal(refusal)
        log.warning("receiver_rejected_payload", reason=reason, topic=topic, detail=detail,
                    payload_bytes=len(payload), dead_letter_id=refusal.dead_letter_id,
                    accounted=refusal.result is not None)  # fmt: skip
        self.stats.rejected[reason] += 1  # last: whoever sees the count finds the rest done
        if refusal.result is not None and header is not None:
            self._note_ack(header.gateway, refusal.result)

    def _count_refusal(self, refusal: Refusal) -> None:
        self.stats.dead_lettered += 1
        self.stats.refused_parts_accounted += refusal.result is not None
        if refusal.dropped:
            self.stats.dead_letters_dropped += refusal.dropped
            log.warning("receiver_dead_letters_dropped", count=refusal.dropped,
                        bytes=refusal.dropped_bytes,
                        max_rows=self.database.dead_letter_limits.max_rows,
                        max_bytes=self.database.dead_letter_limits.max_bytes)  # fmt: skip

    async def _publish_schema_requests(self, client: aiomqtt.Client) -> None:
        requests = self._acks.schema_requests
        while requests:
            gateway, (seq, refs) = requests.popitem()
            payload = encode_ack(gateway, seq, refs)
            await client.publish(ack_topic(self.settings.prefix, gateway), payload, qos=1)

    async def _publish_acks(self, client: aiomqtt.Client) -> None:
        prefix = self.settings.prefix
        while True:
            raise_if_cancelling()
            pending = await self._acks.take()
            await self._publish_schema_requests(client)
            for gateway, seq in list(pending.items()):
                try:
                    await client.publish(ack_topic(prefix, gateway), encode_ack(gateway, seq),
                                         qos=1, retain=True)  # fmt: skip
                except BaseException:
                    for unsent_gateway, unsent_seq in pending.items():
                        self._acks.put(unsent_gateway, unsent_seq)
                    raise
                del pending[gateway]
                self.stats.acks_published += 1
            await self._publish_announcements(client)

    async def _publish_announcements(self, client: aiomqtt.Client) -> None:
        """After the retained acks, a few at a time (aiomqtt warns above 10 publishes waiting;
        one at a time, 2,500 PUBACK round trips would hold up new acks for seconds); what a lost
        connection leaves unsent is announced again at the next subscription."""
        announcements = self._acks.announcements
        while announcements:
            batch = [announcements.popitem() for _ in range(min(8, len(announcements)))]
            await asyncio.gather(*(
                client.publish(ack_topic(self.settings.prefix, gateway),
                               encode_ack(gateway, seq, announced=True), qos=1)
                for gateway, seq in batch
            ))  # fmt: skip


def gateway_of(topic: str) -> str | None:
    """The gateway named by a data topic (or a fetched one); None if it is not one."""
    try:
        levels = topic.rsplit("/", 4)
        if len(levels) == 5 and levels[2] == FETCHED_LEVEL:
            topic = "/".join(levels[:2] + levels[3:])
        return parse_data_topic(topic).gateway
    except SchemaError:
        return None


def describe_exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:500]}"


def subscription_refused(granted: tuple[int, ...] | list[ReasonCode]) -> bool:
    return any(
        code >= SUBSCRIBE_FAILED if isinstance(code, int) else code.is_failure for code in granted
    )


def payload_bytes(payload: object) -> bytes:
    """The message's bytes (aiomqtt gives bytes; anything else as text, never an exception)."""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode("utf-8", "backslashreplace")


async def log_stats_forever(stats: ReceiverStats, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        log.info("receiver_stats", **stats.as_dict())


async def serve(settings: ReceiverSettings, database: Database) -> None:
    """Run one instance with periodic stats, the drift analysis, the webhooks and, with
    settings.http, the fleet page and the status watch, until cancelled."""
    from receiver.webhooks.tasks import start_drift_and_webhooks

    receiver = Receiver(settings, database)
    stats_task = asyncio.create_task(log_stats_forever(receiver.stats, settings.stats_interval_s))
    cloud_tasks = start_drift_and_webhooks(receiver, settings)
    page = None
    try:
        if settings.http is not None:
            from receiver.web.server import start_http
            from receiver.web.status_watch import StatusWatch

            page = await start_http(settings.http, database)
            cloud_tasks.append(asyncio.create_task(StatusWatch(settings, database).run()))
        await receiver.run()
    finally:
        if page is not None:
            await page.cleanup()
        stats_task.cancel()
        for task in cloud_tasks:
            task.cancel()
        log.info("receiver_stopped", **receiver.stats.as_dict())
