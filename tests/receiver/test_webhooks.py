"""Webhooks against real local HTTP servers (aiohttp): retried with backoff until taken, counted
as a dead letter when the endpoint never takes it, signed so the receiving end can trust it,
routed by gateway glob and alert severity, and a full queue drops and counts instead of
blocking."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from receiver_helpers import wait_until

from receiver.errors import SettingsError
from receiver.webhooks import Route, WebhookSender, WebhookSettings, signature, webhook_settings

SECRET = b"s3cret"
FINDING = {"type": "drift_finding", "action": "opened", "gateway": "plant-a-7", "asset": "pump"}


class Endpoint:
    """A local endpoint answering `statuses` in turn (the last one for ever after)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        status = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
        return web.Response(status=status)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Endpoint], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(endpoint: Endpoint) -> str:
        app = web.Application()
        app.router.add_post("/hook", endpoint.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/hook"

    yield start
    for runner in runners:
        await runner.cleanup()


def settings(*routes: Route, queue_size: int = 100) -> WebhookSettings:
    return WebhookSettings(routes=routes, queue_size=queue_size, max_attempts=4,
                           initial_backoff_s=0.01, max_backoff_s=0.05, timeout_s=5.0)  # fmt: skip


async def running(sender: WebhookSender) -> asyncio.Task[None]:
    return asyncio.create_task(sender.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_failing_endpoint_gets_the_event_after_retries(serve: Any) -> None:
    endpoint = Endpoint([500, 503, 200])
    url = await serve(endpoint)
    sender = WebhookSender(settings(Route(url, SECRET)), clock=lambda: 1_700_000_000.0)
    task = await running(sender)
    assert sender.offer(FINDING) == 1
    await wait_until(lambda: sender.stats[url].delivered == 1, "the event delivered")
    await stop(task)

    assert (sender.stats[url].retries, sender.stats[url].dead_letters) == (2, 0)
    bodies = {body for _, body in endpoint.requests}
    assert len(endpoint.requests) == 3 and len(bodies) == 1
    headers, body = endpoint.requests[-1]
    assert json.loads(body) == FINDING
    assert headers["X-Appliance-Timestamp"] == "1700000000"
    assert headers["X-Appliance-Signature"] == signature(SECRET, "1700000000", body)
    assert headers["X-Appliance-Signature"] != signature(b"other", "1700000000", body)
    assert len({h["X-Appliance-Delivery"] for h, _ in endpoint.requests}) == 1


async def test_an_endpoint_that_always_fails_counts_a_dead_letter(serve: Any) -> None:
    endpoint = Endpoint([500])
    url = await serve(endpoint)
    sender = WebhookSender(settings(Route(url, SECRET)))
    task = await running(sender)
    sender.offer(FINDING)
    await wait_until(lambda: sender.stats[url].dead_letters == 1, "a dead letter counted")
    await stop(task)
    assert len(endpoint.requests) == 4
    assert (sender.stats[url].delivered, sender.stats[url].retries) == (0, 3)


async def test_events_go_to_the_routes_that_want_them(serve: Any) -> None:
    fleet, plant_b = Endpoint([200]), Endpoint([200])
    fleet_url, b_url = await serve(fleet), await serve(plant_b)
    routes = (
        Route(fleet_url, SECRET, alerts="critical"),
        Route(b_url, SECRET, gateways=("plant-b-*",), findings=False, alerts="warning"),
    )
    sender = WebhookSender(settings(*routes))
    task = await running(sender)
    warning_b = {"type": "gateway_alert", "gateway": "plant-b-1", "severity": "warning"}
    critical_b = {**warning_b, "severity": "critical"}
    assert [sender.offer(e) for e in (FINDING, warning_b, critical_b)] == [1, 1, 2]
    await wait_until(lambda: sender.pending() == 0 and len(fleet.requests) == 2, "delivered")
    await wait_until(lambda: len(plant_b.requests) == 2, "delivered to plant b")
    await stop(task)
    assert [json.loads(b)["type"] for _, b in fleet.requests] == ["drift_finding", "gateway_alert"]
    assert [json.loads(b)["severity"] for _, b in plant_b.requests] == ["warning", "critical"]


async def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    url = "http://127.0.0.1:9/never-started"
    sender = WebhookSender(settings(Route(url, SECRET), queue_size=2))
    taken = [sender.offer(FINDING) for _ in range(5)]  # nobody delivers: the queue fills
    assert taken == [1, 1, 0, 0, 0]
    assert sender.stats[url].dropped == 3


def test_settings_from_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("abc\n")
    monkeypatch.setenv("HOOK_SECRET", "xyz")
    config = {
        "webhooks": {
            "max_attempts": 3,
            "routes": [
                {"url": "https://ops.example/hook", "secret_file": str(secret_file)},
                {"url": "http://b.example/", "gateways": "plant-b-*", "alerts": "critical",
                 "secret_env": "HOOK_SECRET"},
            ],
        }
    }  # fmt: skip
    parsed = webhook_settings(config, "receiver.toml")
    assert parsed.max_attempts == 3
    assert [r.secret for r in parsed.routes] == [b"abc", b"xyz"]
    assert parsed.routes[1].gateways == ("plant-b-*",) and parsed.wants_alerts
    assert webhook_settings({}, "x").routes == ()


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"url": "ftp://x", "secret_env": "HOOK_SECRET"}, "url must be"),
        ({"url": "http://x"}, "a secret is needed"),
        ({"url": "http://x", "secret_env": "UNSET_HOOK"}, "UNSET_HOOK is not set"),
        ({"url": "http://x", "secret_env": "HOOK_SECRET", "alerts": "info"}, "alerts must be"),
        ({"url": "http://x", "secret_env": "HOOK_SECRET", "urls": []}, "unknown key(s) urls"),
    ],
)
def test_bad_settings_say_what_and_where(
    route: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "xyz")
    with pytest.raises(SettingsError, match=r"receiver\.toml") as raised:
        webhook_settings({"webhooks": {"routes": [route]}}, "receiver.toml")
    assert message in str(raised.value)
