"""Headless Chromium (Playwright with Debian's /usr/bin/chromium) on the live status page while
the emulated rig runs with an injected imbalance: the score updates without reloading, the alert
appears, acknowledging without the token is refused; screenshots at desktop and phone sizes (in
artifacts/status-page/, see ARTIFACTS). And
a model bundle uploaded through the page: a refusal shows its reason, a good one shows up live,
and its Roll back button restores the model before."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ota_helpers import archive
from waiting import wait_until
from web_helpers import TOKEN, running_rig

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
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "status-page"
"""Screenshots of the page land here (the repository's artifacts/, ignored by git)."""
MODEL_WAIT_MS = 20_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)


def artifacts(test: str) -> Path:
    """This test's screenshot directory under ARTIFACTS, emptied first."""
    directory = ARTIFACTS / test
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.png"):
        old.unlink()
    return directory


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """Debian's chromium, headless, driven by Playwright."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def test_live_page_shows_the_fault_and_refuses_ack_without_token(tmp_path: Path) -> None:
    shots = artifacts("live")
    async with (
        running_rig(tmp_path, ["imbalance=0.2"]) as (url, _),
        chromium() as browser,
    ):
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
        await page.screenshot(path=shots / "desktop-1280x800.png", full_page=True)

        await page.locator("#open button.ack").first.click()
        await page.wait_for_function(
            "document.getElementById('ackresult').textContent.includes('refused (401)')",
            timeout=WAIT_MS,
        )

        await page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot(path=shots / "phone-390x844.png", full_page=True)
        no_scroll = await page.evaluate(
            "document.scrollingElement.scrollWidth <= window.innerWidth"
        )
        assert no_scroll, "the page scrolls sideways on a phone"
    for name in ("desktop-1280x800.png", "phone-390x844.png"):
        assert (shots / name).stat().st_size > 10_000
    print(f"screenshots in {shots}")


async def test_model_upload_through_the_page(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    (bundles / "unsigned.tar").write_bytes(archive(bundles, "unsigned", None))
    (bundles / "ota-2.tar").write_bytes(archive(bundles, "ota-2", key))
    shots = artifacts("models")
    async with (
        running_rig(tmp_path / "rig", [], models_key=key) as (url, board),
        chromium() as browser,
    ):
        page = await browser.new_page(viewport={"width": 390, "height": 844})
        await page.goto(url)
        model = page.locator('[data-model-asset="pump-1"] .model-id')
        await model.wait_for(timeout=MODEL_WAIT_MS)
        configured = await model.text_content()
        await wait_until(lambda: board.asset("pump-1").scores >= 8, "windows for the canary")
        await page.fill("#token", TOKEN)

        await upload(page, bundles / "unsigned.tar", "refused (422): signature: unsigned")
        assert await model.text_content() == configured
        await upload(page, bundles / "ota-2.tar", "installed on pump-1: ota-2-")
        await page.wait_for_function(
            """() => document.querySelector('[data-model-asset="pump-1"] .model-id')
                .textContent.startsWith("ota-2-")""",
            timeout=MODEL_WAIT_MS,
        )
        box = page.locator('[data-model-asset="pump-1"]')
        assert "over the air" in (await box.text_content() or "")
        await box.locator("button.rollback").wait_for(timeout=MODEL_WAIT_MS)
        await page.locator("#outcomes .outcome.accepted").wait_for(timeout=MODEL_WAIT_MS)
        await page.locator("#modelbox").screenshot(path=shots / "models-phone-390.png")
        no_scroll = await page.evaluate(
            "document.scrollingElement.scrollWidth <= window.innerWidth"
        )
        assert no_scroll, "the page scrolls sideways on a phone"

        await box.locator("button.rollback").click()
        await page.wait_for_function(
            """configured => document.querySelector('[data-model-asset="pump-1"] .model-id')
                .textContent === configured""",
            arg=configured,
            timeout=MODEL_WAIT_MS,
        )
        assert "rolled back pump-1" in (await page.text_content("#modelresult") or "")
    assert (shots / "models-phone-390.png").stat().st_size > 10_000
    print(f"screenshot in {shots}")


async def upload(page: Any, bundle: Path, answer: str) -> None:
    """Choose `bundle` in the page's file input, press Upload, wait for the server's answer."""
    await page.set_input_files("#bundle", bundle)
    await page.click("#upload")
    await page.wait_for_function(
        "answer => document.getElementById('modelresult').textContent.includes(answer)",
        arg=answer,
        timeout=MODEL_WAIT_MS,
    )
