"""The outbox's ranges on their way out (PROTOCOL.md): encoded into messages, cut to a byte
budget, counted while in flight, and the cursors and pace of one connection's two senders."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from appliance.store import OutboxRange
from appliance.uplink.schema import WireFormat, encode_part, split_range

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


def advance_chain(acked: int, completed: dict[int, int]) -> int:
    """Follow completed ranges (lo -> hi) from `acked` while they join up; the ranges passed
    are removed from `completed`. Ranges chain exactly: each starts where another ended."""
    while acked in completed:
        acked = completed.pop(acked)
    return acked


def encode_range(
    found: OutboxRange, gateway: str, prefix: str, max_bytes: int, fmt: WireFormat = "json"
) -> Prepared:
    """Split and encode a range; while it is over `max_bytes` and has more than one record, keep
    a shorter prefix of its records (the range then ends at the last record kept)."""
    records = found.records
    hi = found.hi
    while True:
        parts = split_range(gateway, found.lo, hi, records)
        messages = [(part.topic(prefix), encode_part(part, fmt)) for part in parts]
        size = sum(len(payload) for _, payload in messages)
        if size <= max_bytes or len(records) <= 1:
            return Prepared(found.lo, hi, len(records), messages)
        keep = int(len(records) * max_bytes / size * CUT_MARGIN)
        records = records[: max(1, min(keep, len(records) - 1))]
        hi = records[-1][0]
