"""The fleet page's HTTP server (aiohttp): two pages and the JSON API beside them, read-only.

GET /                      the fleet page (fleet.html)
GET /gateways/<id>         a gateway's page (gateway.html)
GET /api/fleet?q=&page=&per_page=   totals and one page of gateways, worst first
GET /api/gateways/<id>     one gateway: its row, assets, open findings with weekly trends, alerts

Bad input is refused with a JSON {"error": ...} naming what: an unknown parameter, a page that is
not a number, a search or query string too long, an id that cannot be a gateway's.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from appliance.uplink.schema import SchemaError, check_name
from receiver.db import Database
from receiver.errors import DatabaseError, ReceiverError
from receiver.web.fleet import (
    DAY_S,
    MAX_PER_PAGE,
    FleetQuery,
    fleet_page,
    gateway_row,
    weekly_medians,
)
from receiver.web.queries import ANALYZE_EVERY_S, TREND_WEEKS, FleetReads
from receiver.web.settings import HttpSettings

log = structlog.get_logger(__name__)

HERE = Path(__file__).parent
STATIC = {
    "fleet.html": "text/html",
    "gateway.html": "text/html",
    "fleet.js": "text/javascript",
    "fleet.css": "text/css",
}
MAX_QUERY_CHARS = 512
MAX_SEARCH_CHARS = 64
MAX_ID_CHARS = 128
MAX_PAGE = 100_000
FLEET_PARAMETERS = frozenset({"q", "page", "per_page"})
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # inline styles: the charts' and legends' colours; no inline script, no eval
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'",
}
Clock = Callable[[], float]
READS = web.AppKey("reads", FleetReads)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
PAGES = web.AppKey("pages", dict[str, bytes])


class FleetRows:
    """The whole fleet's rows, at most `max_age_s` old: a search, a page and the next request
    of the same minute share one summary query (two at once wait for the same one)."""

    def __init__(self, reads: FleetReads, clock: Clock, max_age_s: float = 5.0) -> None:
        self.reads = reads
        self.clock = clock
        self.max_age_s = max_age_s
        self._rows: list[dict[str, Any]] = []
        self._taken_at = -math.inf
        self._lock = asyncio.Lock()

    async def get(self) -> tuple[list[dict[str, Any]], float]:
        """The rows and the time they were taken."""
        async with self._lock:
            now = self.clock()
            if now - self._taken_at > self.max_age_s:
                self._rows = [gateway_row(row, now) for row in await self.reads.summary()]
                self._taken_at = now
            return self._rows, self._taken_at


ROWS = web.AppKey("rows", FleetRows)


class Refused(Exception):
    """Bad input: answered with `status` and the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse long query strings before any handler runs; bad input and database failures
    answer as JSON with a reason; every answer carries the page's headers."""
    try:
        if len(request.query_string) > MAX_QUERY_CHARS:
            raise Refused(414, f"query string of {len(request.query_string)} characters: "
                               f"at most {MAX_QUERY_CHARS}")  # fmt: skip
        response = await handler(request)
    except Refused as exc:
        response = web.json_response({"error": str(exc)}, status=exc.status)
    except DatabaseError as exc:
        log.warning("fleet_page_db_error", path=request.path, error=str(exc))
        response = web.json_response({"error": "the database is not available"}, status=503)
    response.headers.update(HEADERS)
    return response


def build_app(
    database: Database, clock: Clock = time.time, rows_max_age_s: float = 5.0
) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=1024)
    app[READS] = FleetReads(database)
    app[CLOCK] = clock
    app[ROWS] = FleetRows(app[READS], clock, rows_max_age_s)
    app.cleanup_ctx.append(keep_statistics)
    app[PAGES] = {name: (HERE / name).read_bytes() for name in STATIC}
    app.router.add_get("/", static("fleet.html"))
    app.router.add_get("/fleet.js", static("fleet.js"))
    app.router.add_get("/fleet.css", static("fleet.css"))
    app.router.add_get("/gateways/{gateway}", gateway_page)
    app.router.add_get("/api/fleet", fleet_api)
    app.router.add_get("/api/gateways/{gateway}", gateway_api)
    return app


def static(name: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=request.app[PAGES][name], content_type=STATIC[name])

    return handler


async def gateway_page(request: web.Request) -> web.StreamResponse:
    gateway_id(request)
    return await static("gateway.html")(request)


async def fleet_api(request: web.Request) -> web.StreamResponse:
    query = fleet_query(request)
    rows, taken_at = await request.app[ROWS].get()
    return web.json_response(fleet_page(rows, query, taken_at))


async def keep_statistics(app: web.Application) -> AsyncIterator[None]:
    """The planner's statistics refreshed at start and every ANALYZE_EVERY_S."""

    async def refresh() -> None:
        while True:
            try:
                await app[READS].refresh_statistics()
            except DatabaseError as exc:
                log.warning("fleet_page_analyze_failed", error=str(exc))
            await asyncio.sleep(ANALYZE_EVERY_S)

    task = asyncio.create_task(refresh())
    yield
    task.cancel()


async def gateway_api(request: web.Request) -> web.StreamResponse:
    gateway = gateway_id(request)
    reads, now = request.app[READS], request.app[CLOCK]()
    rows = await reads.summary(gateway)
    if not rows:
        raise Refused(404, f"no gateway {gateway!r} is known to this receiver")
    row = gateway_row(rows[0], now)
    findings = await reads.open_findings(gateway)
    first_day = int(now // DAY_S) - 7 * TREND_WEEKS
    for finding in findings:
        daily = await reads.daily_medians(gateway, finding["asset"], first_day)
        finding["weekly"] = weekly_medians(daily, finding["features"][:3], first_day)
    body = {
        "now": now,
        "gateway": row,
        "assets": await reads.assets(gateway),
        "findings": findings,
        "alerts": await reads.recent_alerts(gateway),
    }
    return web.json_response(body)


def gateway_id(request: web.Request) -> str:
    text = request.match_info["gateway"]
    if len(text) > MAX_ID_CHARS:
        raise Refused(400, f"gateway id of {len(text)} characters: at most {MAX_ID_CHARS}")
    try:
        return check_name(text, "gateway id")
    except SchemaError as exc:
        raise Refused(400, str(exc)) from None


def fleet_query(request: web.Request) -> FleetQuery:
    unknown = sorted(set(request.query) - FLEET_PARAMETERS)
    if unknown:
        raise Refused(400, f"unknown parameter(s) {', '.join(unknown)}: "
                           f"only {', '.join(sorted(FLEET_PARAMETERS))}")  # fmt: skip
    search = request.query.get("q", "")
    if len(search) > MAX_SEARCH_CHARS:
        raise Refused(400, f"q: a search of {len(search)} characters; at most {MAX_SEARCH_CHARS}")
    page = whole_number(request, "page", 1, 1, MAX_PAGE)
    per_page = whole_number(request, "per_page", 100, 1, MAX_PER_PAGE)
    return FleetQuery(search, page, per_page)


def whole_number(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 9 or not low <= int(text) <= high:
        raise Refused(400, f"{name}: {text[:20]!r} is not a whole number from {low} to {high}")
    return int(text)


async def start_http(settings: HttpSettings, database: Database) -> web.AppRunner:
    """Listen; the runner, for the caller to clean up. ReceiverError if the address cannot be
    had (in use, not ours): the operator asked for the page, so the receiver does not start."""
    runner = web.AppRunner(build_app(database), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ReceiverError(f"--http {settings.host}:{settings.port}: {exc.strerror}") from exc
    log.info("fleet_page_listening", url=f"http://{settings.host}:{settings.port}/")
    return runner
