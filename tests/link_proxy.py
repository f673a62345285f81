"""A TCP proxy on loopback that plays a bad link between a client and a real broker (tests and
bench/bench_thin_link.py): each direction through its own token bucket (`rate_bps`, changeable
while it runs; None: unthrottled), `freeze()` stops every byte either way without closing
anything (a half-open link; new connections are accepted and hang), `thaw()` lets them flow
again, `revive()` thaws with the connections it held gone, `drop()` closes every connection (a
reset), `refusing` closes new ones at once, and counts of what went each way."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

CHUNK = 512
"""Bytes read at a time: small, so the throttle holds little in the proxy itself."""


@dataclass
class TokenBucket:
    rate_bps: float | None
    burst: float = 1024.0
    _tokens: float = 0.0
    _at: float = field(default_factory=time.monotonic)

    async def take(self, size: int) -> None:
        while self.rate_bps is not None:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_bps)
            self._at = now
            if self._tokens >= min(size, self.burst):
                self._tokens -= size
                return
            await asyncio.sleep((min(size, self.burst) - self._tokens) / self.rate_bps)


class LinkProxy:
    """`async with LinkProxy(port) as proxy:` listens on proxy.port and forwards to
    127.0.0.1:`target_port`."""

    def __init__(self, target_port: int, rate_bps: float | None = None) -> None:
        self.target_port = target_port
        self.up = TokenBucket(rate_bps)
        self.down = TokenBucket(rate_bps)
        self.port = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self.refusing = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def rate_bps(self) -> float | None:
        return self.up.rate_bps

    @rate_bps.setter
    def rate_bps(self, rate: float | None) -> None:
        self.up.rate_bps = self.down.rate_bps = rate

    async def __aenter__(self) -> LinkProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        self.refusing = True
        self.rate_bps = None
        self.thaw()
        self.drop()  # every pump then ends on its own
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def revive(self) -> None:
        """The link is back after being dead: the connections it held are gone (both ends gave
        up on them meanwhile), new ones flow."""
        self.drop()
        self.thaw()

    def drop(self) -> None:
        """Close every connection, both sides (new ones are still accepted)."""
        for client, broker in list(self._pairs):
            for writer in (client, broker):
                with contextlib.suppress(Exception):
                    writer.transport.abort()
        self._pairs.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.refusing:
                client_w.transport.abort()
                return
            await self._flowing.wait()  # a dead link does not even connect
            try:
                broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                client_w.transport.abort()
                return
            pair = (client_w, broker_w)
            self._pairs.add(pair)
            self.connections += 1
            await asyncio.gather(
                self._pump(client_r, broker_w, self.up, "up"),
                self._pump(broker_r, client_w, self.down, "down"),
                return_exceptions=True,
            )
            self._pairs.discard(pair)
            for writer in pair:
                writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        bucket: TokenBucket,
        direction: str,
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                await self._flowing.wait()
                await bucket.take(len(data))
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
                if direction == "up":
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
        finally:
            writer.transport.abort()  # one side closed: so does the other (no half-close)
