"""The aiohttp app: the page, /api/status, /events (server-sent events), /metrics, and the
actions that change state (acknowledging an alert, a verdict on an anomaly episode, installing
a model bundle, rolling a model back, sending a test SMS), which need the configured bearer
token."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from appliance.detect.verdicts import MAX_NOTE_CHARS
from appliance.errors import ConfigError, StoreError
from appliance.ota.archive import MAX_ARCHIVE_BYTES
from appliance.ota.manager import ModelManager, Outcome
from appliance.ota.release.bundle import RELEASE_LIMITS
from appliance.ota.release.manager import ReleaseManager
from appliance.sms.sender import SmsIntake
from appliance.status import StatusBoard
from appliance.web import envelope, history, spectrum
from appliance.web.history import ChartSources
from appliance.web.limits import (
    DEFAULT_LIMITS,
    GUARD,
    CappedSite,
    ConnectionGuard,
    ConnectionLimits,
    ServerLog,
    track_requests,
)
from appliance.web.metrics import CONTENT_TYPE, METRICS, metrics_registry, render_metrics
from appliance.web.snapshot import WebState
from appliance.web.verdicts import VERDICT_BODY, judge_episode, verdict_json

log = structlog.get_logger(__name__)

PAGE = Path(__file__).with_name("page.html")
CHARTS_SCRIPT = Path(__file__).with_name("charts.js")
EVENT_EVERY_S = 1.0
STATE: web.AppKey[WebState] = web.AppKey("state", WebState)
TOKEN: web.AppKey[str | None] = web.AppKey("token", str)
STOPPING: web.AppKey[asyncio.Event] = web.AppKey("stopping", asyncio.Event)
MODELS: web.AppKey[ModelManager | None] = web.AppKey("models", ModelManager)
RELEASES: web.AppKey[ReleaseManager | None] = web.AppKey("releases", ReleaseManager)
MODELS_OFF = "model updates are disabled: no [models] table in the config"
RELEASES_OFF = "appliance updates are disabled: no [release] table in the config"
T = TypeVar("T")
SMS: web.AppKey[SmsIntake | None] = web.AppKey("sms", SmsIntake)
LIMITS: web.AppKey[ConnectionLimits] = web.AppKey("limits", ConnectionLimits)


class EventFeed:
    """The /events message, encoded once per tick for every client (64 streams cost one
    snapshot a second, not 64)."""

    def __init__(self) -> None:
        self.message = b""
        self._tick = asyncio.Event()

    def publish(self, message: bytes) -> None:
        self.message = message
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def next(self) -> bytes:
        await self._tick.wait()
        return self.message


FEED: web.AppKey[EventFeed] = web.AppKey("feed", EventFeed)
ARCHIVE_TYPES = ("application/x-tar", "application/octet-stream")
MAX_JSON_BYTES = 16 * 1024
"""An action's JSON body is a few short fields; anything bigger is refused unread."""
UTF8_CHARSETS = ("utf-8", "utf8", "us-ascii", "ascii")


class Refused(Exception):
    """A request refused for what it sent: answered with `status` and `reason`, never a 500."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def build_app(
    state: WebState,
    token: str | None,
    models: ModelManager | None,
    sms: SmsIntake | None = None,
    limits: ConnectionLimits = DEFAULT_LIMITS,
    guard: ConnectionGuard | None = None,
    charts: ChartSources | None = None,
    releases: ReleaseManager | None = None,
) -> web.Application:
    # Bodies are read only after the token is checked; the largest legitimate one is a bundle.
    biggest = RELEASE_LIMITS.max_bytes if releases is not None else MAX_ARCHIVE_BYTES
    app = web.Application(client_max_size=biggest, middlewares=[track_requests, refusals])
    app[LIMITS] = limits
    app[GUARD] = guard if guard is not None else ConnectionGuard(limits.max_connections)
    app[STATE] = state
    app[METRICS] = metrics_registry(state, app[GUARD].stats)
    app[TOKEN] = token
    app[MODELS] = models
    app[RELEASES] = releases
    app[SMS] = sms
    app[STOPPING] = asyncio.Event()
    app[FEED] = EventFeed()
    app.router.add_get("/", _page)
    app.router.add_get("/static/charts.js", _charts_script)
    if charts is not None:  # history and spectra: /api/history..., /api/spectrum...
        history.add_routes(app, charts)
        spectrum.add_routes(app)
    envelope.add_routes(app, state.board)
    app.router.add_get("/api/status", _status)
    app.router.add_get("/events", _events)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/api/alerts/ack", _ack)
    app.router.add_post("/api/alerts/verdict", _judge)
    app.router.add_post("/api/models", _install_model)
    app.router.add_post("/api/models/rollback", _roll_back_model)
    app.router.add_post("/api/release", _install_release)
    app.router.add_post("/api/release/rollback", _roll_back_release)
    app.router.add_post("/api/sms/test", _test_sms)

    async def on_shutdown(app: web.Application) -> None:
        app[STOPPING].set()
        app[FEED].publish(b"")  # wakes every stream to see it

    app.on_shutdown.append(on_shutdown)
    return app


@contextlib.asynccontextmanager
async def serve_status(
    board: StatusBoard,
    host: str,
    port: int,
    token: str | None,
    store_dir: Path,
    models: ModelManager | None,
    sms: SmsIntake | None = None,
    on_started: Callable[[str], None] | None = None,
    limits: ConnectionLimits = DEFAULT_LIMITS,
    charts: ChartSources | None = None,
    releases: ReleaseManager | None = None,
) -> AsyncIterator[str]:
    """Serve the page while inside; yields its URL (the actual port when `port` is 0)."""
    state = WebState(board, store_dir, token_set=token is not None)
    guard = ConnectionGuard(limits.max_connections)
    app = build_app(state, token, models, sms, limits, guard, charts, releases)
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=2.0,
        keepalive_timeout=limits.idle_timeout_s,
        logger=ServerLog(guard.stats),
    )
    await runner.setup()
    guard.server = runner.server
    sampler = asyncio.create_task(
        _sample_every(state, app[FEED], EVENT_EVERY_S), name="web-sampler"
    )
    try:
        site = CappedSite(runner, host, port, guard)
        try:
            await site.start()
        except OSError as exc:  # busy port, unknown address: the key to fix, not a traceback
            key = "http.port" if exc.errno in (errno.EADDRINUSE, errno.EACCES) else "http.host"
            reason = exc.strerror or str(exc)
            raise ConfigError(f"{key}: cannot listen on {host}:{port}: {reason}") from None
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        url = f"http://{shown}:{bound[1]}/"
        log.info("status_page_serving", url=url, actions_enabled=token is not None)
        if on_started is not None:
            on_started(url)
        yield url
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        await runner.cleanup()


async def _sample_every(state: WebState, feed: EventFeed, every_s: float) -> None:
    while True:
        state.sample()
        feed.publish(_event_message(state))
        await asyncio.sleep(every_s)


def _event_message(state: WebState) -> bytes:
    return f"data: {json.dumps(state.snapshot())}\n\n".encode()


async def _page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html")


async def _charts_script(request: web.Request) -> web.Response:
    text = CHARTS_SCRIPT.read_text(encoding="utf-8")
    return web.Response(text=text, content_type="application/javascript")


async def _status(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].snapshot())


async def _metrics(request: web.Request) -> web.Response:
    body = render_metrics(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _events(request: web.Request) -> web.StreamResponse:
    """One JSON snapshot per second until the client goes away or the server stops."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    stopping, feed = request.app[STOPPING], request.app[FEED]
    message = feed.message or _event_message(request.app[STATE])
    with contextlib.suppress(ConnectionResetError):
        while not stopping.is_set():
            await response.write(message)
            message = await feed.next()
    return response


def _refuse(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


def _unauthorised(request: web.Request) -> web.Response | None:
    """The refusal for a request without the configured bearer token; None when it has it."""
    token = request.app[TOKEN]
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token is None:
        refusal = _refuse(
            403, "actions are disabled: no [http] token is configured on this gateway"
        )
    elif scheme.lower() != "bearer" or not given:
        refusal = _refuse(401, "missing token: send 'Authorization: Bearer <token>'")
    elif not hmac.compare_digest(_header_bytes(given.strip()), token.encode()):
        refusal = _refuse(401, "wrong token")
    else:
        return None
    request.app[GUARD].stats.refused_requests += 1
    log.warning("action_refused", path=request.path, peer=request.remote, status=refusal.status)
    return refusal


def _header_bytes(value: str) -> bytes:
    """A header value as the bytes that came in (aiohttp decodes them UTF-8, surrogateescape)."""
    return value.encode("utf-8", "surrogateescape")


async def _json_object(request: web.Request, expected: str) -> dict[str, Any]:
    """The body as a JSON object; Refused (4xx naming what is wrong, with `expected`) else."""
    if request.charset is not None and request.charset.lower() not in UTF8_CHARSETS:
        raise Refused(415, f"send JSON as UTF-8, not charset={request.charset[:40]!r}")
    data = await _read_body(request, MAX_JSON_BYTES, "JSON body")
    try:
        body = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise Refused(400, f"JSON nested too deeply; expected {expected}") from None
    except ValueError as exc:  # also not UTF-8, a lone surrogate, a 5,000-digit number
        raise Refused(400, f"not JSON ({str(exc)[:80]}); expected {expected}") from None
    if not isinstance(body, dict):
        raise Refused(400, f"expected {expected}")
    return body


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _text_field(
    body: dict[str, Any], key: str, *, max_chars: int, default: str | None = None
) -> str:
    """A short printable string field; Refused naming the key otherwise."""
    value = body.get(key)
    if default is not None and value in (None, ""):  # the page sends an empty name field as ""
        return default
    if value is None:
        raise Refused(400, f"{key}: missing")
    if not isinstance(value, str):
        raise Refused(400, f"{key}: must be a string")
    if not 1 <= len(value) <= max_chars:
        raise Refused(400, f"{key}: must be 1 to {max_chars} characters")
    if not value.isprintable():  # control characters, lone surrogates
        raise Refused(400, f"{key}: must be printable text")
    return value


async def _read_body(request: web.Request, limit: int, what: str) -> bytes:
    """The whole body, at most `limit` bytes, within the body timeout; Refused otherwise."""
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, f"{what} too big: the limit is {limit} bytes")
    timeout_s = request.app[LIMITS].body_timeout_s
    data = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.read(limit + 1 - len(data)):
                data += chunk
                if len(data) > limit:
                    raise Refused(413, f"{what} too big: the limit is {limit} bytes")
    except TimeoutError:
        raise Refused(408, f"{what} not received in full within {timeout_s:g} s") from None
    except HttpProcessingError as exc:  # a broken chunked encoding, a short body
        raise Refused(400, f"{what} unreadable: {exc.message}") from None
    return bytes(data)


@web.middleware
async def refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A Refused raised by a handler becomes its 4xx answer, logged in one line."""
    try:
        return await handler(request)
    except Refused as refused:
        request.app[GUARD].stats.refused_requests += 1
        log.warning(
            "request_refused", path=request.path, peer=request.remote, status=refused.status,
            reason=refused.reason,
        )  # fmt: skip
        response = _refuse(refused.status, refused.reason)
        if refused.status in (408, 413):  # the rest of the body is not worth waiting for
            response.force_close()
        return response


ACK_BODY = '{"id": "<alert id>", "by": "<name>"}'


async def _ack(request: web.Request) -> web.Response:
    if (refusal := _unauthorised(request)) is not None:
        return refusal
    body = await _json_object(request, ACK_BODY)
    alert_id = _text_field(body, "id", max_chars=200)
    by = _text_field(body, "by", max_chars=64, default="unknown")
    try:
        ack = await request.app[STATE].ack(alert_id, by)
    except ValueError as exc:
        return _refuse(400, str(exc))
    except StoreError as exc:
        return _refuse(503, f"acknowledgement not saved: {exc}")
    if ack is None:
        return _refuse(404, f"no open alert {alert_id!r}")
    log.info("alert_acknowledged", alert=alert_id, by=by, peer=request.remote)
    return web.json_response({"id": alert_id, "by": ack.by, "at": ack.at})


async def _judge(request: web.Request) -> web.Response:
    """An operator's verdict on an anomaly episode: not a fault, or a real fault."""
    if (refusal := _unauthorised(request)) is not None:
        return refusal
    body = await _json_object(request, VERDICT_BODY)
    asset = _text_field(body, "asset", max_chars=64)
    by = _text_field(body, "by", max_chars=64, default="unknown")
    note = _text_field(body, "note", max_chars=MAX_NOTE_CHARS, default="")
    state, raised_t = request.app[STATE], body.get("t")
    try:
        judged = await judge_episode(state.board, asset, raised_t, body.get("verdict"), by, note)
    except ValueError as exc:
        return _refuse(400, str(exc))
    except StoreError as exc:
        return _refuse(503, f"verdict not saved: {exc}")
    if judged is None:
        return _refuse(404, f"no anomaly of {asset!r} raised at t={raised_t!r} in the alerts")
    log.info("episode_verdict", asset=asset, raised_t=raised_t, verdict=judged.verdict, by=by)
    return web.json_response(verdict_json(judged))


def _enabled(request: web.Request, key: web.AppKey[T | None], disabled: str) -> T | web.Response:
    """The manager under `key` once the token is checked, or the refusal to answer."""
    if (refusal := _unauthorised(request)) is not None:
        return refusal
    manager = request.app[key]
    if manager is None:
        return _refuse(403, disabled)
    return manager


async def _archive(request: web.Request, limit: int, what: str) -> bytes | web.Response:
    """An upload's body: a plain tar (ota/archive.py), at most `limit` bytes."""
    if request.content_type not in ARCHIVE_TYPES:
        return _refuse(415, f"send the {what} as the body, as {' or '.join(ARCHIVE_TYPES)}")
    data = await _read_body(request, limit, what)
    log.info("archive_upload", what=what, peer=request.remote, bytes=len(data))
    return data


async def _install_model(request: web.Request) -> web.Response:
    """The body is a bundle archive: a plain tar of a signed bundle's files (ota/archive.py)."""
    models = _enabled(request, MODELS, MODELS_OFF)
    if isinstance(models, web.Response):
        return models
    data = await _archive(request, MAX_ARCHIVE_BYTES, "bundle archive")
    if isinstance(data, web.Response):
        return data
    return _answer(await models.install(data, source=f"http:{request.remote}"), 422)


async def _roll_back_model(request: web.Request) -> web.Response:
    models = _enabled(request, MODELS, MODELS_OFF)
    if isinstance(models, web.Response):
        return models
    body = await _json_object(request, '{"asset": "<asset name>"}')
    asset = _text_field(body, "asset", max_chars=64)
    log.info("model_rollback_requested", peer=request.remote, asset=asset)
    reason = "rollback requested on the status page"
    return _answer(await models.rollback(asset, reason, source=f"http:{request.remote}"), 409)


async def _install_release(request: web.Request) -> web.Response:
    """The body is a release archive (ota/release/bundle.py); accepted, the appliance restarts
    into it for its trial."""
    releases = _enabled(request, RELEASES, RELEASES_OFF)
    if isinstance(releases, web.Response):
        return releases
    data = await _archive(request, RELEASE_LIMITS.max_bytes, "release archive")
    if isinstance(data, web.Response):
        return data
    return _answer(await releases.install(data, source=f"http:{request.remote}"), 422)


async def _roll_back_release(request: web.Request) -> web.Response:
    releases = _enabled(request, RELEASES, RELEASES_OFF)
    if isinstance(releases, web.Response):
        return releases
    log.info("release_rollback_requested", peer=request.remote)
    reason = "rollback requested on the status page"
    return _answer(await releases.rollback(reason, source=f"http:{request.remote}"), 409)


async def _test_sms(request: web.Request) -> web.Response:
    """Queue a test SMS to every recipient (within their rate limits)."""
    if (refusal := _unauthorised(request)) is not None:
        return refusal
    sms = request.app[SMS]
    if sms is None:
        return _refuse(403, "SMS is not configured on this gateway (no [sms] table)")
    body = await _json_object(request, '{"by": "<name>"}')
    by = _text_field(body, "by", max_chars=64, default="unknown")
    queued = await sms.send_test(f"{by} on the status page")
    log.info("sms_test_requested", by=by, peer=request.remote, queued=queued)
    if not queued:
        return _refuse(429, "no test SMS queued: every recipient reached its SMS limit")
    return web.json_response({"queued": queued, "by": by})


def _answer(outcome: Outcome, refused_status: int) -> web.Response:
    """The outcome as JSON: 200 when accepted, else `refused_status` with the reason as error."""
    body = outcome.to_dict()
    if outcome.accepted:
        return web.json_response(body)
    return web.json_response({**body, "error": outcome.message}, status=refused_status)
