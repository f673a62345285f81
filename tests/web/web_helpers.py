"""Run the demo rig with its status page on a free port, for the web tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from waiting import wait_until

from appliance.app import run_appliance
from appliance.config import HttpConfig
from appliance.demo import demo_config
from appliance.status import StatusBoard

TOKEN = "test-token-0123456789abcdef"
DEADLINE_S = 60.0


@contextlib.asynccontextmanager
async def running_rig(
    tmp_path: Path, faults: list[str], token: str | None = TOKEN
) -> AsyncIterator[tuple[str, StatusBoard]]:
    """The demo rig with the page on 127.0.0.1 and a free port; yields (page URL, board)."""
    config = demo_config(tmp_path, faults)
    config = config.model_copy(update={"http": HttpConfig(port=0, token=token)})
    board = StatusBoard(config.gateway.id)
    stop = asyncio.Event()
    urls: list[str] = []
    run = asyncio.create_task(
        run_appliance(config, stop=stop, board=board, on_http_started=urls.append)
    )
    try:
        await wait_until(lambda: bool(urls) or run.done(), "the status page to listen")
        if run.done():
            run.result()
        yield urls[0], board
    finally:
        stop.set()
        await run
