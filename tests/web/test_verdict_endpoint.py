"""POST /api/alerts/verdict over real HTTP (issue 14, item 5): the token is required, a bad
verdict or time is refused naming the field, an episode the alert stage does not list is 404,
and a recorded verdict shows on the episode's alert rows in /api/status."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from appliance.detect.routing import AlertRouter
from appliance.records import Alert
from appliance.status import StatusBoard
from appliance.web.server import serve_status

TOKEN = "test-token-0123456789abcdef"
ASSET = "pump-1"
RAISED_T = 1_767_225_600.896
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def board_with_an_open_anomaly() -> StatusBoard:
    board = StatusBoard("gw")
    router = AlertRouter("gw", channels=(), assets=(ASSET, "fan-2"))
    message = f"{ASSET}: anomaly: error 3 is 2.0x the threshold 1.5"
    router.route(RAISED_T, [Alert(ASSET, RAISED_T, "warning", "anomaly_raised", message)])
    escalated = Alert(ASSET, RAISED_T + 5, "critical", "anomaly_escalated", "now critical")
    router.route(RAISED_T + 5, [escalated])
    board.alerts = router
    return board


@contextlib.asynccontextmanager
async def page(tmp_path: Path, token: str | None = TOKEN) -> AsyncIterator[tuple[str, StatusBoard]]:
    board = board_with_an_open_anomaly()
    async with serve_status(board, "127.0.0.1", 0, token, tmp_path, None) as url:
        yield url, board


async def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "api/alerts/verdict", json=body, headers=headers) as response,
    ):
        return response.status, await response.json()


def verdict(**changes: Any) -> dict[str, Any]:
    return {"asset": ASSET, "t": RAISED_T, "verdict": "not_a_fault", "by": "anna", **changes}


async def test_a_verdict_needs_the_token(tmp_path: Path) -> None:
    async with page(tmp_path) as (url, board):
        missing = await post(url, verdict(), {})
        wrong = await post(url, verdict(), {"Authorization": "Bearer nope"})
    async with page(tmp_path, token=None) as (url, _):
        disabled = await post(url, verdict(), AUTH)
    assert missing[0] == 401 and "missing token" in missing[1]["error"]
    assert wrong[0] == 401 and wrong[1]["error"] == "wrong token"
    assert disabled[0] == 403 and "actions are disabled" in disabled[1]["error"]
    assert board.verdicts is None, "nothing recorded"


async def test_bad_fields_are_refused_naming_the_field(tmp_path: Path) -> None:
    async with page(tmp_path) as (url, board):
        bad_verdict = await post(url, verdict(verdict="maybe"), AUTH)
        no_time = await post(url, verdict(t=None), AUTH)
        text_time = await post(url, verdict(t="yesterday"), AUTH)
        bad_note = await post(url, verdict(note="a\x1b[2J"), AUTH)
        no_asset = await post(url, {"t": RAISED_T, "verdict": "real_fault"}, AUTH)
    assert bad_verdict == (
        400,
        {"error": "verdict: must be one of not_a_fault, real_fault, got 'maybe'"},
    )
    assert no_time[0] == text_time[0] == 400
    assert no_time[1]["error"].startswith("t: ") and text_time[1]["error"].startswith("t: ")
    assert bad_note == (400, {"error": "note: must be printable text"})
    assert no_asset == (400, {"error": "asset: missing"})
    assert board.verdicts is None or board.verdicts.of(ASSET, RAISED_T) is None


async def test_an_episode_the_alerts_do_not_list_is_404(tmp_path: Path) -> None:
    async with page(tmp_path) as (url, _):
        other_time = await post(url, verdict(t=RAISED_T + 1), AUTH)
        other_asset = await post(url, verdict(asset="fan-2"), AUTH)
    assert other_time[0] == other_asset[0] == 404
    assert (
        other_time[1]["error"]
        == f"no anomaly of 'pump-1' raised at t={RAISED_T + 1!r} in the alerts"
    )


async def test_a_verdict_shows_on_its_episode_rows(tmp_path: Path) -> None:
    async with page(tmp_path) as (url, _), aiohttp.ClientSession() as http:
        before = await (await http.get(url + "api/status")).json()
        status, answer = await post(url, verdict(note="valve test"), AUTH)
        after = await (await http.get(url + "api/status")).json()

    assert status == 200
    assert answer["verdict"] == "not_a_fault" and answer["by"] == "anna"
    assert (answer["asset"], answer["t"], answer["note"]) == (ASSET, RAISED_T, "valve test")
    rows = [*after["alerts"]["open"], *after["alerts"]["recent"]]
    assert {(r["kind"], r["episode"]) for r in rows} == {
        ("anomaly_escalated", RAISED_T),
        ("anomaly_raised", RAISED_T),
    }
    assert all(r["verdict"] == answer for r in rows)
    assert all(r["verdict"] is None for r in before["alerts"]["recent"])
