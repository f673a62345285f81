"""Work that must not hold the event loop, nor a stop: a bundle's checks and its canary."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def in_daemon_thread(
    work: Callable[[], T], budget_s: float, on_abandoned: Callable[[], None]
) -> T:
    """`work()` on a daemon thread: the event loop stays free, and a stop never waits for it.
    TimeoutError after `budget_s`; the thread then finishes unseen and `on_abandoned` runs
    (on the loop) when it does."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # abandoned: nobody waits for this result
            on_abandoned()
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = work(), None
        except BaseException as exc:  # handed to the waiting task, whatever it is
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="model-checks", daemon=True).start()
    try:
        async with asyncio.timeout(budget_s):
            return await asyncio.shield(future)
    finally:
        if not future.done():
            future.cancel()
