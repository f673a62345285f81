"""Waiting in tests without sleeping blindly: poll a condition until a deadline, and run the
appliance until its status board shows something."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from appliance.config import ApplianceConfig
from appliance.rig import run_appliance
from appliance.status import StatusBoard


async def wait_until(
    condition: Callable[[], bool],
    what: str,
    deadline_s: float = 60.0,
    alive: asyncio.Task[None] | None = None,
) -> None:
    """Poll `condition` until it holds; fail naming `what` at the deadline, or at once if the
    task `alive` ends first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while not condition():
        assert alive is None or not alive.done(), f"the appliance stopped before {what}"
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def run_appliance_until(
    config: ApplianceConfig,
    condition: Callable[[StatusBoard], bool],
    what: str,
    deadline_s: float = 90.0,
) -> StatusBoard:
    """Run the appliance until `condition(board)` holds, then stop it cleanly."""
    board = StatusBoard(config.gateway.id)
    stop = asyncio.Event()
    run = asyncio.create_task(run_appliance(config, stop=stop, board=board))
    await wait_until(lambda: condition(board), what, deadline_s, alive=run)
    stop.set()
    await run
    return board


@contextlib.asynccontextmanager
async def running_page(
    config: ApplianceConfig, on_started: Callable[[StatusBoard], object] = lambda board: None
) -> AsyncIterator[tuple[str, StatusBoard]]:
    """The appliance running `config` (whose [http] table has port 0); yields (page URL, board)
    once the page listens, and stops it cleanly at the end. `on_started` sees the board at that
    moment, before any stage has run."""
    board = StatusBoard(config.gateway.id)
    stop = asyncio.Event()
    urls: list[str] = []

    def started(url: str) -> None:
        on_started(board)
        urls.append(url)

    run = asyncio.create_task(
        run_appliance(config, stop=stop, board=board, on_http_started=started)
    )
    try:
        await wait_until(lambda: bool(urls) or run.done(), "the status page to listen")
        if run.done():
            run.result()
        yield urls[0], board
    finally:
        stop.set()
        await run


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait for it to end, cancelling again every second while it runs on:
    Python 3.11's asyncio.wait_for (inside aiomqtt) can swallow a cancellation that arrives as
    the awaited result does. Errors other than the cancellation surface."""
    task.cancel()
    while not task.done():
        await asyncio.wait({task}, timeout=1.0)
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
