"""The store-and-forward publisher: the one task that owns the MQTT link (aiomqtt).

Connection: TLS (CA file, optional client certificate), username/password, a persistent session
(clean_session False, client id = gateway id) and a retained last will "offline" on the status
topic. On connect it publishes a retained "online" status and subscribes to its ack topic (QoS 1).

Sending (appliance/uplink/PROTOCOL.md): the outbox leaves as ranges (lo, hi] carrying every record
still stored in that span, one QoS 1 message per (kind, asset). How large a range is and how
many messages await their PUBACK at once follow the link (flow.py's gauge: measured rate and
PUBACK time; start small, grow while PUBACKs come back fast, halve on slow ones), within
max_records_per_message, max_message_bytes and max_in_flight, so on a link of a few KB/s a part
is acknowledged within seconds and an alert is not queued behind minutes of backlog. Before its
first range a connection waits briefly for the retained ack (first_ack_wait_s) and, when the
acknowledged seq A is above 0, declares the gap (0, A]. A retained ack above the store's last
seq means the store was replaced: its undelivered rows are renumbered above the ack first
(Delivery.renumber_above), so they do not collide with records the receiver already holds.

Live first: at connect the live cursor starts one range's worth of records before the last one,
so the newest records go at once; new records are gathered for live_batch_s into one range (one
holding an alert goes at once) and found as the store writer signals them (or every poll_s).
The backlog, (acknowledged seq, live start], is replayed oldest first at replay_records_per_s;
live parts take the window's free places before backlog parts, and a range's alert parts go
before its other parts (sending.py).

Resuming: the ranges sent and not yet acknowledged are remembered across connections (the
ledger, ranges.py, in memory). A reconnect re-sends each with the same bounds and split and only
the parts the broker did not acknowledge, so the receiver completes it from what it already has;
one that no longer fits the link's budget (or lost rows to eviction) is split anew.

Acknowledgement: ack = "receiver" marks rows delivered (acknowledge) only when the receiver's
retained ack says it committed them; when that ack stops moving for ack_timeout_s while records
are outstanding (a receiver or broker that lost them), everything unacknowledged is sent again (the
receiver drops duplicates) and the timeout doubles until the ack moves. A receiver announces its
acks when it (re)subscribes: what the connection sent before may have reached no receiver (a
restarted mosquitto forgets shared subscriptions), so everything is sent again at once, once per
connection; so it is after the same ack again after a fruitless resend. ack = "broker" marks a
range delivered once the broker acknowledged every part of it and of every range before it: this
survives our crashes but not a broker or receiver that loses messages (PROTOCOL.md).

Failures: any error ends the connection, and so does a stall: messages in flight and no PUBACK
for stall_timeout_s (time waiting for a place in the window does not count), after which the
gauge starts small again. A silent half-open link is given up by the MQTT keepalive. The next
attempt follows exponential backoff with jitter (backoff_initial_s doubling up to backoff_max_s,
reset after a connection that delivered data, a PUBACK or a moved ack, or lasted
stable_after_s). The reason is logged once per change (uplink_down) and shown on the status.
This task is the only place that retries the link.

Here: the retry loop and the status, and the gauge and ledger that outlive a connection. One
connection's life is in connection.py, its senders in sending.py; the ranges, their encoding,
the senders' cursors and the ledger in ranges.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Callable, Coroutine, Mapping

import aiomqtt
import structlog

from appliance.errors import StoreError
from appliance.net.backoff import Backoff
from appliance.net.cancellation import raise_if_cancelling
from appliance.net.mqtt import innermost
from appliance.status import UplinkStatus
from appliance.store import Delivery
from appliance.uplink.commands import Command, CommandHandler, RefusedCommand
from appliance.uplink.connection import Connection, Publish, describe_failure
from appliance.uplink.errors import UplinkError
from appliance.uplink.fetch import Fetches
from appliance.uplink.flow import LinkGauge
from appliance.uplink.ranges import Ledger, Sleep
from appliance.uplink.schema import OFFLINE, ONLINE, encode_status, status_topic
from appliance.uplink.schema_memory import SchemaMemory
from appliance.uplink.sending import LinkStalled
from appliance.uplink.settings import UplinkSettings

log = structlog.get_logger(__name__)


class Uplink:
    """Run with `await uplink.run()` until cancelled; `status` is its entry on the status board.

    `new_data` is set by whoever stores records (the composition root wires the store writer to
    it); without it new records are found by polling every `settings.poll_s`. `pace` is how the
    backlog replay waits for its turn (tests hold it back). `commands` answers what arrives on
    the gateway's command topic (appliance/uplink/commands.py) but fetches of records, which
    the uplink answers itself (fetch.py);
    `extra_status` adds fields to the retained online status, which is published again after
    `status_changed()`. `on_connected` runs beside each connection, with a way to publish on
    it, until the connection ends (Home Assistant's discovery and states).
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
        on_connected: Callable[[Publish], Coroutine[object, object, None]] | None = None,
    ) -> None:
        self.settings = settings
        self.commands = commands
        self.on_connected = on_connected
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
        self.gauge = LinkGauge(
            settings.min_range_bytes,
            settings.max_message_bytes,
            settings.max_in_flight,
            target_ack_s=settings.target_ack_s,
        )
        self.ledger = Ledger()
        self.schemas = SchemaMemory(settings.ack == "receiver" and settings.wire_format == "binary")
        self.fetches = Fetches(settings, delivery, pace)

    async def handle_command(self, command: Command | RefusedCommand) -> dict[str, object]:
        """What arrived on the command topic: a fetch of records (fetch.py) here, the rest to
        `commands` (the model manager)."""
        if isinstance(command, Command) and command.action == "fetch_records":
            return await self.fetches.accept(command)
        if self.commands is not None:
            return await self.commands(command)
        if isinstance(command, RefusedCommand):
            reason = command.reason
        else:
            reason = f"{command.action}: this gateway takes no model commands (no [models] table)"
        self.fetches.refused += 1
        return {"accepted": False, "message": reason}

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
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s, self._rng)
        while True:
            connection = Connection(self)
            try:
                await connection.run()
                reason = "the broker closed the connection"
            except Exception as exc:  # whatever ends a connection: try again later
                reason = self._reason(innermost(exc), connection)
                if isinstance(innermost(exc), LinkStalled):
                    self.gauge.restart()
            raise_if_cancelling()  # aiomqtt may have swallowed a stop: do not reconnect
            up_for = connection.up_for_s()
            if connection.delivered or (up_for or 0.0) >= self.settings.stable_after_s:
                backoff.reset()
            delay = backoff.next_delay()
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


def iso_utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


__all__ = ["Uplink", "UplinkSettings"]
