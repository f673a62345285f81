"""One connection of the uplink (publisher.py retries them): connect with TLS and a will, say
online, subscribe to the ack and command topics, run the live and backlog senders (sending.py),
take the acknowledgements (PROTOCOL.md); raises when the connection ends, or when its PUBACKs
stop coming (LinkStalled). Also how the link's TLS context is built and how a failure is put in
words."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import TYPE_CHECKING, Any, Protocol

import aiomqtt
import structlog
from paho.mqtt.reasoncodes import ReasonCode

from appliance.errors import StoreError
from appliance.net import mqtt
from appliance.store import OutboxStats
from appliance.uplink.commands import answer, command_topic, encode_reply, reply_topic
from appliance.uplink.errors import SchemaError, UplinkError
from appliance.uplink.fetch import Reply
from appliance.uplink.flow import LinkGauge
from appliance.uplink.ranges import Cursors, Ledger, SentRange, Sleep
from appliance.uplink.schema import ack_topic, decode_ack
from appliance.uplink.schema_memory import SchemaMemory
from appliance.uplink.sending import LinkWatch, Senders
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
        self._first_ack = asyncio.Event()
        self._waiting_since: float | None = None
        self._ack_timeout_s = self._settings.ack_timeout_s
        self._warned_ack_beyond = False
        self._senders: Senders | None = None
        self._handed_over = False
        """A part was handed to the client on this connection."""
        self._resent_on_announcement = False
        self.delivered = False
        """A data part got its PUBACK, or the acknowledged seq moved (the retry loop then
        resets its backoff, however short the connection was)."""

    @property
    def cursors(self) -> Cursors:
        return Cursors(0, 0, 0, 0) if self._senders is None else self._senders.cursors

    # --- what the senders share (sending.SendingState) ------------------------------------

    @property
    def gauge(self) -> LinkGauge:
        return self._uplink.gauge

    @property
    def ledger(self) -> Ledger:
        return self._uplink.ledger

    @property
    def new_data(self) -> asyncio.Event:
        return self._uplink.new_data

    @property
    def pace(self) -> Sleep:
        return self._uplink.pace

    @property
    def schemas(self) -> SchemaMemory:
        return self._uplink.schemas

    def sending(self) -> None:
        self._handed_over = True
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()

    async def part_acknowledged(self, size: int, entry: SentRange, completed: bool) -> None:
        self.delivered = True
        status = self._status
        status.published_messages += 1
        status.published_bytes += size
        if completed:
            status.published_ranges += 1
            status.published_records += entry.records
            if self._settings.ack == "broker":
                await self._broker_acknowledged()

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
        client.pending_calls_threshold = s.max_in_flight + 8
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
        await self._subscribe_commands(client)
        self._uplink.came_up(stats.acked_seq, stats.records)
        watch = LinkWatch(client, s.stall_timeout_s)
        async with asyncio.TaskGroup() as group:
            self._senders = Senders(s, self._delivery, watch, group, self)
            group.create_task(watch.watch())
            group.create_task(self._start_sending(self._senders, group))
            group.create_task(self._publish_status_on_change(watch))
            if self._uplink.on_connected is not None:  # Home Assistant's discovery and states
                group.create_task(self._uplink.on_connected(self._publisher(watch)))
            # Received in the group's body, not a task of its own: on Python 3.11 a group whose
            # body has ended leaves our task marked as cancelling when a task of it fails, and
            # the retry loop would take that for a stop (net/cancellation.py).
            await self._receive(watch, client, group)

    async def _publish_status(self, client: aiomqtt.Client) -> OutboxStats:
        """The first, before the watch runs: aiomqtt's own timeout."""
        self._uplink.status_change.clear()
        stats = await self._delivery.outbox_stats()
        payload = self._uplink.online_status(stats.records, stats.acked_seq, stats.last_seq)
        topic, timeout = self._uplink.status_topic, self._settings.stall_timeout_s
        await client.publish(topic, payload, qos=1, retain=True, timeout=timeout)
        return stats

    async def _publish_status_on_change(self, watch: LinkWatch) -> None:
        while True:
            await self._uplink.status_change.wait()
            self._uplink.status_change.clear()
            stats = await self._delivery.outbox_stats()
            payload = self._uplink.online_status(stats.records, stats.acked_seq, stats.last_seq)
            await watch.publish(self._uplink.status_topic, payload, retain=True)

    def _publisher(self, watch: LinkWatch) -> Publish:
        async def publish(topic: str, payload: bytes, *, retain: bool) -> None:
            await watch.publish(topic, payload, retain=retain)

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

    async def _subscribe_commands(self, client: aiomqtt.Client) -> None:
        """Commands: model installs (when there is a model manager) and fetches of records. A
        broker whose ACL predates fetches may refuse the topic: without a model manager that
        only costs the fetches."""
        try:
            await self._subscribe(client, self._command_topic)
        except UplinkError as exc:
            if self._uplink.commands is not None:
                raise
            log.warning("uplink_commands_unavailable", reason=str(exc))

    async def _start_sending(self, senders: Senders, group: asyncio.TaskGroup) -> None:
        s = self._settings
        if s.ack == "receiver":
            # The retained ack comes right after SUBACK; without one this is a new gateway.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(s.first_ack_wait_s):  # not wait_for: see serial_link
                    await self._first_ack.wait()
        stats = await self._delivery.outbox_stats()
        senders.start(stats.acked_seq, stats.last_seq)
        if s.ack == "broker":
            await self._broker_acknowledged()  # ranges completed on an earlier connection
        group.create_task(senders.run_live())
        group.create_task(senders.run_backlog())
        group.create_task(self._uplink.fetches.run(senders, self._replier(senders)))
        if s.ack == "receiver":
            group.create_task(self._watch_acks())
        if stats.acked_seq > 0:
            await senders.send_gap(stats.acked_seq)

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

    async def _receive(
        self, watch: LinkWatch, client: aiomqtt.Client, group: asyncio.TaskGroup
    ) -> None:
        """Handle acks and commands; also notices a lost connection (the iterator raises
        MqttError)."""
        async for message in client.messages:
            if message.topic.matches(self._command_topic):
                group.create_task(self._command(watch, bytes(message.payload)))
                continue
            if not message.topic.matches(self._ack_topic):
                continue
            try:
                ack = decode_ack(bytes(message.payload), self._settings.gateway)
            except SchemaError as exc:
                log.warning("uplink_ack_refused", reason=str(exc))
                continue
            if ack.unknown_schemas:
                self._schemas_unknown(ack.unknown_schemas)
                continue
            if self._first_ack.is_set() and ack.announced:
                await self._receiver_announced(ack.seq)
            elif self._first_ack.is_set():
                await self._receiver_acknowledged(ack.seq)
            else:
                await self._first_ack_of_connection(ack.seq)
                self._first_ack.set()

    async def _command(self, watch: LinkWatch, payload: bytes) -> None:
        """Answer one command on the reply topic (its own task: an install's canary must not
        hold up the acks)."""
        reply = await answer(payload, self._uplink.handle_command, self._settings.gateway)
        if reply is not None:
            topic = reply_topic(self._settings.prefix, self._settings.gateway)
            await watch.publish(topic, reply)

    def _replier(self, senders: Senders) -> Reply:
        """How a fetch says it is done: on the reply topic, in turn after its last records."""
        topic = reply_topic(self._settings.prefix, self._settings.gateway)

        async def reply(command_id: str, outcome: dict[str, Any]) -> None:
            payload = encode_reply(self._settings.gateway, command_id, outcome)
            await senders.publish_aside([(topic, payload)])

        return reply

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
            self._resent_on_announcement = True  # its announcement follows: one resend
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

    async def _receiver_announced(self, seq: int) -> None:
        """A receiver has just subscribed. What this connection sent before may have matched no
        subscription (a restarted mosquitto forgets the receivers' shared subscription until
        they subscribe again, and drops what matches none after its PUBACK): send everything
        unacknowledged again at once, once per connection (each receiver announces)."""
        if seq > self.cursors.acked:
            await self._receiver_acknowledged(seq)
        if self._resent_on_announcement or not self._handed_over or not self.cursors.outstanding:
            return
        self._resent_on_announcement = True
        self._resend(f"a receiver subscribed (again) and acknowledges seq {seq}: what was sent "
                     "before may have reached no receiver",
                     next_timeout_s=self._settings.ack_timeout_s)  # fmt: skip

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

    def _schemas_unknown(self, refs: frozenset[bytes]) -> None:
        """The receiver refused a part that named these schemas by reference (a new database):
        send everything unacknowledged again, names included. Each refused part asks, and each
        request resends: a part encoded with references before the first resend may go out
        after it (rare: a receiver's database was replaced)."""
        listed = ", ".join(sorted(ref.hex() for ref in refs))
        self._resend(f"the receiver does not know feature schema(s) {listed}",
                     next_timeout_s=self._ack_timeout_s)  # fmt: skip

    async def _acknowledge(self, seq: int) -> None:
        """Mark rows up to `seq` delivered; a failing store is logged, the next ack retries."""
        self.cursors.acknowledged(seq)
        self.schemas.acknowledged(seq)
        self.ledger.forget_up_to(seq)
        self.delivered = True
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
        self.schemas.forget()  # a resend carries every part's names
        if self._senders is not None:
            self._senders.rewind()
        self._status.resends += 1
        self._waiting_since = time.monotonic()
        self._ack_timeout_s = next_timeout_s

    async def _broker_acknowledged(self) -> None:
        """ack = "broker": the acknowledged seq moves over every contiguous range the broker
        acknowledged in full (on this connection or an earlier one)."""
        acked = self.ledger.chain_end(self.cursors.acked)
        if acked > self.cursors.acked:
            await self._acknowledge(acked)


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
