"""Stopping tasks on Python 3.11, where `asyncio.wait_for` (used inside aiomqtt) can swallow a
cancellation that arrives as the awaited result does: the task then goes on as if never asked.
Prefer `asyncio.timeout` to `wait_for` in our own code; for library code, these two."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def raise_if_cancelling() -> None:
    """Honour a cancellation a library swallowed: the task still counts the request. Call it
    before retrying or reconnecting, so a shutdown is not answered with a reconnect forever.

    Mind 3.11's TaskGroup: when one of its tasks fails after the `async with` body has ended,
    the group cancels the enclosing task and never takes the request back (fixed in 3.12), so
    this would then raise. Keep the body awaiting until the group is done (run one of its jobs
    there) in a task that calls this."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(
    *tasks: asyncio.Task[None],
    grace_s: float,
    on_cancel_again: Callable[[list[str]], None] = lambda names: None,
) -> None:
    """Cancel `tasks` and wait for them. One still running after `grace_s` (time for a flush or
    a send in progress) is cancelled again every second, `on_cancel_again` told its name, so a
    swallowed cancellation never hangs a shutdown."""
    pending = {task for task in tasks if not task.done()}
    for task in pending:
        task.cancel()
    if pending:
        _, pending = await asyncio.wait(pending, timeout=grace_s)
    while pending:
        on_cancel_again(sorted(task.get_name() for task in pending))
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
    await asyncio.gather(*tasks, return_exceptions=True)
