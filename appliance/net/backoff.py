"""Reconnect delays: doubling from a first delay up to a ceiling, with jitter so that a fleet
that lost the same broker does not come back in step."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

MAX_DOUBLINGS = 32
"""Beyond this many doublings every ceiling in use is long reached (and 2**n stays a float)."""


def doubling_s(failures: int, initial_s: float, max_s: float) -> float:
    """initial_s * 2^failures (failures 0, 1, ...), at most max_s; no jitter."""
    return float(min(max_s, initial_s * 2.0 ** min(max(failures, 0), MAX_DOUBLINGS)))


@dataclass
class Backoff:
    """`next_delay()` after each failure, `reset()` after a success: delays between half and all
    of `doubling_s(failures, initial_s, max_s)` (equal jitter)."""

    initial_s: float
    max_s: float
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay(self) -> float:
        ceiling = doubling_s(self.failures, self.initial_s, self.max_s)
        self.failures += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0
