"""What one connection puts on the link (connection.py runs it): the live sender (records
gathered for up to live_batch_s, at once when an alert is among them), the backlog sender
(oldest first, at replay_records_per_s), a window of parts awaiting their PUBACK sized by the
link gauge (flow.py), and the watch that ends a connection whose PUBACKs stopped coming
(stall_timeout_s).

The window lets live alert parts in first; other live parts and backlog parts take turns (three
to one), so on a link thinner than the live stream the backlog still moves and with it the
acknowledged seq (the receiver acknowledges a chain without holes: live parts alone would never
move it). Live stays live: a live sender that has not caught up for LIVE_LAG_S beyond
live_batch_s skips to the newest range (or to the first alert waiting before it), and what it
skipped becomes backlog (so an alert is not queued behind minutes of live records). A part is
marked handed over before it waits for the window, so a range the backlog reaches while the live
sender is on it is not sent twice.

Ranges remembered in the ledger (ranges.py) are re-sent with their bounds and split, and only
their parts the broker has not acknowledged; new ranges stop where a remembered one starts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from typing import Literal, Protocol

import aiomqtt

from appliance.records import Alert
from appliance.store import Delivery, OutboxRange
from appliance.uplink.errors import UplinkError
from appliance.uplink.flow import LinkGauge
from appliance.uplink.ranges import (
    Cursors,
    Ledger,
    Pacer,
    Prepared,
    SentRange,
    Sleep,
    encode_range,
)
from appliance.uplink.schema_memory import SchemaMemory
from appliance.uplink.settings import UplinkSettings
from appliance.uplink.summary import Splitter, summary_splitter

ALERT_LEVEL = "/alerts/"
"""A data topic's kind level (`<prefix>/<gateway>/alerts/<asset>`)."""
LIVE_LAG_S = 10.0
"""The live sender skips ahead when what waits behind it has not fitted in one range for this
long beyond live_batch_s (the link carries less than the live stream)."""
LIVE_TURNS = 3
"""When live and backlog parts both wait, this many live parts go for each backlog part."""
RESUME_SLACK = 2
"""A remembered range is re-sent as it was while its unacknowledged parts are within this many
range budgets; larger (the link got thinner) it is split anew."""


class LinkStalled(UplinkError):
    """No PUBACK for stall_timeout_s while messages were in flight."""


Lane = Literal["alert", "live", "backlog"]


class PartWindow:
    """At most `capacity` parts awaiting their PUBACK (the capacity follows the gauge). A free
    place goes to a waiting alert part first; live and backlog parts take turns."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self._waiting: dict[Lane, collections.deque[asyncio.Future[None]]] = {
            "alert": collections.deque(),
            "live": collections.deque(),
            "backlog": collections.deque(),
        }
        self._turn = 0

    async def acquire(self, lane: Lane) -> None:
        if self.in_use < self.capacity and not any(self._waiting.values()):
            self.in_use += 1
            return
        granted = asyncio.get_running_loop().create_future()
        self._waiting[lane].append(granted)
        self._let_in()
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # let in just as it was cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiting[lane].remove(granted)
            raise

    def release(self) -> None:
        self.in_use -= 1
        self._let_in()

    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        self._let_in()

    def _let_in(self) -> None:
        while self.in_use < self.capacity and (queue := self._next_queue()) is not None:
            granted = queue.popleft()
            if not granted.done():
                self.in_use += 1
                granted.set_result(None)

    def _next_queue(self) -> collections.deque[asyncio.Future[None]] | None:
        alert, live, backlog = self._waiting.values()
        if alert:
            return alert
        if live and backlog:
            self._turn = (self._turn + 1) % (LIVE_TURNS + 1)
            return backlog if self._turn == 0 else live
        return live or backlog or None


class LinkWatch:
    """Every QoS 1 publish of a connection goes through `publish`, which waits for its PUBACK
    however long the link takes; `watch` raises LinkStalled when messages are in flight and no
    PUBACK came for `stall_timeout_s` (a half-open link, or one far thinner than what was put
    on it). Time spent waiting for room in the window is not counted: only the link's."""

    def __init__(self, client: aiomqtt.Client, stall_timeout_s: float) -> None:
        self._client = client
        self.stall_timeout_s = stall_timeout_s
        self.in_flight = 0
        self.pubacks = 0
        self._progress_at = time.monotonic()

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if self.in_flight == 0:
            self._progress_at = time.monotonic()  # the clock runs only while one is in flight
        self.in_flight += 1
        try:
            await self._client.publish(topic, payload, qos=1, retain=retain, timeout=math.inf)
        finally:
            self.in_flight -= 1
        self._progress_at = time.monotonic()
        self.pubacks += 1

    async def watch(self) -> None:
        period = min(1.0, self.stall_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            waited = time.monotonic() - self._progress_at
            if self.in_flight and waited >= self.stall_timeout_s:
                raise LinkStalled(
                    f"no PUBACK for {waited:.0f} s with {self.in_flight} message(s) in flight "
                    "(the link stalled: half-open, or too thin for what was in flight)"
                )


class SendingState(Protocol):
    """What the senders share with their connection and the uplink that outlives it."""

    @property
    def gauge(self) -> LinkGauge: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def new_data(self) -> asyncio.Event: ...
    @property
    def pace(self) -> Sleep: ...
    @property
    def schemas(self) -> SchemaMemory: ...

    def sending(self) -> None:
        """Records are about to be outstanding (the ack timeout's clock starts)."""

    async def part_acknowledged(self, size: int, entry: SentRange, completed: bool) -> None:
        """The broker acknowledged a part of `size` bytes of `entry`; `completed`: its last."""


class Senders:
    """The live and backlog senders of one connection, over the uplink's gauge and ledger."""

    def __init__(
        self,
        settings: UplinkSettings,
        delivery: Delivery,
        watch: LinkWatch,
        group: asyncio.TaskGroup,
        state: SendingState,
    ) -> None:
        self._settings = settings
        self._delivery = delivery
        self._watch = watch
        self._group = group
        self._state = state
        self._gauge = state.gauge
        self._ledger = state.ledger
        self._window = PartWindow(state.gauge.window)
        self.cursors = Cursors(0, 0, 0, 0)
        self.live_started = asyncio.Event()
        self.more_backlog = asyncio.Event()

    def start(self, acked: int, last_seq: int) -> None:
        """Cursors for a new connection: live from the newest range's worth of records (at the
        start of the remembered range that holds it), the backlog (acked, live start] after."""
        self._ledger.forget_up_to(acked)
        self._ledger.new_connection()
        live = self._live_start(acked, last_seq)
        self.cursors = Cursors(acked, live, acked, live)

    def _live_start(self, floor: int, last_seq: int) -> int:
        """One range's worth of records before the last seq (at the start of the remembered
        range holding it), not below `floor`."""
        live = max(floor, last_seq - self._read_limit())
        remembered = self._ledger.containing(live + 1)
        if remembered is not None and remembered.lo >= floor:
            live = remembered.lo
        return live

    def rewind(self) -> None:
        """Send everything unacknowledged again, every part of it."""
        self.cursors.rewind()
        self._ledger.forget_acks()
        self.more_backlog.set()

    async def send_gap(self, acked: int) -> None:
        """The gap (0, acked] declared at connect (PROTOCOL.md, "Where the chain starts")."""
        ((topic, payload),) = self._encode_range(OutboxRange(0, acked, []), 1).messages
        await self._window.acquire("alert")
        try:
            await self._watch.publish(topic, payload)
        finally:
            self._window.release()

    async def run_live(self) -> None:
        s = self._settings
        new_data = self._state.new_data
        gathering_since = -math.inf  # what waited through the connect goes at once
        caught_up_at = time.monotonic()
        while True:
            new_data.clear()  # before reading: a record stored meanwhile sets it again
            limit = self._read_limit()
            found = await self._next(self.cursors.live, None, limit)
            if found is None or (isinstance(found, OutboxRange) and len(found.records) < limit):
                caught_up_at = time.monotonic()  # what waits fits in one range
            elif time.monotonic() - caught_up_at > s.live_batch + LIVE_LAG_S:
                await self._skip_ahead()
                caught_up_at = time.monotonic()
                continue
            if found is None:
                self.live_started.set()
                gathering_since = math.nan
                await wait_for(new_data, s.poll_s)
                continue
            if math.isnan(gathering_since):
                gathering_since = time.monotonic()
            left = gathering_since + s.live_batch - time.monotonic()
            if left > 0 and not goes_at_once(found, limit):
                await wait_for(new_data, min(left, s.poll_s))
                continue
            prepared = await self._encode(found)
            await self.send(prepared, live=True)
            self.cursors.live = prepared.hi
            if isinstance(found, OutboxRange) and prepared.hi == found.hi:
                gathering_since = math.nan  # all sent; else the rest has waited long enough

    async def _skip_ahead(self) -> None:
        """The live sender fell behind: on to the newest range, or to the first alert waiting
        before it, and what it skipped to the backlog."""
        live = self.cursors.live
        target = self._live_start(live, await self._delivery.latest_seq())
        skipped = await self._delivery.outbox_range(live, max(1, target - live), target)
        alerts = (
            [seq for seq, record in skipped.records if isinstance(record, Alert)] if skipped else []
        )
        if alerts:
            target = alerts[0] - 1
        if target > live:
            self.cursors.jump(target)
            self.more_backlog.set()

    async def run_backlog(self) -> None:
        pacer = Pacer(self._settings.replay_records_per_s, self._state.pace)
        await self.live_started.wait()
        cursors = self.cursors
        while True:
            while cursors.backlog < cursors.backlog_end:
                epoch = cursors.epoch
                await pacer.wait()
                found = await self._next(cursors.backlog, cursors.backlog_end, self._read_limit())
                if found is None:
                    break
                prepared = await self._encode(found)
                pacer.spend(prepared.records)
                await self.send(prepared, live=False)
                cursors.backlog_sent(prepared.hi, epoch)
            await self.more_backlog.wait()
            self.more_backlog.clear()

    def _read_limit(self) -> int:
        gauge = self._gauge
        return min(self._settings.max_records_per_message, gauge.records_for(gauge.range_bytes))

    # --- a fetch on demand (fetch.py's FetchLink) -----------------------------------------

    def read_limit(self) -> int:
        return self._read_limit()

    def range_bytes(self) -> int:
        return self._gauge.range_bytes

    async def publish_aside(self, messages: list[tuple[str, bytes]]) -> None:
        """Messages outside the ranges and the ledger (a fetch's parts): each waits for the
        window's backlog turn, so live parts keep going first; returns once the broker
        acknowledged every one."""
        tasks = []
        for topic, payload in messages:
            await self._window.acquire("backlog")
            tasks.append(self._group.create_task(self._publish_measured(topic, payload)))
        await asyncio.gather(*tasks)

    async def _publish_measured(self, topic: str, payload: bytes) -> None:
        """Publish; the window's slot is freed and the link gauge learns the PUBACK time."""
        handed_at = time.monotonic()
        try:
            await self._watch.publish(topic, payload)
        finally:
            self._window.release()
        self._gauge.acknowledged(len(payload), handed_at, time.monotonic())
        self._window.resize(self._gauge.window)

    async def _next(self, lo: int, up_to: int | None, limit: int) -> Prepared | OutboxRange | None:
        """The remembered range at `lo` ready to re-send, or the records of a new one."""
        resumed = await self._resume(lo)
        if resumed is not None:
            return resumed
        bound = self._ledger.next_start(lo)
        if up_to is not None:
            bound = up_to if bound is None else min(bound, up_to)
        return await self._delivery.outbox_range(lo, limit, bound)

    async def _resume(self, lo: int) -> Prepared | None:
        known = self._ledger.at(lo)
        if known is None:
            return None
        if not known.to_send():  # the broker has every part, or it is on its way
            return Prepared(known.lo, known.hi, known.records, [])
        found = await self._delivery.outbox_range(lo, known.hi - lo, known.hi)
        if found is not None:
            split = await self._summary_split(found)
            prepared = await asyncio.to_thread(self._encode_range, found, 2**62, split)
            same_split = (prepared.hi, len(prepared.messages)) == (known.hi, known.parts)
            if same_split:
                left = sum(len(prepared.messages[part][1]) for part in known.to_send())
                if left <= RESUME_SLACK * self._gauge.range_bytes:
                    return prepared
        self._ledger.forget(lo)  # split anew (rows evicted meanwhile, or too big for the link)
        return None

    async def _encode(self, found: Prepared | OutboxRange) -> Prepared:
        if isinstance(found, Prepared):
            return found
        # Encoding hundreds of records takes a while: keep it off the event loop.
        split = await self._summary_split(found)
        budget = self._gauge.range_bytes
        prepared = await asyncio.to_thread(self._encode_range, found, budget, split)
        self._gauge.encoded(prepared.records, sum(len(p) for _, p in prepared.messages))
        return prepared

    async def _summary_split(self, found: OutboxRange) -> Splitter | None:
        """[uplink] detail = "summary": how the range is split, from what the store knows."""
        s = self._settings
        if s.detail != "summary":
            return None
        inputs = await self._delivery.summary_inputs(found, s.summary_margin_s)
        return summary_splitter(s.gateway, inputs, s.summary_margin_s)

    def _encode_range(
        self, found: OutboxRange, max_bytes: int, split: Splitter | None = None
    ) -> Prepared:
        """Every part this connection sends is encoded here, in [uplink] format, with the
        feature schemas the receiver is known to have by reference (features parts, and the
        summary profile's minutes and promoted windows)."""
        schemas = self._state.schemas
        known = schemas.known_for_encoding()
        prepared = encode_range(
            found,
            self._settings.gateway,
            self._settings.prefix,
            max_bytes,
            self._settings.wire_format,
            known,
            split,
        )
        schemas.encoded(prepared.hi, prepared.schemas, known)
        return prepared

    async def send(self, prepared: Prepared, *, live: bool) -> None:
        """Hand every part not yet acknowledged to the client (alerts first), each when the
        window lets it in (a live alert part before any other); one task per part awaits its
        PUBACK."""
        if not prepared.messages:
            return
        self._state.sending()
        parts = len(prepared.messages)
        entry = self._ledger.sent(prepared.lo, prepared.hi, parts, prepared.records)
        to_send = set(entry.to_send())
        entry.handed_parts |= to_send  # claimed now: the other sender skips them
        for part, topic, payload in alerts_first(prepared.messages):
            if part not in to_send:
                continue
            lane: Lane = "backlog" if not live else "alert" if ALERT_LEVEL in topic else "live"
            await self._window.acquire(lane)
            self._group.create_task(self._publish(topic, payload, entry, part))

    async def _publish(self, topic: str, payload: bytes, entry: SentRange, part: int) -> None:
        await self._publish_measured(topic, payload)
        was_complete = entry.complete
        entry.acked_parts.add(part)
        completed = entry.complete and not was_complete
        await self._state.part_acknowledged(len(payload), entry, completed)


def alerts_first(messages: list[tuple[str, bytes]]) -> list[tuple[int, str, bytes]]:
    """(part number, topic, payload), the alert parts first, the rest in part order."""
    numbered = [(part, topic, payload) for part, (topic, payload) in enumerate(messages)]
    return sorted(numbered, key=lambda item: ALERT_LEVEL not in item[1])


def goes_at_once(found: Prepared | OutboxRange, limit: int) -> bool:
    """A live range that does not wait for more records: a remembered one, one that holds an
    alert, or one as large as a range may be."""
    if isinstance(found, Prepared):
        return True
    records = found.records
    return len(records) >= limit or any(isinstance(record, Alert) for _, record in records)


async def wait_for(event: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):  # not wait_for: see serial_link._read
            await event.wait()
