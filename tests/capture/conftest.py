"""Shared helpers for the capture tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

Waiter = Callable[..., Awaitable[None]]


async def _wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    """Poll `predicate` until true; fail the test after `timeout_s` (a deadline, not a timing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.005)


@pytest.fixture
def wait_until() -> Waiter:
    return _wait_until
