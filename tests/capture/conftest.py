"""Shared helpers for the capture tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from waiting import wait_until as wait_until_deadline

Waiter = Callable[..., Awaitable[None]]


@pytest.fixture
def wait_until() -> Waiter:
    return wait_until_deadline
