"""The fleet page in headless Chromium (Playwright with Debian's /usr/bin/chromium) on a real
receiver process (`python -m receiver run --http`) with a real mosquitto and a SQLite database
holding a few gateways: one in alarm, one with an open drift finding, one with a hole, and one
that goes offline while the page is up (its connection drops, the broker publishes its last will,
the receiver's status watch stores it). Screenshots in artifacts/fleet-page/."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from broker import Broker, free_port
from test_fleet_api import FEW, MODELS, fill
from waiting import wait_until

from appliance.uplink.schema import encode_status, status_topic
from receiver.db import open_database

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
WAIT_MS = 30_000
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "fleet-page"
"""Screenshots of the page land here (the repository's artifacts/, ignored by git)."""

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def log_events(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.startswith("{")]


@contextlib.asynccontextmanager
async def receiver_process(broker: Broker, db_path: Path, log_path: Path) -> AsyncIterator[str]:
    """`python -m receiver run --config` with [http] listen on a free port; the page's URL."""
    port = free_port()
    config = log_path.with_name("receiver.toml")
    # The drift task off: it would close the finding the test planted (its records hold no trend).
    config.write_text(f'[drift]\nevery_hours = 0\n\n[http]\nlisten = "127.0.0.1:{port}"\n')
    args = ["run", "--broker", broker.url("receiver"), "--ca", str(broker.ca_path),
            "--db", f"sqlite:///{db_path}", "--group", "rx", "--config", str(config)]  # fmt: skip
    with log_path.open("w") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "receiver", *args, stderr=log
        )
    try:
        await wait_until(
            lambda: (
                {"receiver_subscribed", "fleet_page_listening"}
                <= {e["event"] for e in log_events(log_path)}
            ),
            "the receiver subscribed and serves the fleet page",
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0


def stored_state(db_path: Path, gateway: str) -> str | None:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        row = db.execute("SELECT state FROM gateway_states WHERE gateway = ?", (gateway,))
        found = row.fetchone()
    return None if found is None else str(found[0])


async def drop_with_last_will(broker: Broker, gateway: str, db_path: Path) -> None:
    """Connect as the gateway with its last will, say online, then lose the connection
    without a DISCONNECT: the broker publishes the will."""
    topic = status_topic("appliance", gateway)
    will = aiomqtt.Will(topic, encode_status(gateway, "offline"), qos=1, retain=True)
    client = aiomqtt.Client(**broker.client_args(gateway), identifier=gateway, will=will)
    with contextlib.suppress(aiomqtt.MqttError):
        async with client:
            online = encode_status(gateway, "online", models=MODELS)
            await client.publish(topic, online, qos=1, retain=True)
            await wait_until(lambda: stored_state(db_path, gateway) == "online",
                             f"{gateway}'s online status stored")  # fmt: skip
            client._client.socket().shutdown(socket.SHUT_RDWR)  # a dropped link, no DISCONNECT
            await wait_until(lambda: stored_state(db_path, gateway) == "offline",
                             f"{gateway}'s last will stored")  # fmt: skip


async def test_the_fleet_page_shows_the_worst_first_and_a_gateway_page(
    make_broker: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    shots = ARTIFACTS
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    broker = make_broker(users=tuple(FEW))
    db_path = tmp_path / "fleet.db"
    db = await open_database(f"sqlite:///{db_path}")
    try:
        await fill(db, {**FEW, "gw-offline": {}}, now=time.time())  # online until its will
    finally:
        await db.close()

    async with (
        receiver_process(broker, db_path, tmp_path / "receiver.log") as url,
        chromium() as browser,
    ):
        await drop_with_last_will(broker, "gw-offline", db_path)
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(url)
        await page.wait_for_selector("body[data-loaded]", timeout=WAIT_MS)
        rows = page.locator("#rows tr")
        order = await rows.evaluate_all("rows => rows.map(r => r.dataset.gateway)")
        assert order == ["gw-alarm", "gw-offline", "gw-finding", "gw-hole", "gw-ok"]
        alarm = page.locator('#rows tr[data-gateway="gw-alarm"]')
        assert await alarm.locator(".alarms").text_content() == "pump-1"
        offline = page.locator('#rows tr[data-gateway="gw-offline"]')
        assert await offline.locator(".badge").text_content() == "offline"
        assert "pump-1: ae@sha256:01" in (await offline.text_content() or "")  # kept
        hole = await page.locator('#rows tr[data-gateway="gw-hole"]').text_content()
        assert hole is not None and "1 (10 seqs)" in hole
        totals = await page.locator("#totals").text_content()
        assert totals is not None and "5 gateways · 4 online · 1 offline · 1 in alarm" in totals
        await page.screenshot(path=shots / "fleet-1280x800.png", full_page=True)

        await page.fill("#search", "hole")
        await expect(rows).to_have_count(1, timeout=WAIT_MS)  # no eval: the page's CSP
        assert await rows.first.get_attribute("data-gateway") == "gw-hole"

        await page.goto(f"{url}/gateways/gw-finding")
        await page.wait_for_selector("body[data-loaded] svg.trend path", timeout=WAIT_MS)
        findings = await page.locator("#findings").text_content()
        assert findings is not None and "Inspect the bearing" in findings
        assert await page.locator("svg.trend circle").count() == 8  # 8 weekly medians
        assets = await page.locator("#assets tr").evaluate_all(
            "rows => rows.map(r => r.cells[0].textContent + ' ' + r.cells[1].textContent)"
        )
        assert assets == ["fan-2 ae@sha256:02", "pump-1 ae@sha256:01"]
        await page.screenshot(path=shots / "gateway-1280x800.png", full_page=True)

        await page.goto(f"{url}/gateways/no-such-gw")
        await expect(page.locator("#error")).to_contain_text("no gateway", timeout=WAIT_MS)
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(url)
        await page.wait_for_selector("body[data-loaded]", timeout=WAIT_MS)
        await page.screenshot(path=shots / "fleet-phone-390x844.png", full_page=True)
    for name in ("fleet-1280x800.png", "gateway-1280x800.png", "fleet-phone-390x844.png"):
        assert (shots / name).stat().st_size > 10_000


async def test_an_address_in_use_stops_the_receiver_with_a_reason(
    broker: Broker, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "receiver", "run", "--broker", broker.url("receiver"),
            "--ca", str(broker.ca_path), "--db", f"sqlite:///{tmp_path / 'rx.db'}",
            "--http", f"127.0.0.1:{port}", stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    assert f"error: --http 127.0.0.1:{port}: " in err.decode()
