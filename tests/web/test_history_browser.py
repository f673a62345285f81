"""Headless Chromium on the live page of the emulated rig with an injected imbalance, at desktop
and phone sizes: the history chart has time and value axes with values and labelled units, the
spectrum chart renders (an SVG of non-zero size with the PSD line, a frequency axis and a PSD
axis). Screenshots beside the status page's (tmp_path/screenshots)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from test_status_page_browser import WAIT_MS, chromium, pytestmark  # noqa: F401  (skip rule)
from web_helpers import DEADLINE_S, running_rig

VIEWPORTS = [(1280, 800), (390, 844)]
HISTORY = "#history svg.history-chart"
SPECTRUM = "#spectrum svg.spectrum-chart"


async def texts(page: object, selector: str) -> list[str]:
    found: list[str] = await page.eval_on_selector_all(  # type: ignore[attr-defined]
        selector, "nodes => nodes.map(n => n.textContent)"
    )
    return found


async def test_history_and_spectrum_charts(tmp_path: Path) -> None:
    artifacts = tmp_path / "screenshots"
    artifacts.mkdir()
    async with running_rig(tmp_path, ["imbalance=0.2"]) as (url, board), chromium() as browser:
        scored = board.wait_for(lambda: all(a.scores >= 3 for a in board.assets.values()))
        await asyncio.wait_for(scored, DEADLINE_S)
        for width, height in VIEWPORTS:
            page = await browser.new_page(viewport={"width": width, "height": height})
            await page.goto(url)
            # The score line is drawn once the store has rows (the chart refreshes by itself).
            await page.wait_for_function(
                f"document.querySelector('{HISTORY} polyline.score') !== null", timeout=WAIT_MS
            )
            score_chart = page.locator(HISTORY).first
            y_values = await texts(page, f"{HISTORY} >> nth=0 >> .y-axis text.tick")
            x_values = await texts(page, f"{HISTORY} >> nth=0 >> .x-axis text.tick")
            labels = await texts(page, f"{HISTORY} text.axis-label")
            assert len(y_values) >= 2 and all(re.fullmatch(r"[-\d.e]+", v) for v in y_values)
            assert len(x_values) >= 2 and all(re.fullmatch(r"\d\d:\d\d", v) for v in x_values)
            assert labels[0].startswith("score") and labels[1].startswith("time (")
            assert any(label.endswith("[g]") for label in labels), labels  # RMS, with its unit
            box = await score_chart.bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 100

            await page.wait_for_function(
                f"""() => {{
                    const line = document.querySelector('{SPECTRUM} polyline.psd');
                    return line && line.getAttribute('points').split(' ').length > 100;
                }}""",
                timeout=WAIT_MS,
            )
            spectrum = page.locator(SPECTRUM)
            box = await spectrum.bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 100
            spectrum_labels = await texts(page, f"{SPECTRUM} text.axis-label")
            assert "frequency [Hz]" in spectrum_labels
            assert any(label.startswith("PSD [g²/Hz]") for label in spectrum_labels)
            assert len(await texts(page, f"{SPECTRUM} .x-axis text.tick")) >= 3
            assert await page.locator(f"{SPECTRUM} rect.band").count() == 5

            name = f"charts-{width}x{height}.png"
            await page.screenshot(path=artifacts / name, full_page=True)
            assert (artifacts / name).stat().st_size > 10_000
            no_scroll = await page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth"
            )
            assert no_scroll, f"the page scrolls sideways at {width} px"
            await page.close()
    print(f"screenshots in {artifacts}")
