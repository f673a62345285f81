"""The diagnosis where the operator looks, on the demo rig with an injected outer-race defect:
the asset's card in /api/status (verdict, confidence, velocity and ISO zone per channel), the
envelope spectrum with the defect frequencies at /api/envelope/<asset> (built once per
diagnosis), the velocity and zone gauges in /metrics, the terminal summary, and the page itself
in headless Chromium."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
from test_status_page_browser import WAIT_MS, artifacts, chromium
from waiting import wait_until
from web_helpers import metric_families, running_rig

from appliance.diagnosis import BEARING_VERDICTS
from appliance.status import StatusBoard
from appliance.summary import SummaryPrinter

FAULTY = "compressor-2"


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any, bytes]:
    async with http.get(url) as response:
        body = await response.read()
        return response.status, await response.json(), body


def diagnosed_outer_race(board: StatusBoard) -> bool:
    faulty, healthy = board.asset(FAULTY).diagnosis, board.asset("pump-1").diagnosis
    return faulty is not None and faulty.verdict == "outer_race" and healthy is not None


async def test_the_card_the_envelope_the_metrics_and_the_summary_name_the_defect(
    tmp_path: Path,
) -> None:
    async with (
        running_rig(tmp_path, ["outer_race"]) as (url, board),
        aiohttp.ClientSession() as http,
    ):
        await wait_until(lambda: diagnosed_outer_race(board), "an outer-race diagnosis")
        _, status, _ = await get(http, url + "api/status")
        cards = {a["name"]: a for a in status["assets"]}
        card = cards[FAULTY]["diagnosis"]
        assert card["verdict"] == "outer_race" and card["confidence"] > 0.5
        assert card["words"].startswith("outer-race defect likely (BPFO 106 Hz")
        assert set(card["channels"]) == {"accel_x", "accel_y", "accel_z"}
        for channel in card["channels"].values():
            assert channel["zone"] in "ABCD" and channel["velocity_mm_s"] > 0
            assert channel["velocity_text"].endswith(" mm/s")
        assert cards["pump-1"]["diagnosis"]["verdict"] not in BEARING_VERDICTS

        code, index, _ = await get(http, url + "api/envelope")
        assert code == 200 and set(index["assets"]) == {FAULTY, "pump-1"}
        diagnosed_t = board.asset(FAULTY).diagnosis.t  # type: ignore[union-attr]
        code, envelope, body = await get(http, url + f"api/envelope/{FAULTY}")
        assert code == 200 and envelope["verdict"] == "outer_race"
        assert len(envelope["freqs_hz"]) == len(envelope["magnitude"]) > 100
        marks = {mark["name"]: mark["hz"] for mark in envelope["marks"]}
        assert {"BPFO", "2xBPFO", "BPFI", "2xBSF", "FTF"} <= set(marks)
        assert abs(marks["BPFO"] - 3.5848 * 1776 / 60) < 0.01
        assert envelope["evidence"][0]["name"] == "BPFO"
        if board.asset(FAULTY).diagnosis.t == diagnosed_t:  # type: ignore[union-attr]
            again = await get(http, url + f"api/envelope/{FAULTY}")
            assert again[2] == body or board.asset(FAULTY).diagnosis.t != diagnosed_t  # type: ignore[union-attr]
        code, refused, _ = await get(http, url + "api/envelope/nope")
        assert code == 404 and "compressor-2" in refused["error"]

        families = await metric_families(http, url)
        velocity = families["appliance_velocity_rms_mm_per_second"].samples
        zones = families["appliance_iso_zone"].samples
        assert {(s.labels["asset"], s.labels["channel"]) for s in velocity} == {
            (asset, f"accel_{axis}") for asset in (FAULTY, "pump-1") for axis in "xyz"
        }
        assert all(1 <= s.value <= 4 for s in zones)
        verdicts = {
            s.labels["asset"]: s.labels["verdict"]
            for s in families["appliance_diagnosis_info"].samples
        }
        assert verdicts[FAULTY] == "outer_race"

        out = io.StringIO()
        SummaryPrinter(board, out).print_once()
        assert "diagnosis: outer-race defect likely (BPFO 106 Hz" in out.getvalue()


async def test_the_page_shows_the_diagnosis_and_marks_the_defect_lines(tmp_path: Path) -> None:
    shots = artifacts("diagnosis")
    async with running_rig(tmp_path, ["outer_race"]) as (url, board), chromium() as browser:
        await wait_until(lambda: diagnosed_outer_race(board), "an outer-race diagnosis")
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(url)
        words = page.locator(f'[data-asset="{FAULTY}"] .diagnosis[data-verdict="outer_race"]')
        await words.wait_for(timeout=WAIT_MS)
        assert "outer-race defect likely" in (await words.text_content() or "")
        zones = page.locator(f'[data-asset="{FAULTY}"] table.zones .zone')
        assert await zones.count() == 3
        await page.select_option("#history-asset", FAULTY)
        bpfo = page.locator('svg.envelope-chart line.defect-mark[data-name="BPFO"]')
        await bpfo.wait_for(state="attached", timeout=WAIT_MS)  # a vertical line: no width
        await page.locator("svg.envelope-chart circle.evidence").first.wait_for(timeout=WAIT_MS)
        label = page.locator("svg.envelope-chart text.defect-label", has_text="BPFO")
        assert await label.count() == 1
        words_below = await page.locator(".envelope-words").text_content()
        assert "outer-race defect likely" in (words_below or "")
        await page.screenshot(path=shots / "desktop-1280x900.png", full_page=True)
