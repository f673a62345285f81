"""Headless Chromium (Playwright with Debian's /usr/bin/chromium) on the live status page while
the emulated rig runs with an injected imbalance: the score updates without reloading, the alert
appears, acknowledging without the token is refused; screenshots at desktop and phone sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
from web_helpers import running_rig

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 60_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)


async def test_live_page_shows_the_fault_and_refuses_ack_without_token(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    artifacts = tmp_path / "screenshots"
    artifacts.mkdir()
    async with (
        running_rig(tmp_path, ["imbalance=0.2"]) as (url, _),
        async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(url)
            score = page.locator('[data-asset="compressor-2"] .score-value')
            await score.wait_for(timeout=WAIT_MS)
            first = await score.text_content()
            # Live: the same element shows another value later, without a reload.
            await page.wait_for_function(
                """first => {
                    const el = document.querySelector('[data-asset="compressor-2"] .score-value');
                    return el && el.textContent !== first;
                }""",
                arg=first,
                timeout=WAIT_MS,
            )
            await page.wait_for_function(
                """() => {
                    const sel = '[data-asset="compressor-2"] polyline.score';
                    const line = document.querySelector(sel);
                    return line && line.getAttribute("points").split(" ").length >= 2;
                }""",
                timeout=WAIT_MS,
            )
            alert = page.locator('#open .alert[data-kind^="anomaly"]').first
            await alert.wait_for(timeout=WAIT_MS)
            await page.screenshot(path=artifacts / "desktop-1280x800.png", full_page=True)

            await page.locator("#open button.ack").first.click()
            await page.wait_for_function(
                "document.getElementById('ackresult').textContent.includes('refused (401)')",
                timeout=WAIT_MS,
            )

            await page.set_viewport_size({"width": 390, "height": 844})
            await page.screenshot(path=artifacts / "phone-390x844.png", full_page=True)
            no_scroll = await page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth"
            )
            assert no_scroll, "the page scrolls sideways on a phone"
        finally:
            await browser.close()
    for name in ("desktop-1280x800.png", "phone-390x844.png"):
        assert (artifacts / name).stat().st_size > 10_000
    print(f"screenshots in {artifacts}")
