"""Alarm first, in headless Chromium at desktop (1280x800) and phone (390x844) size, on the demo
rig with an imbalance injected on compressor-2: the header names the alarmed machine on the
first screen, in the alarm's colour; its card comes first; values carry their units; times have
a date and a zone; the phone never scrolls sideways. Screenshots of the first screen and of the
whole page go to artifacts/status-page/alarm-first/ (printed)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from test_status_page_browser import CHROMIUM, WAIT_MS, artifacts, chromium
from web_helpers import running_rig

from appliance.status_snapshot import CONDITIONS

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)

VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop-1280x800": {"viewport": {"width": 1280, "height": 800}},
    "phone-390x844": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 2,
    },
}
ALARM_RED = "rgb(185, 28, 28)"
TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+")
"""A time as the page shows it: date, 24-hour time, zone."""


async def test_the_alarmed_machine_is_named_on_the_first_screen(tmp_path: Any) -> None:
    shots = artifacts("alarm-first")
    async with (
        running_rig(tmp_path, ["imbalance=0.2"]) as (url, _),
        chromium() as browser,
    ):
        for name, options in VIEWPORTS.items():
            page = await browser.new_page(**options)
            await page.goto(url)
            await page.wait_for_function(
                """() => {
                    const text = document.getElementById("headline").textContent;
                    return text.includes("in alarm: ") && text.includes("compressor-2");
                }""",
                timeout=WAIT_MS,
            )
            await page.locator('section.asset[data-asset="pump-1"] .reading').first.wait_for(
                timeout=WAIT_MS
            )
            await page.screenshot(path=shots / f"{name}-first-screen.png")
            await page.screenshot(path=shots / f"{name}-whole-page.png", full_page=True)
            await check_alarm_first(page, name)
            await page.close()
    for name in VIEWPORTS:
        assert (shots / f"{name}-first-screen.png").stat().st_size > 10_000
    print(f"screenshots in {shots}")


FACTS = """() => {
    const box = el => {
        const r = el.getBoundingClientRect();
        return {top: r.top, bottom: r.bottom, left: r.left, right: r.right};
    };
    const cards = [...document.querySelectorAll("#assets section.asset")];
    const alarmed = document.querySelector('section.asset[data-asset="compressor-2"]');
    const pump = document.querySelector('section.asset[data-asset="pump-1"]');
    return {
        width: window.innerWidth, height: window.innerHeight,
        scrollWidth: document.scrollingElement.scrollWidth,
        headline: box(document.getElementById("headline")),
        overall: document.getElementById("overall").textContent,
        headerColour: getComputedStyle(document.getElementById("top")).backgroundColor,
        order: cards.map(c => [c.dataset.asset, c.dataset.state]),
        alarmedBadge: alarmed.querySelector(".badge").textContent,
        alarmedCard: box(alarmed),
        readings: [...pump.querySelectorAll(".reading")].map(r => r.textContent),
        pumpText: pump.textContent,
        live: document.getElementById("live").textContent,
        newest: document.getElementById("newest").textContent,
        uptime: document.getElementById("uptime").textContent,
    };
}"""
"""What the checks need, read from the page in one go: it redraws every second."""


async def check_alarm_first(page: Any, name: str) -> None:
    facts = await page.evaluate(FACTS)
    headline, width, height = facts["headline"], facts["width"], facts["height"]
    assert headline["top"] >= 0 and headline["left"] >= 0, name
    assert headline["bottom"] <= height, f"{name}: the headline is below the first screen"
    assert headline["right"] <= width, f"{name}: the headline is beside the first screen"
    assert facts["overall"] == "alarm"
    assert facts["headerColour"] == ALARM_RED, name

    order = [tuple(pair) for pair in facts["order"]]
    assert ("compressor-2", "alarm") in order, order
    ranks = [CONDITIONS.index(state) for _, state in order]
    assert ranks == sorted(ranks), f"{name}: cards not sorted worst first: {order}"
    assert facts["alarmedBadge"] == "alarm"
    assert facts["alarmedCard"]["top"] < height, f"{name}: the alarmed card is not on screen 1"

    readings = facts["readings"]
    assert any(r.endswith(" g") for r in readings), readings
    assert any(r.endswith(" °C") for r in readings), readings
    pump = facts["pumpText"]
    assert "bearing_temp (°C) samples" in pump and "accel_x (g) samples" in pump, pump
    assert re.search(r"\d/s", pump), pump

    assert TIME.search(facts["live"]), f"the live clock: {facts['live']!r}"
    assert TIME.search(facts["newest"]), f"the newest alert's time: {facts['newest']!r}"
    assert re.search(r"up \d+ (s|min)", facts["uptime"]), facts["uptime"]
    assert facts["scrollWidth"] <= width, f"{name}: the page scrolls sideways"
