"""The drift analysis and the webhooks as the crew meets them: `appliance-receiver drift` as a
real process POSTing its finding to a local endpoint, and a running receiver forwarding the
gateway's critical alerts from the wire to a webhook."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from receiver_helpers import GatewayFactory, ReceiverFactory, wait_until
from test_cli import run_cli
from test_drift import DAY0, store_days

from receiver.db import open_database
from receiver.drift.findings import day_text
from receiver.drift.settings import DriftSettings
from receiver.webhooks import Route, WebhookSettings, signature
from receiver.webhooks.tasks import start_drift_and_webhooks

SECRET = "drift-secret"


class Endpoint:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    def events(self) -> list[dict[str, object]]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[Endpoint, str]]:
    hook = Endpoint()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield hook, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    await runner.cleanup()


async def test_the_drift_command_opens_a_finding_and_posts_it(
    tmp_path: Path, endpoint: tuple[Endpoint, str]
) -> None:
    hook, url = endpoint
    db_url = f"sqlite:///{tmp_path / 'rx.db'}"
    database = await open_database(db_url)
    await store_days(database, range(DAY0, DAY0 + 25), (DAY0 + 4, None), gaps={DAY0 + 10})
    await database.close()
    (tmp_path / "secret").write_text(SECRET + "\n")
    config = tmp_path / "receiver.toml"
    config.write_text(
        f'[drift]\nwindow_days = 21\n\n[[webhooks.routes]]\nurl = "{url}"\n'
        f'secret_file = "{tmp_path / "secret"}"\n'
    )

    code, out, err = await run_cli(
        "drift", "--db", db_url, "--config", str(config), "--as-of", day_text(DAY0 + 24),
        "--list", "--notify",
    )  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    summary, opened, listed = lines
    assert summary["type"] == "drift_run" and summary["assets"] == 1
    assert summary["webhooks"][url]["delivered"] == 1
    assert (opened["action"], opened["cause"]) == ("opened", "accel.vibration_level")
    assert listed["type"] == "open_finding" and listed["id"] == opened["finding_id"]
    headers, body = hook.requests[0]
    assert json.loads(body) == opened
    expected = signature(SECRET.encode(), headers["X-Appliance-Timestamp"], body)
    assert headers["X-Appliance-Signature"] == expected

    again = await run_cli("drift", "--db", db_url, "--as-of", day_text(DAY0 + 24))
    assert [json.loads(line)["type"] for line in again[1].splitlines()] == ["drift_run"]


async def test_a_bad_config_file_is_refused_with_its_name(tmp_path: Path) -> None:
    config = tmp_path / "receiver.toml"
    config.write_text("[drift]\nwindow_dayz = 21\n")
    code, _, err = await run_cli("drift", "--db", f"sqlite:///{tmp_path / 'x.db'}",
                                 "--config", str(config))  # fmt: skip
    assert code == 2
    assert "receiver.toml" in err and "window_dayz" in err


async def test_the_receiver_forwards_critical_gateway_alerts(
    start_receiver: ReceiverFactory, gateway: GatewayFactory, endpoint: tuple[Endpoint, str]
) -> None:
    hook, url = endpoint
    webhooks = WebhookSettings(routes=(Route(url, SECRET.encode(), alerts="critical"),))
    instance = await start_receiver(webhooks=webhooks, drift=DriftSettings(every_s=0))
    settings = instance.receiver.settings
    tasks = start_drift_and_webhooks(instance.receiver, settings)
    try:
        gw = await gateway("gw-a")
        await gw.send_range(0, 20)  # alerts at seqs 7 and 14
        await gw.wait_ack(20)
        await gw.send_range(0, 20)  # re-sent: nothing new, nothing forwarded
        await gw.send_range(20, 30)  # alerts at 21 and 28
        await gw.wait_ack(30)
        await wait_until(lambda: len(hook.requests) >= 4, "four alerts POSTed")
    finally:
        for task in tasks:
            task.cancel()
    events = hook.events()
    assert [(e["type"], e["seq"], e["severity"]) for e in events] == [
        ("gateway_alert", 7, "critical"),
        ("gateway_alert", 14, "critical"),
        ("gateway_alert", 21, "critical"),
        ("gateway_alert", 28, "critical"),
    ]
