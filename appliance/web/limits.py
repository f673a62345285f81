"""What a flood of page clients may cost: a cap on open connections and timeouts, so the status
page can never use up the process's file descriptors (capture, store and uplink reopen files and
sockets) or hold connections forever.

- At most `max_connections` are open. At the cap, a new connection closes the longest-idle one
  (no request in progress: an idle keep-alive or a client still sending its headers); when every
  connection is busy (a request running, an /events stream), the new one gets a 503 and is
  closed at once.
- `idle_timeout_s`: aiohttp's keep-alive timer, which also runs from a connection's opening, so a
  connection without a complete request head that long after it opened or after its last
  response is closed (slow headers and idle keep-alives alike).
- `body_timeout_s`: the handlers read a body under this deadline (appliance/web/server.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from appliance.config import HttpConfig

log = structlog.get_logger(__name__)

LOG_EVERY_S = 10.0
LISTEN_BACKLOG = 128
"""aiohttp's default listen backlog; a smaller connection cap lowers it (CappedSite)."""

BUSY_BODY = b'{"error": "too many connections to the status page: try again shortly"}'
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nRetry-After: 5\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BUSY_BODY), BUSY_BODY)
)


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 256
    idle_timeout_s: float = 15.0
    body_timeout_s: float = 60.0

    @classmethod
    def from_config(cls, http: HttpConfig) -> ConnectionLimits:
        return cls(http.max_connections, http.idle_timeout_s, http.body_timeout_s)


@dataclass(eq=False)  # a collector of the /metrics registry, which hashes it: by identity
class ConnectionStats:
    open: int = 0
    refused: int = 0
    """Connections answered 503 because every open one was busy."""
    evicted: int = 0
    """Idle connections closed to make room for a new one."""
    malformed: int = 0
    """Requests aiohttp's parser refused with a 400 (a NUL in a header, a broken chunk)."""
    refused_requests: int = 0
    """Requests a handler refused for what they sent (token, headers, body): 4xx."""

    def collect(self) -> Iterator[Metric]:
        """These counters as metric families: a collector of the page's /metrics registry."""
        yield GaugeMetricFamily(
            "appliance_http_connections", "Open connections to the page.", self.open
        )
        for name, help_text, value in (
            ("appliance_http_connections_refused_total",
             "Connections answered 503: every open one was busy.", self.refused),
            ("appliance_http_connections_evicted_total",
             "Idle connections closed to make room for a new one.", self.evicted),
            ("appliance_http_requests_malformed_total",
             "Requests the HTTP parser refused (400).", self.malformed),
            ("appliance_http_requests_refused_total",
             "Action requests refused for their token, headers or body (4xx).",
             self.refused_requests),
        ):  # fmt: skip
            yield CounterMetricFamily(name, help_text, value)


class ConnectionGuard:
    """The listening socket's protocol factory, in front of aiohttp's: counts what is open."""

    def __init__(self, max_connections: int) -> None:
        self.server: web.Server | None = None
        """aiohttp's handler factory, known once the runner is set up."""
        self.max_connections = max_connections
        self._open: dict[RequestHandler, _Connection] = {}
        self.stats = ConnectionStats()
        self._logged_at = -LOG_EVERY_S

    def __call__(self) -> asyncio.Protocol:
        if len(self._open) >= self.max_connections and not self._evict_idle():
            self.stats.refused += 1
            self._log_pressure()
            return _Busy()
        assert self.server is not None, "ConnectionGuard.server is set before listening"
        handler = self.server()
        connection = _Connection(self, handler)
        self._open[handler] = connection
        self.stats.open = len(self._open)
        return connection

    def request_started(self, handler: object) -> None:
        if isinstance(handler, RequestHandler) and handler in self._open:
            self._open[handler].busy += 1

    def request_ended(self, handler: object) -> None:
        if isinstance(handler, RequestHandler) and handler in self._open:
            connection = self._open[handler]
            connection.busy -= 1
            connection.idle_since = asyncio.get_running_loop().time()

    def release(self, connection: _Connection) -> None:
        self._open.pop(connection.handler, None)
        self.stats.open = len(self._open)

    def _evict_idle(self) -> bool:
        idle = [c for c in self._open.values() if c.busy == 0 and c.transport is not None]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.idle_since)
        self.release(oldest)
        assert oldest.transport is not None
        oldest.transport.abort()
        self.stats.evicted += 1
        self._log_pressure()
        return True

    def _log_pressure(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning(
                "http_connection_cap_reached",
                max_connections=self.max_connections,
                refused=self.stats.refused,
                evicted_idle=self.stats.evicted,
            )


class ServerLog(logging.Logger):
    """aiohttp's server logger. A request its parser refused (answered 400 with the reason) is
    counted and logged as one warning line at most every LOG_EVERY_S, not a traceback per
    request; any other error keeps its traceback."""

    def __init__(self, stats: ConnectionStats) -> None:
        super().__init__("aiohttp.server")
        self.parent = logging.getLogger("aiohttp")
        self._stats = stats
        self._logged_at = -LOG_EVERY_S

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if not isinstance(exc_info, HttpProcessingError):
            super().exception(msg, *args, exc_info=exc_info, **kwargs)
            return
        error = exc_info
        self._stats.malformed += 1
        now = asyncio.get_running_loop().time()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            reason = str(error.message).split(":")[0].strip()[:80]  # never the header: a token?
            log.warning("http_malformed_request", status=error.code, reason=reason,
                        malformed_total=self._stats.malformed)  # fmt: skip


class _Connection(asyncio.Protocol):
    """aiohttp's request handler for one connection; every event is passed on unchanged."""

    def __init__(self, guard: ConnectionGuard, handler: RequestHandler) -> None:
        self.guard = guard
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.busy = 0
        self.idle_since = asyncio.get_running_loop().time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> None:
        self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        self.handler.connection_lost(exc)


class _Busy(asyncio.Protocol):
    """A connection over the cap: a 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(BUSY_RESPONSE)
        transport.close()


@web.middleware
async def track_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Marks the request's connection busy while its handler runs (never evicted then)."""
    guard = request.app.get(GUARD)
    if guard is None:
        return await handler(request)
    guard.request_started(request.protocol)
    try:
        return await handler(request)
    finally:
        guard.request_ended(request.protocol)


GUARD: web.AppKey[ConnectionGuard] = web.AppKey("connection_guard", ConnectionGuard)


class CappedSite(web.BaseSite):
    """A TCP site whose connections go through a ConnectionGuard."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard):
        # asyncio accepts up to `backlog` queued connections in one go before any is closed
        # again (evicted or refused): a backlog over the cap lets one burst take that many
        # descriptors at once (with a low descriptor limit: "Too many open files" at accept)
        super().__init__(runner, backlog=min(LISTEN_BACKLOG, guard.max_connections))
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard, self._host, self._port, backlog=self._backlog
        )


DEFAULT_LIMITS = ConnectionLimits()
