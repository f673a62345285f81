"""Headless Chromium on the live status page (issue 14, item 5): with the token and a name typed
in, the "Not a fault" button on the open anomaly records the verdict, the answer is shown, the
episode's rows then say who called it a false alarm, and the gateway cleared the episode."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_status_page_browser import CHROMIUM, WAIT_MS, artifacts, chromium
from waiting import wait_until
from web_helpers import TOKEN, running_rig

from appliance.status import StatusBoard

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)


def cleared_by_verdict(board: StatusBoard) -> bool:
    router = board.alerts
    return router is not None and any(
        a.kind == "anomaly_cleared" and "anna said it was not a fault" in a.message
        for a in router.recent
    )


async def test_not_a_fault_from_the_page(tmp_path: Path) -> None:
    shots = artifacts("verdict")
    async with running_rig(tmp_path, ["imbalance=0.5"]) as (url, board), chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await page.goto(url)
        await page.fill("#token", TOKEN)
        await page.fill("#by", "anna")
        button = page.locator('#open button.verdict[data-verdict="not_a_fault"]').first
        await button.wait_for(timeout=WAIT_MS)
        await button.click()
        await page.wait_for_function(
            "document.getElementById('ackresult').textContent.includes('said anna')",
            timeout=WAIT_MS,
        )
        shown = page.locator("#recent .verdict", has_text="not a fault, said anna").first
        await shown.wait_for(timeout=WAIT_MS)
        await page.screenshot(path=shots / "desktop-1280x800.png", full_page=True)
        await wait_until(lambda: cleared_by_verdict(board), "the episode cleared by the verdict")
    assert (shots / "desktop-1280x800.png").stat().st_size > 10_000
