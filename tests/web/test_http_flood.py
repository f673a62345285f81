"""Issue 12's flood, scaled down: `appliance run` in its own process with a soft limit of 128 file
descriptors (so the flood's effect shows with 150 connections instead of 1,100), its page
capped at 20 connections, an emulated MCU unplugged every 2 s. While 150 idle clients hold
their sockets the page still answers, the process's descriptors stay bounded, and capture goes
on: the serial link reopens its port after each unplug and frames keep arriving. Without the cap
the server's accepted sockets use up the limit, the page stops answering and the reopen fails
with "Too many open files"."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import sys
from pathlib import Path
from typing import Any

from config_helpers import minimal_config
from waiting import wait_until

FD_LIMIT = 128
CAP = 20
FLOOD = 150
DEADLINE_S = 60.0


def config_text(tmp_path: Path) -> str:
    page = f"""
[http]
port = 0
token = "test-token-0123456789abcdef"
max_connections = {CAP}
"""
    return minimal_config(tmp_path, page, emulate='faults = ["unplug=2", "unplug_for=0.3"]\n')


def low_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, hard))


async def get_status_once(host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return await asyncio.wait_for(reader.read(), DEADLINE_S)
    finally:
        writer.close()


async def get_status(host: str, port: int) -> dict[str, Any]:
    """/api/status, asked again (as a browser's next poll would) while the answer is a reset, a
    close or a 503: under the flood the kernel may hand the server a flood connection after
    ours, and that newcomer evicts ours if its request is not yet running. Fails at the
    deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while True:
        with contextlib.suppress(ConnectionResetError):
            answer = await get_status_once(host, port)
            head, _, body = answer.partition(b"\r\n\r\n")
            if answer and not head.startswith(b"HTTP/1.1 503"):  # empty: closed unanswered
                assert head.startswith(b"HTTP/1.1 200"), head
                status: dict[str, Any] = json.loads(body)
                return status
        assert loop.time() < deadline, "the page never answered through the flood"
        await asyncio.sleep(0.2)  # a client's retry interval; the deadline bounds it


async def test_a_flood_of_page_clients_never_starves_capture(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text(config_text(tmp_path))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.cli", "run", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=low_fd_limit,
    )  # fmt: skip
    assert process.stdout is not None
    output: list[str] = []

    async def keep_reading() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            output.append(line.decode(errors="replace"))

    reader = asyncio.create_task(keep_reading())
    clients: list[asyncio.StreamWriter] = []
    try:
        await wait_until(
            lambda: (
                any("status_page_serving" in line for line in output)
                or process.returncode is not None
            ),
            "the page to listen",
        )
        found = re.search(r"http://([0-9.]+):([0-9]+)/", "".join(output))
        assert found is not None, "".join(output)
        host, port = found[1], int(found[2])
        await wait_until(lambda: "serial_connected" in "".join(output), "capture to start")
        fds_before = len(os.listdir(f"/proc/{process.pid}/fd"))

        for _ in range(FLOOD):
            _, writer = await asyncio.open_connection(host, port)
            clients.append(writer)
        status = await get_status(host, port)  # the page answers through the flood
        fds_during = len(os.listdir(f"/proc/{process.pid}/fd"))
        assert fds_during <= fds_before + CAP + 5, (fds_before, fds_during)

        serial = status["serial"]["mcu0"]
        progress: dict[str, Any] = {}

        async def capture_went_on() -> bool:
            progress.update((await get_status(host, port))["serial"]["mcu0"])
            return bool(
                progress["reconnects"] > serial["reconnects"]
                and progress["frames"] > serial["frames"]
                and progress["connected"]
            )

        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while not await capture_went_on():
            assert asyncio.get_running_loop().time() < deadline, (serial, progress)
            await asyncio.sleep(0.2)  # polling the page; the deadline bounds it
        assert "Too many open files" not in "".join(output)
    finally:
        for writer in clients:
            writer.close()
        if process.returncode is None:
            process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), DEADLINE_S)
        if process.returncode is None:
            process.kill()
            await process.wait()
        await reader
