"""The status page against hostile clients (issue 12): any header or body gets a 4xx with a
reason (never a 500), a flood of connections is capped and idle ones time out, so the process's
file descriptors stay bounded. Raw HTTP over asyncio streams, so any byte can be sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.status import StatusBoard
from appliance.web.limits import DEFAULT_LIMITS, ConnectionLimits
from appliance.web.server import serve_status

TOKEN = "test-token-0123456789abcdef"
DEADLINE_S = 10.0
"""Only a failure waits this long; every wait below ends at an event."""


@contextlib.asynccontextmanager
async def page(
    tmp_path: Path, limits: ConnectionLimits = DEFAULT_LIMITS
) -> AsyncIterator[tuple[str, int]]:
    """The status page of an idle board on 127.0.0.1; yields (host, port)."""
    board = StatusBoard("gw-1")
    async with serve_status(board, "127.0.0.1", 0, TOKEN, tmp_path, None, limits=limits) as url:
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        yield host, int(port)


async def exchange(address: tuple[str, int], request: bytes) -> tuple[int, bytes]:
    """Send raw bytes, read the answer to EOF; (status, body)."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_S)
        length = re.search(rb"\r\nContent-Length: *([0-9]+)", head, re.IGNORECASE)
        assert length is not None, head
        body = await asyncio.wait_for(reader.readexactly(int(length[1])), DEADLINE_S)
    finally:
        writer.close()
    return int(head.split(b" ", 2)[1]), body


def post(path: str, body: bytes, *headers: bytes) -> bytes:
    lines = [
        b"POST " + path.encode() + b" HTTP/1.1",
        b"Host: gw",
        b"Connection: close",
        b"Content-Length: " + str(len(body)).encode(),
        *headers,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


AUTH = b"Authorization: Bearer " + TOKEN.encode()
JSON = b"Content-Type: application/json"


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        ((b"Authorization: Bearer \xff", JSON), b'{"id": "x"}', 401, "wrong token"),
        ((b"Authorization: Bearer \xc3\xa9\xff\x00x", JSON), b"{}", 400, ""),  # NUL: the parser
        ((b"Authorization: Basic abc", JSON), b'{"id": "x"}', 401, "missing token"),
        ((AUTH, JSON), b"[" * 100_000 + b"]" * 100_000, 413, "too big"),
        ((AUTH, JSON), b"[" * 8_000 + b"]" * 8_000, 400, "nested too deeply"),
        ((AUTH, b"Content-Type: application/json; charset=x-bogus"), b"{}", 415, "UTF-8"),
        ((AUTH, b"Content-Type: text/plain; charset=latin-1"), b"{}", 415, "UTF-8"),
        ((AUTH, JSON), b'{"id": "\xff"}', 400, "not JSON"),
        ((AUTH, JSON), b'{"id": "\\ud800"}', 400, "id: must be printable"),
        ((AUTH, JSON), b'{"id": "x", "by": "a\\nb"}', 400, "by: must be printable"),
        ((AUTH, JSON), b'{"id": ' + b"9" * 5000 + b"}", 400, "not JSON"),
        ((AUTH, JSON), b'{"id": NaN}', 400, "not JSON"),
        ((AUTH, JSON), b'{"id": 5}', 400, "id: must be a string"),
        ((AUTH, JSON), b'["id"]', 400, "expected {"),
        ((AUTH, JSON), b'{"id": "x"}', 404, "no open alert"),
        ((AUTH, JSON), b'{"id": "x", "by": ""}', 404, "no open alert"),  # the page's empty name
    ],
    ids=lambda value: None if isinstance(value, tuple | bytes) else str(value),
)
async def test_any_header_or_body_gets_a_4xx_with_a_reason(
    tmp_path: Path, headers: tuple[bytes, ...], body: bytes, status: int, reason: str
) -> None:
    async with page(tmp_path) as address:
        answer = await exchange(address, post("/api/alerts/ack", body, *headers))
        assert answer[0] == status, answer
        if reason:
            assert reason in json.loads(answer[1])["error"]
        # the page goes on serving, and counted the refusal
        refused = await metric(address, "appliance_http_requests_refused_total")
        malformed = await metric(address, "appliance_http_requests_malformed_total")
        assert refused + malformed == (0 if status == 404 else 1)


async def metric(address: tuple[str, int], name: str) -> float:
    status, body = await exchange(
        address, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200
    found = re.search(rb"^" + name.encode() + rb" ([0-9.e+]+)$", body, re.MULTILINE)
    assert found is not None, body
    return float(found[1])


async def test_a_body_slower_than_the_body_timeout_is_refused(tmp_path: Path) -> None:
    async with page(tmp_path, ConnectionLimits(body_timeout_s=0.2)) as address:
        request = post("/api/alerts/ack", b'{"id": "x"}', AUTH, JSON)
        status, body = await exchange(address, request[:-4])  # 4 bytes never come
        assert status == 408 and "within 0.2 s" in json.loads(body)["error"]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n"], ids=["idle", "slow"])
async def test_idle_and_slow_header_connections_are_closed(tmp_path: Path, sent: bytes) -> None:
    async with page(tmp_path, ConnectionLimits(idle_timeout_s=0.2)) as address:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(sent)
        assert await asyncio.wait_for(reader.read(), DEADLINE_S) == b""  # closed by the server
        writer.close()


async def test_a_flood_of_connections_is_capped_and_a_client_is_still_served(
    tmp_path: Path,
) -> None:
    cap, flood = 20, 40
    async with page(tmp_path, ConnectionLimits(max_connections=cap)) as address:
        before = open_fds()
        clients = [await asyncio.open_connection(*address) for _ in range(flood)]
        try:
            # each connection beyond the cap closed the longest-idle one (and its server fd)
            for reader, _ in clients[: flood - cap]:
                assert await asyncio.wait_for(reader.read(), DEADLINE_S) == b""
            # server side: at most `cap` sockets besides the clients' own
            assert open_fds() <= before + flood + cap + 2
            status, body = await exchange(
                address, b"GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert status == 200 and json.loads(body)["gateway"] == "gw-1"
            assert await metric(address, "appliance_http_connections_evicted_total") >= flood - cap
        finally:
            for _, writer in clients:
                writer.close()


async def test_when_every_connection_is_busy_a_new_one_gets_503(tmp_path: Path) -> None:
    cap = 3
    async with page(tmp_path, ConnectionLimits(max_connections=cap)) as address:
        streams = []
        for _ in range(cap):  # /events streams: busy for as long as they are open
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b"data: "), DEADLINE_S)
            streams.append(writer)
        try:
            status, body = await exchange(address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 503 and "too many connections" in json.loads(body)["error"]
        finally:
            for writer in streams:
                writer.close()


async def test_event_streams_share_one_snapshot_per_second(tmp_path: Path) -> None:
    """A flood of /events clients costs one snapshot a second, not one per client."""
    async with page(tmp_path) as address:
        streams = []
        for _ in range(5):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            streams.append((reader, writer))
        try:
            nows = []
            for reader, _ in streams:  # the second message each got: the same tick's
                for _ in range(2):
                    await asyncio.wait_for(reader.readuntil(b"data: "), DEADLINE_S)
                message = await asyncio.wait_for(reader.readuntil(b"\n\n"), DEADLINE_S)
                nows.append(json.loads(message)["now"])
            assert len(set(nows)) <= 2  # a tick may fall between two clients' reads
        finally:
            for _, writer in streams:
                writer.close()
