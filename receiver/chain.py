"""How far a gateway's complete ranges chain without a hole (pure)."""

from __future__ import annotations

from collections.abc import Iterable


def extend_chain(start: int, ranges: Iterable[tuple[int, int]]) -> int:
    """The highest N such that the ranges (lo, hi] cover (start, N] without a hole.

    `ranges` must be sorted by lo; they may overlap, and those entirely at or below the chain's
    end are ignored. Returns `start` if the first range leaves a hole after it.
    """
    end = start
    for lo, hi in ranges:
        if lo > end:
            break
        end = max(end, hi)
    return end
