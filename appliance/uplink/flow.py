"""How much the uplink puts on the link at once (pure): the size of a range and the number of
parts awaiting their PUBACK follow the link's measured rate and acknowledgement time.

A part's acknowledgement time is from its hand-over to its PUBACK. Its rate sample is its size
over the time the link spent on it: from its hand-over or the previous PUBACK, whichever came
later (parts in flight are carried one after the other). The range budget aims at a range
carried in `target_range_s`; the window at `target_ack_s` worth of bytes in flight, so a part
handed over now (an alert) is acknowledged within about that. Growth is at most a doubling per
PUBACK (start small, grow while acks come back fast); an acknowledgement slower than twice the
target halves both at once (shrink on slow acks), and a stalled connection starts again small.
The gauge outlives connections: a reconnect keeps what the link was measured to carry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RATE_WEIGHT = 0.25
"""Weight of a new rate sample in the running estimate."""
MIN_INTERVAL_S = 0.005
"""A PUBACK sooner than this after the previous one counts as this long (bursts of PUBACKs)."""
START_RECORD_BYTES = 600.0
"""Bytes per record assumed before any range was encoded (a demo feature vector in JSON)."""


@dataclass
class LinkGauge:
    """Range budget (`range_bytes`) and parts in flight (`window`) for the link as measured."""

    min_bytes: int
    max_bytes: int
    max_window: int
    target_range_s: float = 2.0
    target_ack_s: float = 4.0
    range_bytes: int = 0
    window: int = 2
    rate_bps: float | None = None
    """Bytes per second the link carried, as measured from PUBACKs (None: not yet)."""
    ack_s: float | None = None
    """The last part's time from hand-over to PUBACK."""
    part_bytes: float = 0.0
    """Running mean size of an acknowledged part."""
    record_bytes: float = START_RECORD_BYTES
    """Running mean encoded size of a record."""
    _last_ack_at: float = -math.inf

    def __post_init__(self) -> None:
        self.min_bytes = min(self.min_bytes, self.max_bytes)
        self.window = min(self.window, self.max_window)
        self.restart()

    def restart(self) -> None:
        """Start small again (a connection that stalled): the link may have become thin."""
        self.range_bytes = self.min_bytes
        self.window = min(2, self.max_window)
        self.part_bytes = 0.0
        self.rate_bps = None

    def records_for(self, budget: int) -> int:
        """How many records to read for a range of about `budget` bytes (a little more: the
        range is then cut to the budget)."""
        return max(1, math.ceil(1.25 * budget / max(self.record_bytes, 1.0)))

    def encoded(self, records: int, size: int) -> None:
        """A range of `records` records was encoded into `size` bytes."""
        if records > 0:
            self.record_bytes = 0.7 * self.record_bytes + 0.3 * size / records

    def acknowledged(self, size: int, handed_at: float, now: float) -> None:
        """A part of `size` bytes handed over at `handed_at` got its PUBACK at `now`."""
        self.ack_s = now - handed_at
        busy_s = max(now - max(handed_at, self._last_ack_at), MIN_INTERVAL_S)
        self._last_ack_at = now
        sample = size / busy_s
        rate = sample if self.rate_bps is None else self.rate_bps
        self.rate_bps = rate + RATE_WEIGHT * (sample - rate)
        self.part_bytes = size if self.part_bytes == 0 else 0.8 * self.part_bytes + 0.2 * size
        if self.ack_s > 2 * self.target_ack_s:
            self._shrink()
        else:
            self._follow_rate(self.rate_bps)

    def _follow_rate(self, rate: float) -> None:
        wanted = int(rate * self.target_range_s)
        self.range_bytes = clamp(min(wanted, 2 * self.range_bytes), self.min_bytes, self.max_bytes)
        in_flight = rate * self.target_ack_s / max(self.part_bytes, 1.0)
        self.window = clamp(min(math.ceil(in_flight), 2 * self.window), 1, self.max_window)

    def _shrink(self) -> None:
        self.range_bytes = max(self.min_bytes, self.range_bytes // 2)
        self.window = max(1, self.window // 2)


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))
