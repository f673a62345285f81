"""One connection of the uplink (publisher.py retries them): connect with TLS and a will, say
online, subscribe to the ack and command topics, send the live and backlog ranges, take the
acknowledgements (PROTOCOL.md); raises when the connection ends. Also how the link's TLS context
is built and how a failure is put in words."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import TYPE_CHECKING, Protocol

import aiomqtt
import structlog
from paho.mqtt.reasoncodes import ReasonCode

from appliance.errors import StoreError
from appliance.net import mqtt
from appliance.store import OutboxRange, OutboxStats
from appliance.uplink.commands import answer, command_topic, reply_topic
from appliance.uplink.errors import SchemaError, UplinkError
from appliance.uplink.ranges import (
    Cursors,
    Pacer,
    Prepared,
    RangeInFlight,
    advance_chain,
    encode_range,
)
from appliance.uplink.schema import ack_topic, decode_ack
from appliance.uplink.settings import UplinkSettings

if TYPE_CHECKING:
    from appliance.uplink.publisher import Uplink

log = structlog.get_logger(__name__)

OFFLINE_PUBLISH_TIMEOUT_S = 2.0


class Publish(Protocol):
    """What an on-connect hook (Uplink.on_connected) publishes with: QoS 1 on this connection;
    returns once the broker acknowledged it, raises when the connection is lost."""

    async def __call__(self, topic: str, payload: bytes, *, retain: bool) -> None: ...


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
            group.create_task(self._start_sending(client, group))
            group.create_task(self._publish_status_on_change(client))
            if self._uplink.on_connected is not None:  # Home Assistant's discovery and states
                group.create_task(self._uplink.on_connected(self._publisher(client)))
            # Received in the group's body, not a task of its own: on Python 3.11 a group whose
            # body has ended leaves our task marked as cancelling when a task of it fails, and
            # the retry loop would take that for a stop (net/cancellation.py).
            await self._receive(client, group)

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

    def _publisher(self, client: aiomqtt.Client) -> Publish:
        async def publish(topic: str, payload: bytes, *, retain: bool) -> None:
            timeout = self._settings.publish_timeout_s
            await client.publish(topic, payload, qos=1, retain=retain, timeout=timeout)

        return publish

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


def describe_failure(exc: BaseException, settings: UplinkSettings, *, connected: bool) -> str:
    """One clear sentence for why the link failed (logged and shown on the status): our own
    errors (a CA file that does not load, a refused subscription, a failing store) say it
    themselves; the broker's and the network's as appliance.net.mqtt words them."""
    if isinstance(exc, UplinkError | StoreError):
        return str(exc)
    broker = settings.broker
    return mqtt.describe_failure(exc, broker.host, broker.port, connected=connected)
