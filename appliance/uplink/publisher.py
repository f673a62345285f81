"""The store-and-forward publisher: the one task that owns the MQTT link (aiomqtt).

Connection: TLS (CA file, optional client certificate), username/password, a persistent session
(clean_session False, client id = gateway id) and a retained last will "offline" on the status
topic. On connect it publishes a retained "online" status and subscribes to its ack topic (QoS 1).

Sending (appliance/uplink/PROTOCOL.md): the outbox leaves as ranges (lo, hi] carrying every record
still stored in that span, one QoS 1 message per (kind, asset), at most max_records_per_message
records and about max_message_bytes per range, max_in_flight messages awaiting their PUBACK.
Before its first range a connection waits briefly for the retained ack (first_ack_wait_s) and,
when the acknowledged seq A is above 0, declares the gap (0, A]. A retained ack above the store's
last seq means the store was replaced: its undelivered rows are renumbered above the ack first
(Delivery.renumber_above), so they do not collide with records the receiver already holds.

Live first: at connect the live cursor starts max_records_per_message seqs before the last one, so
the newest records go at once; new records follow as the store writer signals them (or every
poll_s). The backlog, (acknowledged seq, live start], is replayed oldest first at
replay_records_per_s, interleaved with the live ranges.

Acknowledgement: ack = "receiver" marks rows delivered (acknowledge) only when the receiver's
retained ack says it committed them; when that ack stops moving for ack_timeout_s while records
are outstanding (a receiver or broker that lost them), everything unacknowledged is sent again (the
receiver drops duplicates) and the timeout doubles until the ack moves. A receiver announces its
acks when it (re)subscribes: the same ack again after such a fruitless resend means one came back
without what was sent meanwhile, and everything is sent again at once. ack = "broker" marks a
range delivered once the broker acknowledged every part of it and of every range before it: this
survives our crashes but not a broker or receiver that loses messages (PROTOCOL.md).

Failures: any error ends the connection; the next attempt follows exponential backoff with jitter
(backoff_initial_s doubling up to backoff_max_s, reset after a connection that lasted
stable_after_s). The reason is logged once per change (uplink_down) and shown on the status. This
task is the only place that retries the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiomqtt
import structlog
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from appliance.errors import StoreError
from appliance.status import UplinkStatus
from appliance.store import Delivery, OutboxRange, OutboxStats
from appliance.uplink.commands import CommandHandler, answer, command_topic, reply_topic
from appliance.uplink.errors import SchemaError, UplinkError
from appliance.uplink.schema import (
    OFFLINE,
    ONLINE,
    ack_topic,
    decode_ack,
    encode_part,
    encode_status,
    split_range,
    status_topic,
)
from appliance.uplink.settings import UplinkSettings

log = structlog.get_logger(__name__)

BAD_CREDENTIALS = {4: "bad user name or password", 134: "bad user name or password"}
NOT_AUTHORISED = {5, 135}
OFFLINE_PUBLISH_TIMEOUT_S = 2.0
CUT_MARGIN = 0.9
"""A range cut for size keeps this share of the estimated fit (JSON size is not linear)."""

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Prepared:
    """A range read from the store and encoded: one (topic, payload) per part."""

    lo: int
    hi: int
    records: int
    messages: list[tuple[str, bytes]]


@dataclass
class RangeInFlight:
    lo: int
    hi: int
    records: int
    parts_left: int


@dataclass
class Cursors:
    """Where each sender is, for one connection. Seqs up to `acked` are delivered; the live
    sender has sent (or is sending) up to `live`; the backlog sender has (backlog, backlog_end]
    still to send. A resend (rewind) moves the backlog back to `acked` and bumps `epoch`, so a
    backlog range that was in progress does not move the cursor forward again."""

    acked: int
    live: int
    backlog: int
    backlog_end: int
    epoch: int = 0

    @property
    def outstanding(self) -> bool:
        return self.live > self.acked

    def acknowledged(self, seq: int) -> None:
        self.acked = max(self.acked, seq)
        if self.backlog < self.acked:
            self.backlog = min(self.acked, self.backlog_end)

    def backlog_sent(self, hi: int, epoch: int) -> None:
        if epoch == self.epoch:
            self.backlog = max(self.backlog, hi)

    def rewind(self) -> None:
        self.backlog = self.acked
        self.backlog_end = max(self.backlog_end, self.live)
        self.epoch += 1


class Pacer:
    """Spaces records out at `rate` per second: wait() before a range, spend(n) after reading."""

    def __init__(self, rate: float, sleep: Sleep = asyncio.sleep) -> None:
        self._rate = rate
        self._sleep = sleep
        self._next_at = time.monotonic()

    async def wait(self) -> None:
        delay = self._next_at - time.monotonic()
        if delay > 0:
            await self._sleep(delay)

    def spend(self, records: int) -> None:
        self._next_at = max(self._next_at, time.monotonic()) + records / self._rate


def backoff_delay(failures: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with (equal) jitter: between half and all of initial * 2^failures,
    capped at max_s."""
    ceiling = min(max_s, initial_s * 2 ** min(failures, 32))
    return rng.uniform(ceiling / 2, ceiling)


class Uplink:
    """Run with `await uplink.run()` until cancelled; `status` is its entry on the status board.

    `new_data` is set by whoever stores records (the composition root wires the store writer to
    it); without it new records are found by polling every `settings.poll_s`. `pace` is how the
    backlog replay waits for its turn (tests hold it back). `commands` answers what arrives on
    the gateway's command topic (appliance/uplink/commands.py; None: not subscribed);
    `extra_status` adds fields to the retained online status, which is published again after
    `status_changed()`.
    """

    def __init__(
        self,
        settings: UplinkSettings,
        delivery: Delivery,
        *,
        new_data: asyncio.Event | None = None,
        rng: random.Random | None = None,
        pace: Sleep = asyncio.sleep,
        commands: CommandHandler | None = None,
        extra_status: Callable[[], Mapping[str, object]] | None = None,
    ) -> None:
        self.settings = settings
        self.commands = commands
        self._extra_status = extra_status
        self.status_change = asyncio.Event()
        self.status = UplinkStatus(broker=settings.broker.url, ack_mode=settings.ack)
        self._delivery = delivery
        self._new_data = new_data or asyncio.Event()
        self._rng = rng or random.Random()
        self.pace = pace
        self._started_utc = time.time()
        self._status_topic = status_topic(settings.prefix, settings.gateway)
        self._logged_reason: str | None = None

    async def run(self) -> None:
        log.info("uplink_started", broker=self.status.broker, ack=self.settings.ack)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._refresh_status_forever())
                group.create_task(self._connect_forever())
        finally:
            self.status.connected = False
            self.status.state = "stopped"
            with contextlib.suppress(StoreError):
                await self.refresh_status()  # the final summary shows what is left to send
            log.info(
                "uplink_stopped",
                acked_seq=self.status.acked_seq,
                backlog_records=self.status.backlog_records,
            )

    # --- the link, with its retry policy --------------------------------------------------

    async def _connect_forever(self) -> None:
        failures = 0
        while True:
            connection = Connection(self)
            try:
                await connection.run()
                reason = "the broker closed the connection"
            except Exception as exc:  # whatever ends a connection: try again later
                reason = self._reason(innermost(exc), connection)
            up_for = connection.up_for_s()
            if up_for is not None and up_for >= self.settings.stable_after_s:
                failures = 0
            delay = backoff_delay(
                failures, self.settings.backoff_initial_s, self.settings.backoff_max_s, self._rng
            )
            failures += 1
            self._went_down(reason, delay, connected=up_for is not None)
            await asyncio.sleep(delay)

    def _reason(self, exc: BaseException, connection: Connection) -> str:
        reason = describe_failure(exc, self.settings, connected=connection.up_for_s() is not None)
        known = (aiomqtt.MqttError, OSError, UplinkError, StoreError, ssl.SSLError)
        if not isinstance(exc, known) and reason != self._logged_reason:
            log.error("uplink_failed_unexpectedly", reason=reason, exc_info=exc)
        return reason

    def _went_down(self, reason: str, delay: float, *, connected: bool) -> None:
        status = self.status
        status.connected = False
        status.connected_since_utc = None
        status.last_error = reason
        status.last_error_utc = time.time()
        status.state = f"reconnecting in {delay:.1f} s: {reason}"
        if not connected:
            status.connect_failures += 1
        if reason != self._logged_reason:
            event = "uplink_connection_lost" if connected else "uplink_connect_failed"
            log.warning(event, broker=status.broker, reason=reason, retry_in_s=round(delay, 1))
            self._logged_reason = reason

    def came_up(self, acked_seq: int, backlog: int) -> None:
        status = self.status
        status.connected = True
        status.connected_since_utc = time.time()
        status.connections += 1
        status.state = "connected"
        self._logged_reason = None
        log.info(
            "uplink_connected",
            broker=status.broker,
            acked_seq=acked_seq,
            backlog_records=backlog,
            reconnects=status.reconnects,
        )

    # --- status ---------------------------------------------------------------------------

    async def _refresh_status_forever(self) -> None:
        while True:
            try:
                await self.refresh_status()
            except StoreError as exc:
                log.warning("uplink_status_unavailable", reason=str(exc))
            await asyncio.sleep(self.settings.status_every_s)

    async def refresh_status(self) -> None:
        stats = await self._delivery.outbox_stats()
        status = self.status
        status.backlog_records = stats.records
        status.backlog_oldest_utc = stats.oldest_t
        status.last_seq = stats.last_seq
        status.acked_seq = max(status.acked_seq, stats.acked_seq)
        status.acked_utc = stats.acked_at
        status.lost_before_delivery = stats.lost_before_delivery

    def online_status(self, backlog: int, acked_seq: int, last_seq: int) -> bytes:
        return encode_status(
            self.settings.gateway,
            ONLINE,
            version=self.settings.version,
            started=iso_utc(self._started_utc),
            backlog=backlog,
            acked_seq=acked_seq,
            last_seq=last_seq,
            **(self._extra_status() if self._extra_status is not None else {}),
        )

    def status_changed(self) -> None:
        """Publish the online status again (e.g. another model became active)."""
        self.status_change.set()

    def note_acked(self, acked_seq: int) -> None:
        if acked_seq > self.status.acked_seq:
            self.status.acked_seq = acked_seq
            self.status.acked_utc = time.time()

    def offline_status(self) -> bytes:
        return encode_status(self.settings.gateway, OFFLINE, version=self.settings.version)

    # --- for Connection -------------------------------------------------------------------

    @property
    def delivery(self) -> Delivery:
        return self._delivery

    @property
    def new_data(self) -> asyncio.Event:
        return self._new_data

    @property
    def status_topic(self) -> str:
        return self._status_topic


class Connection:
    """One connection's life: connect, send live and backlog, handle acks; raises when it ends."""

    def __init__(self, uplink: Uplink) -> None:
        self._uplink = uplink
        self._settings = uplink.settings
        self._delivery = uplink.delivery
        self._status = uplink.status
        self._ack_topic = ack_topic(self._settings.prefix, self._settings.gateway)
        self._command_topic = command_topic(self._settings.prefix, self._settings.gateway)
        self._connected_at: float | None = None
        self._window = asyncio.Semaphore(self._settings.max_in_flight)
        self._live_started = asyncio.Event()
        self._first_ack = asyncio.Event()
        self._rewound = asyncio.Event()
        self._completed: dict[int, int] = {}
        self._waiting_since: float | None = None
        self._ack_timeout_s = self._settings.ack_timeout_s
        self._warned_ack_beyond = False
        self.cursors = Cursors(0, 0, 0, 0)

    def up_for_s(self) -> float | None:
        """Seconds this connection has been (or was) up; None if it never connected."""
        return None if self._connected_at is None else time.monotonic() - self._connected_at

    async def run(self) -> None:
        s = self._settings
        tls = await asyncio.to_thread(tls_context, s) if s.broker.tls else None
        self._status.state = f"connecting to {s.broker.url}"
        client = aiomqtt.Client(
            s.broker.host,
            s.broker.port,
            username=s.username,
            password=s.password,
            identifier=s.gateway,
            clean_session=False,
            will=aiomqtt.Will(
                self._uplink.status_topic, self._uplink.offline_status(), qos=1, retain=True
            ),
            keepalive=s.keepalive_s,
            timeout=s.connect_timeout_s,
            tls_context=tls,
            max_inflight_messages=s.max_in_flight,
        )
        # aiomqtt warns (stdlib logging) above this many pending calls: our window is by design.
        client.pending_calls_threshold = s.max_in_flight + 2
        async with client:
            self._connected_at = time.monotonic()
            try:
                await self._serve(client)
            except asyncio.CancelledError:
                await self._say_offline(client)
                raise

    async def _serve(self, client: aiomqtt.Client) -> None:
        s = self._settings
        stats = await self._publish_status(client)
        if s.ack == "receiver":
            await self._subscribe(client, self._ack_topic)
        if self._uplink.commands is not None:
            await self._subscribe(client, self._command_topic)
        self._uplink.came_up(stats.acked_seq, stats.records)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._receive(client, group))
            group.create_task(self._start_sending(client, group))
            group.create_task(self._publish_status_on_change(client))

    async def _publish_status(self, client: aiomqtt.Client) -> OutboxStats:
        self._uplink.status_change.clear()
        stats = await self._delivery.outbox_stats()
        await client.publish(
            self._uplink.status_topic,
            self._uplink.online_status(stats.records, stats.acked_seq, stats.last_seq),
            qos=1,
            retain=True,
        )
        return stats

    async def _publish_status_on_change(self, client: aiomqtt.Client) -> None:
        while True:
            await self._uplink.status_change.wait()
            await self._publish_status(client)

    async def _subscribe(self, client: aiomqtt.Client, topic: str) -> None:
        """Mosquitto answers a subscription its ACL denies with a failure code, or by dropping
        the connection: either way, say what is most likely wrong."""
        s = self._settings
        refusal = (
            f"broker refused our subscription to {topic} (does its ACL let user "
            f"{s.username} read it? with the shipped ACL the username must be the gateway id)"
        )
        try:
            granted = await client.subscribe(topic, qos=1)
        except aiomqtt.MqttError as exc:
            raise UplinkError(f"{refusal}: {exc}") from exc
        if any(refused(code) for code in granted):
            raise UplinkError(refusal)

    async def _start_sending(self, client: aiomqtt.Client, group: asyncio.TaskGroup) -> None:
        s = self._settings
        if s.ack == "receiver":
            # The retained ack comes right after SUBACK; without one this is a new gateway.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(s.first_ack_wait_s):  # not wait_for: see serial_link
                    await self._first_ack.wait()
        stats = await self._delivery.outbox_stats()
        live_start = max(stats.acked_seq, stats.last_seq - s.max_records_per_message)
        self.cursors = Cursors(stats.acked_seq, live_start, stats.acked_seq, live_start)
        if stats.acked_seq > 0:
            gap = OutboxRange(0, stats.acked_seq, [])
            await self._send(client, group, encode_range(gap, s.gateway, s.prefix, 1))
        group.create_task(self._send_live(client, group))
        group.create_task(self._send_backlog(client, group))
        if s.ack == "receiver":
            group.create_task(self._watch_acks())

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """A clean stop says offline itself (the will only covers unclean ones)."""
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(
                self._uplink.status_topic,
                self._uplink.offline_status(),
                qos=1,
                retain=True,
                timeout=OFFLINE_PUBLISH_TIMEOUT_S,
            )

    # --- acknowledgements -----------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client, group: asyncio.TaskGroup) -> None:
        """Handle acks and commands; also notices a lost connection (the iterator raises
        MqttError)."""
        async for message in client.messages:
            if message.topic.matches(self._command_topic):
                group.create_task(self._command(client, bytes(message.payload)))
                continue
            if not message.topic.matches(self._ack_topic):
                continue
            try:
                ack = decode_ack(bytes(message.payload), self._settings.gateway)
            except SchemaError as exc:
                log.warning("uplink_ack_refused", reason=str(exc))
                continue
            if self._first_ack.is_set():
                await self._receiver_acknowledged(ack.seq)
            else:
                await self._first_ack_of_connection(ack.seq)
                self._first_ack.set()

    async def _command(self, client: aiomqtt.Client, payload: bytes) -> None:
        """Answer one command on the reply topic (its own task: an install's canary must not
        hold up the acks)."""
        handler = self._uplink.commands
        if handler is None:
            return
        reply = await answer(payload, handler, self._settings.gateway)
        if reply is not None:
            topic = reply_topic(self._settings.prefix, self._settings.gateway)
            await client.publish(topic, reply, qos=1)

    async def _first_ack_of_connection(self, seq: int) -> None:
        """The retained ack, before anything is sent: take it, or renumber a replaced store."""
        try:
            last_seq = await self._delivery.latest_seq()
            if seq <= last_seq:
                self._uplink.note_acked(await self._delivery.acknowledge(seq))
                return
            moved = await self._delivery.renumber_above(seq)
            self._uplink.note_acked(seq)
        except (StoreError, ValueError) as exc:
            log.warning("uplink_acknowledge_failed", seq=seq, reason=str(exc))
            return
        log.warning(
            "uplink_store_behind_receiver",
            acked_seq=seq,
            last_seq=last_seq,
            renumbered=moved,
            reason="the receiver acknowledges seqs this store never handed out (store replaced "
            "or restored from a backup): undelivered records were renumbered above them",
        )

    async def _receiver_acknowledged(self, seq: int) -> None:
        if seq == self.cursors.acked and self._resent_in_vain():
            # A receiver announces its acks when it (re)subscribes: one is back, without what
            # was sent while it was away (a clean session): no need to wait out the timeout.
            self._resend(
                f"the receiver is back and acknowledges seq {seq} again",
                next_timeout_s=self._settings.ack_timeout_s,
            )
            return
        if seq <= self.cursors.acked:
            return
        if seq > self.cursors.live and seq > await self._delivery.latest_seq():
            self._refuse_ack_beyond(seq)
            return
        await self._acknowledge(seq)

    def _refuse_ack_beyond(self, seq: int) -> None:
        """An ack, later in a connection, for seqs this store never handed out: another gateway
        uses our id. Acknowledging would mark unsent rows as delivered: refuse."""
        if not self._warned_ack_beyond:
            log.error(
                "uplink_ack_beyond_last_seq",
                acked_seq=seq,
                reason="the receiver acknowledges seqs this gateway never handed out (does "
                "another gateway use the same id?); ignored",
            )
            self._warned_ack_beyond = True
        self._status.last_error = f"receiver acknowledges seq {seq}, beyond our last seq"
        self._status.last_error_utc = time.time()

    async def _acknowledge(self, seq: int) -> None:
        """Mark rows up to `seq` delivered; a failing store is logged, the next ack retries."""
        self.cursors.acknowledged(seq)
        self._ack_timeout_s = self._settings.ack_timeout_s
        self._waiting_since = time.monotonic() if self.cursors.outstanding else None
        try:
            acked = await self._delivery.acknowledge(seq)
        except (StoreError, ValueError) as exc:
            log.warning("uplink_acknowledge_failed", seq=seq, reason=str(exc))
            return
        self._uplink.note_acked(acked)

    async def _watch_acks(self) -> None:
        """ack = "receiver": resend what is unacknowledged when the ack stops moving."""
        while True:
            await asyncio.sleep(self._ack_timeout_s / 4)
            since = self._waiting_since
            if since is None or not self.cursors.outstanding:
                continue
            waited = time.monotonic() - since
            if waited < self._ack_timeout_s:
                continue
            self._resend(
                f"no acknowledgement for {waited:.0f} s (receiver down, or does the broker's "
                "ACL drop our messages?)",
                next_timeout_s=min(self._ack_timeout_s * 2, self._settings.ack_timeout_max_s),
            )

    def _resent_in_vain(self) -> bool:
        """Records are outstanding and at least one timed resend brought no progress."""
        return self.cursors.outstanding and self._ack_timeout_s > self._settings.ack_timeout_s

    def _resend(self, reason: str, *, next_timeout_s: float) -> None:
        """Send everything unacknowledged again (the receiver drops duplicates)."""
        log.warning(
            "uplink_resending",
            reason=reason,
            acked_seq=self.cursors.acked,
            sent_up_to=self.cursors.live,
        )
        self.cursors.rewind()
        self._status.resends += 1
        self._waiting_since = time.monotonic()
        self._ack_timeout_s = next_timeout_s
        self._rewound.set()

    async def _broker_acknowledged(self, flight: RangeInFlight) -> None:
        """ack = "broker": the acknowledged seq moves over every contiguous PUBACKed range."""
        if flight.hi <= self.cursors.acked:
            return  # the gap (0, acked] declared at connect
        self._completed[flight.lo] = flight.hi
        acked = advance_chain(self.cursors.acked, self._completed)
        if acked > self.cursors.acked:
            await self._acknowledge(acked)

    # --- sending --------------------------------------------------------------------------

    async def _send_live(self, client: aiomqtt.Client, group: asyncio.TaskGroup) -> None:
        s = self._settings
        new_data = self._uplink.new_data
        while True:
            new_data.clear()  # before reading: a record stored meanwhile sets it again
            while prepared := await self._prepare(self.cursors.live, s.max_records_per_message):
                await self._send(client, group, prepared)
                self.cursors.live = prepared.hi
            self._live_started.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(s.poll_s):  # not wait_for: see serial_link._read
                    await new_data.wait()

    async def _send_backlog(self, client: aiomqtt.Client, group: asyncio.TaskGroup) -> None:
        s = self._settings
        pacer = Pacer(s.replay_records_per_s, self._uplink.pace)
        await self._live_started.wait()
        while True:
            while self.cursors.backlog < self.cursors.backlog_end:
                epoch = self.cursors.epoch
                await pacer.wait()
                prepared = await self._prepare(
                    self.cursors.backlog, s.max_records_per_message, self.cursors.backlog_end
                )
                if prepared is None:
                    break
                pacer.spend(prepared.records)
                await self._send(client, group, prepared)
                self.cursors.backlog_sent(prepared.hi, epoch)
            await self._rewound.wait()
            self._rewound.clear()

    async def _prepare(self, after: int, limit: int, up_to: int | None = None) -> Prepared | None:
        found = await self._delivery.outbox_range(after, limit, up_to)
        if found is None:
            return None
        # JSON for hundreds of records takes a while: keep it off the event loop.
        return await asyncio.to_thread(
            encode_range,
            found,
            self._settings.gateway,
            self._settings.prefix,
            self._settings.max_message_bytes,
        )

    async def _send(
        self, client: aiomqtt.Client, group: asyncio.TaskGroup, prepared: Prepared
    ) -> None:
        """Hand every part to the client (waiting for room in the in-flight window); the
        PUBACKs are awaited by one task per part."""
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        flight = RangeInFlight(prepared.lo, prepared.hi, prepared.records, len(prepared.messages))
        for topic, payload in prepared.messages:
            await self._window.acquire()
            group.create_task(self._publish(client, topic, payload, flight))

    async def _publish(
        self, client: aiomqtt.Client, topic: str, payload: bytes, flight: RangeInFlight
    ) -> None:
        try:
            await client.publish(topic, payload, qos=1, timeout=self._settings.publish_timeout_s)
        finally:
            self._window.release()
        status = self._status
        status.published_messages += 1
        status.published_bytes += len(payload)
        flight.parts_left -= 1
        if flight.parts_left == 0:
            status.published_ranges += 1
            status.published_records += flight.records
            if self._settings.ack == "broker":
                await self._broker_acknowledged(flight)


def refused(code: int | ReasonCode) -> bool:
    """A SUBACK return code that refuses the subscription (0x80 and above)."""
    return code.is_failure if isinstance(code, ReasonCode) else code >= 0x80


def advance_chain(acked: int, completed: dict[int, int]) -> int:
    """Follow completed ranges (lo -> hi) from `acked` while they join up; the ranges passed
    are removed from `completed`. Ranges chain exactly: each starts where another ended."""
    while acked in completed:
        acked = completed.pop(acked)
    return acked


def encode_range(found: OutboxRange, gateway: str, prefix: str, max_bytes: int) -> Prepared:
    """Split and encode a range; while it is over `max_bytes` and has more than one record, keep
    a shorter prefix of its records (the range then ends at the last record kept)."""
    records = found.records
    hi = found.hi
    while True:
        parts = split_range(gateway, found.lo, hi, records)
        messages = [(part.topic(prefix), encode_part(part)) for part in parts]
        size = sum(len(payload) for _, payload in messages)
        if size <= max_bytes or len(records) <= 1:
            return Prepared(found.lo, hi, len(records), messages)
        keep = int(len(records) * max_bytes / size * CUT_MARGIN)
        records = records[: max(1, min(keep, len(records) - 1))]
        hi = records[-1][0]


def tls_context(settings: UplinkSettings) -> ssl.SSLContext:
    """Verify the broker against ca_file (or the system's CAs); present client_cert if set."""
    try:
        context = ssl.create_default_context(
            cafile=None if settings.ca_file is None else str(settings.ca_file)
        )
    except (OSError, ssl.SSLError) as exc:
        raise UplinkError(f"TLS: cannot load ca_file {settings.ca_file}: {exc}") from exc
    if settings.client_cert is not None:
        try:
            context.load_cert_chain(settings.client_cert, settings.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise UplinkError(
                f"TLS: cannot load client_cert {settings.client_cert}"
                + (f" / client_key {settings.client_key}" if settings.client_key else "")
                + f": {exc}"
            ) from exc
    return context


VERIFY_FAILED = re.compile(r"certificate verify failed: ([^(]*)")


def describe_failure(exc: BaseException, settings: UplinkSettings, *, connected: bool) -> str:
    """One clear sentence for why the link failed (logged and shown on the status)."""
    broker = settings.broker
    where = f"{broker.host}:{broker.port}"
    if isinstance(exc, MqttConnectError):
        rc = exc.rc
        code = rc.value if isinstance(rc, ReasonCode) else rc
        if code in NOT_AUTHORISED:
            return "broker refused our credentials (not authorised)"
        if code in BAD_CREDENTIALS:
            return f"broker refused our credentials ({BAD_CREDENTIALS[code]})"
        return f"broker refused the connection: {exc}"
    text = str(exc)
    if isinstance(exc, UplinkError | StoreError):
        return text
    verify = VERIFY_FAILED.search(text)
    if verify:
        return f"TLS: certificate verify failed for host {broker.host}: {verify.group(1).strip()}"
    if "[SSL" in text or isinstance(exc, ssl.SSLError):
        return f"TLS: handshake with {where} failed: {text}"
    if "Connection refused" in text:
        return f"connection refused by {where} (is the broker running?)"
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return f"cannot resolve broker host {broker.host}"
    if connected:
        if exc.__cause__ is not None and "during message iteration" in text:
            text = str(exc.__cause__) or type(exc.__cause__).__name__  # why it disconnected
        if "timed out" in text:
            return f"broker {where} stopped answering (timed out)"
        return f"connection to {where} lost ({text or type(exc).__name__})"
    if "timed out" in text:
        return f"timed out connecting to {where}"
    return f"cannot connect to {where}: {text or type(exc).__name__}"


def innermost(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups; cancellations are skipped."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = [innermost(inner) for inner in exc.exceptions]
        real = [leaf for leaf in leaves if not isinstance(leaf, asyncio.CancelledError)]
        return (real or leaves)[0]
    return exc


def iso_utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


__all__ = [
    "Uplink",
    "UplinkSettings",
    "advance_chain",
    "backoff_delay",
    "describe_failure",
    "encode_range",
]
