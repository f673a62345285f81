"""The outbox's ranges on their way out (PROTOCOL.md): encoded into messages, cut to a byte
budget, counted while in flight, the cursors and pace of one connection's two senders, and the
ledger of ranges sent but not yet acknowledged that lets the next connection resume."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

from appliance.store import OutboxRange
from appliance.uplink.schema import WireFormat, encode_part, split_range
from appliance.uplink.schema.summary_part import part_schemas
from appliance.uplink.summary import Splitter

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
    schemas: frozenset[tuple[str, ...]] = frozenset()
    """The feature schemas its parts name (by names or by reference)."""


@dataclass
class SentRange:
    """A range as it was split when sent, and which of its parts the broker acknowledged
    (PUBACK), whatever connection they went on."""

    lo: int
    hi: int
    parts: int
    records: int
    acked_parts: set[int] = field(default_factory=set)
    handed_parts: set[int] = field(default_factory=set)
    """Handed over on the current connection (its PUBACK awaited or received)."""

    @property
    def complete(self) -> bool:
        return len(self.acked_parts) == self.parts

    def to_send(self) -> list[int]:
        """The parts neither acknowledged nor already handed over on this connection."""
        taken = self.acked_parts | self.handed_parts
        return [part for part in range(self.parts) if part not in taken]


class Ledger:
    """The ranges sent and not yet acknowledged, kept across connections (in memory: a restart
    starts afresh, which the protocol allows). A reconnect re-sends a remembered range with the
    same bounds and split and only its parts the broker did not acknowledge, so the receiver
    completes the range from the parts it already has instead of starting a new split; new ranges
    stop at the next remembered one so the bounds keep lining up."""

    MAX_RANGES = 50_000
    """Beyond this many remembered ranges new ones are not remembered (they are re-split)."""

    def __init__(self) -> None:
        self._ranges: dict[int, SentRange] = {}

    def __len__(self) -> int:
        return len(self._ranges)

    def at(self, lo: int) -> SentRange | None:
        return self._ranges.get(lo)

    def sent(self, lo: int, hi: int, parts: int, records: int) -> SentRange:
        """The entry of a range being sent: the remembered one if the bounds and split match,
        else a new one (a new split starts with no part acknowledged)."""
        known = self._ranges.get(lo)
        if known is not None and (known.hi, known.parts) == (hi, parts):
            return known
        entry = SentRange(lo, hi, parts, records)
        if known is not None or len(self._ranges) < self.MAX_RANGES:
            self._ranges[lo] = entry
        return entry

    def forget(self, lo: int) -> None:
        self._ranges.pop(lo, None)

    def forget_up_to(self, acked: int) -> None:
        """Drop the ranges an acknowledgement covers."""
        for lo in [lo for lo, entry in self._ranges.items() if entry.hi <= acked]:
            del self._ranges[lo]

    def forget_acks(self) -> None:
        """Send every part again (a resend: what the broker took may never have arrived)."""
        for entry in self._ranges.values():
            entry.acked_parts.clear()
            entry.handed_parts.clear()

    def new_connection(self) -> None:
        """Nothing is handed over on a new connection yet."""
        for entry in self._ranges.values():
            entry.handed_parts.clear()

    def next_start(self, after: int) -> int | None:
        """The lowest remembered lo above `after` (a new range stops there)."""
        return min((lo for lo in self._ranges if lo > after), default=None)

    def containing(self, seq: int) -> SentRange | None:
        """The remembered range with lo < seq <= hi, if any."""
        for entry in self._ranges.values():
            if entry.lo < seq <= entry.hi:
                return entry
        return None

    def chain_end(self, acked: int) -> int:
        """ack = "broker": how far the ranges whose every part was acknowledged join up from
        `acked` (ranges chain exactly: each starts where another ended)."""
        while (entry := self._ranges.get(acked)) is not None and entry.complete:
            acked = entry.hi
        return acked


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

    def jump(self, live: int) -> None:
        """The live sender skips ahead to `live`; what it skipped becomes backlog."""
        self.live = live
        self.backlog_end = max(self.backlog_end, live)


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


def encode_range(
    found: OutboxRange,
    gateway: str,
    prefix: str,
    max_bytes: int,
    fmt: WireFormat = "json",
    known_schemas: Collection[bytes] = (),
    split: Splitter | None = None,
) -> Prepared:
    """Split and encode a range; while it is over `max_bytes` and has more than one record, keep
    a shorter prefix of its records (the range then ends at the last record kept). Feature
    schemas in `known_schemas` go by reference (binary)."""
    records = found.records
    hi = found.hi
    while True:
        if split is None:
            parts = split_range(gateway, found.lo, hi, records)
        else:  # the summary profile (summary.py)
            parts = split(found.lo, hi, records)
        messages = [(part.topic(prefix), encode_part(part, fmt, known_schemas)) for part in parts]
        size = sum(len(payload) for _, payload in messages)
        if size <= max_bytes or len(records) <= 1:
            named = frozenset(names for part in parts for names in part_schemas(part))
            return Prepared(found.lo, hi, len(records), messages, named)
        keep = int(len(records) * max_bytes / size * CUT_MARGIN)
        records = records[: max(1, min(keep, len(records) - 1))]
        hi = records[-1][0]
