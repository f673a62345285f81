"""The aiohttp app: the page, /api/status, /events (server-sent events), /metrics, and the
actions that change state (acknowledging an alert, installing a model bundle, rolling a model
back, sending a test SMS), which need the configured bearer token."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from appliance.errors import ConfigError, StoreError
from appliance.ota.archive import MAX_ARCHIVE_BYTES
from appliance.ota.manager import ModelManager, Outcome
from appliance.sms.sender import SmsIntake
from appliance.status import StatusBoard
from appliance.web.metrics import CONTENT_TYPE, render_metrics
from appliance.web.snapshot import WebState

log = structlog.get_logger(__name__)

PAGE = Path(__file__).with_name("page.html")
EVENT_EVERY_S = 1.0
STATE: web.AppKey[WebState] = web.AppKey("state", WebState)
TOKEN: web.AppKey[str | None] = web.AppKey("token", str)
STOPPING: web.AppKey[asyncio.Event] = web.AppKey("stopping", asyncio.Event)
MODELS: web.AppKey[ModelManager | None] = web.AppKey("models", ModelManager)
SMS: web.AppKey[SmsIntake | None] = web.AppKey("sms", SmsIntake)
ARCHIVE_TYPES = ("application/x-tar", "application/octet-stream")


def build_app(
    state: WebState, token: str | None, models: ModelManager | None, sms: SmsIntake | None = None
) -> web.Application:
    # Bodies are read only after the token is checked; the largest legitimate one is a bundle.
    app = web.Application(client_max_size=MAX_ARCHIVE_BYTES)
    app[STATE] = state
    app[TOKEN] = token
    app[MODELS] = models
    app[SMS] = sms
    app[STOPPING] = asyncio.Event()
    app.router.add_get("/", _page)
    app.router.add_get("/api/status", _status)
    app.router.add_get("/events", _events)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/api/alerts/ack", _ack)
    app.router.add_post("/api/models", _install_model)
    app.router.add_post("/api/models/rollback", _roll_back_model)
    app.router.add_post("/api/sms/test", _test_sms)

    async def on_shutdown(app: web.Application) -> None:
        app[STOPPING].set()

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
) -> AsyncIterator[str]:
    """Serve the page while inside; yields its URL (the actual port when `port` is 0)."""
    state = WebState(board, store_dir, token_set=token is not None)
    app = build_app(state, token, models, sms)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    sampler = asyncio.create_task(_sample_every(state, EVENT_EVERY_S), name="web-sampler")
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:  # busy port, unknown address: the key to fix, not a traceback
            reason = exc.strerror or str(exc)
            raise ConfigError(f"http.port: cannot listen on {host}:{port}: {reason}") from None
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


async def _sample_every(state: WebState, every_s: float) -> None:
    while True:
        state.sample()
        await asyncio.sleep(every_s)


async def _page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html")


async def _status(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].snapshot())


async def _metrics(request: web.Request) -> web.Response:
    body = render_metrics(request.app[STATE])
    return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})


async def _events(request: web.Request) -> web.StreamResponse:
    """One JSON snapshot per second until the client goes away or the server stops."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    stopping = request.app[STOPPING]
    with contextlib.suppress(ConnectionResetError):
        while not stopping.is_set():
            data = json.dumps(request.app[STATE].snapshot())
            await response.write(f"data: {data}\n\n".encode())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), EVENT_EVERY_S)
    return response


def _refuse(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


def _unauthorised(request: web.Request) -> web.Response | None:
    """The refusal for a request without the configured bearer token; None when it has it."""
    token = request.app[TOKEN]
    given = request.headers.get("Authorization", "")
    if token is None:
        refusal = _refuse(
            403, "actions are disabled: no [http] token is configured on this gateway"
        )
    elif not given.startswith("Bearer "):
        refusal = _refuse(401, "missing token: send 'Authorization: Bearer <token>'")
    elif not hmac.compare_digest(given.removeprefix("Bearer ").encode(), token.encode()):
        refusal = _refuse(401, "wrong token")
    else:
        return None
    log.warning("action_refused", path=request.path, peer=request.remote, status=refusal.status)
    return refusal


async def _ack(request: web.Request) -> web.Response:
    if (refusal := _unauthorised(request)) is not None:
        return refusal
    try:
        body: Any = await request.json()
        alert_id, by = str(body["id"]), str(body.get("by") or "unknown")[:64]
    except (ValueError, KeyError, TypeError):
        return _refuse(400, 'expected JSON {"id": "<alert id>", "by": "<name>"}')
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


def _manager(request: web.Request) -> ModelManager | web.Response:
    """The model manager once the token is checked, or the refusal to answer."""
    if (refusal := _unauthorised(request)) is not None:
        return refusal
    models = request.app[MODELS]
    if models is None:
        return _refuse(403, "model updates are disabled: no [models] table in the config")
    return models


async def _install_model(request: web.Request) -> web.Response:
    """The body is a bundle archive: a plain tar of a signed bundle's files (ota/archive.py)."""
    models = _manager(request)
    if isinstance(models, web.Response):
        return models
    if request.content_type not in ARCHIVE_TYPES:
        return _refuse(415, f"send the bundle archive as the body, as {' or '.join(ARCHIVE_TYPES)}")
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _refuse(413, f"bundle archive too big: the limit is {MAX_ARCHIVE_BYTES} bytes")
    log.info("model_upload", peer=request.remote, bytes=len(data))
    return _answer(await models.install(data, source=f"http:{request.remote}"), 422)


async def _roll_back_model(request: web.Request) -> web.Response:
    models = _manager(request)
    if isinstance(models, web.Response):
        return models
    try:
        body: Any = await request.json()
        asset = str(body["asset"])
    except (ValueError, KeyError, TypeError):
        return _refuse(400, 'expected JSON {"asset": "<asset name>"}')
    log.info("model_rollback_requested", peer=request.remote, asset=asset)
    reason = "rollback requested on the status page"
    return _answer(await models.rollback(asset, reason, source=f"http:{request.remote}"), 409)


async def _test_sms(request: web.Request) -> web.Response:
    """Queue a test SMS to every recipient (within their rate limits)."""
    if (refusal := _unauthorised(request)) is not None:
        return refusal
    sms = request.app[SMS]
    if sms is None:
        return _refuse(403, "SMS is not configured on this gateway (no [sms] table)")
    try:
        body: Any = await request.json()
        by = str(body.get("by") or "unknown")[:64]
    except (ValueError, AttributeError):
        return _refuse(400, 'expected JSON {"by": "<name>"}')
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
