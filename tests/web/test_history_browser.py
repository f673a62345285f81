"""Headless Chromium on the live page of the emulated rig with an injected imbalance, at desktop
and phone sizes: the history chart has time and value axes with values and labelled units, the
spectrum chart renders (an SVG of non-zero size with the PSD line, a frequency axis and a PSD
axis, the feature bands and the shaft harmonics). Screenshots in
artifacts/status-page/charts/ (ARTIFACTS in test_status_page_browser.py)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from test_status_page_browser import WAIT_MS, artifacts, chromium, pytestmark  # noqa: F401  (skip rule)
from web_helpers import DEADLINE_S, running_rig

VIEWPORTS = [(1280, 800), (390, 844)]
HISTORY = "#history svg.history-chart"
SPECTRUM = "#spectrum svg.spectrum-chart"
# Each reads one chart in one go (a redraw, on a refresh or on switching to the machine in
# alarm, empties it for a moment), once its line is drawn.
HISTORY_DRAWN = f"""() => {{
    const charts = document.querySelectorAll('{HISTORY}');
    if (!charts.length || !charts[0].querySelector('polyline.score')) return null;
    const texts = (root, selector) => [...root.querySelectorAll(selector)].map(n => n.textContent);
    const box = charts[0].getBoundingClientRect();
    return {{
        y: texts(charts[0], '.y-axis text.tick'),
        x: texts(charts[0], '.x-axis text.tick'),
        labels: texts(document, '{HISTORY} text.axis-label'),
        width: box.width,
        height: box.height,
    }};
}}"""
SPECTRUM_DRAWN = f"""() => {{
    const chart = document.querySelector('{SPECTRUM}');
    const line = chart && chart.querySelector('polyline.psd');
    if (!line) return null;
    const texts = selector => [...chart.querySelectorAll(selector)].map(n => n.textContent);
    const box = chart.getBoundingClientRect();
    return {{
        points: line.getAttribute('points').split(' ').length,
        labels: texts('text.axis-label'),
        x: texts('.x-axis text.tick'),
        bands: chart.querySelectorAll('rect.band').length,
        harmonics: texts('text.harmonic-label'),
        width: box.width,
        height: box.height,
    }};
}}"""


async def test_history_and_spectrum_charts(tmp_path: Path) -> None:
    shots = artifacts("charts")
    async with running_rig(tmp_path, ["imbalance=0.2"]) as (url, board), chromium() as browser:
        scored = board.wait_for(lambda: all(a.scores >= 3 for a in board.assets.values()))
        await asyncio.wait_for(scored, DEADLINE_S)
        for width, height in VIEWPORTS:
            page = await browser.new_page(viewport={"width": width, "height": height})
            await page.goto(url)
            drawn = await page.wait_for_function(HISTORY_DRAWN, timeout=WAIT_MS)
            chart = await drawn.json_value()
            assert len(chart["y"]) >= 2 and all(re.fullmatch(r"[-\d.e]+", v) for v in chart["y"])
            assert len(chart["x"]) >= 2 and all(re.fullmatch(r"\d\d:\d\d", v) for v in chart["x"])
            labels = chart["labels"]
            assert labels[0].startswith("score") and labels[1].startswith("time (")
            assert any(label.endswith("[g]") for label in labels), labels  # RMS, with its unit
            assert chart["width"] > 200 and chart["height"] > 100

            drawn = await page.wait_for_function(SPECTRUM_DRAWN, timeout=WAIT_MS)
            spectrum = await drawn.json_value()
            assert spectrum["width"] > 200 and spectrum["height"] > 100
            assert spectrum["points"] == 129  # nperseg 256: every bin of the PSD
            assert "frequency [Hz]" in spectrum["labels"]
            assert any(label.startswith("PSD [g²/Hz]") for label in spectrum["labels"])
            assert len(spectrum["x"]) >= 3 and spectrum["bands"] == 5
            assert spectrum["harmonics"][:3] == ["1×", "2×", "3×"]  # the demo's 1776 rpm

            name = f"charts-{width}x{height}.png"
            await page.screenshot(path=shots / name, full_page=True)
            assert (shots / name).stat().st_size > 10_000
            no_scroll = await page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth"
            )
            assert no_scroll, f"the page scrolls sideways at {width} px"
            await page.close()
    print(f"screenshots in {shots}")
