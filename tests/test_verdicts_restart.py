"""A "not a fault" verdict given on the status page of the running appliance (issue 14's bar):
it clears the episode, the episode's windows join the threshold's baseline, and after a restart
on the same database the verdict is still shown on the alert rows, the baseline still holds
them, and the verdict's record is in the outbox for the receiver. A verdict given after a
restart on an episode raised before it teaches the threshold the windows from before the
restart too (read back from the store's scores, up to the episode's anomaly_cleared)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
from waiting import running_page, wait_until

from appliance.config import ApplianceConfig, HttpConfig
from appliance.detect.verdicts import EpisodeVerdicts
from appliance.records import Alert, EpisodeVerdict, Score
from appliance.rig.demo import demo_config
from appliance.status import StatusBoard
from appliance.store import Store, StoreSettings

TOKEN = "test-token-0123456789abcdef"
ASSET = "compressor-2"
FAULTS = ["imbalance=0.5"]


def rig_config(tmp_path: Path) -> ApplianceConfig:
    config = demo_config(tmp_path, FAULTS)
    return config.model_copy(update={"http": HttpConfig(port=0, token=TOKEN)})


def recent(board: StatusBoard) -> list[Alert]:
    assert board.alerts is not None
    return list(board.alerts.recent)


def raise_of(board: StatusBoard) -> Alert | None:
    raised = [a for a in recent(board) if a.asset == ASSET and a.kind == "anomaly_raised"]
    return raised[-1] if raised and board.asset(ASSET).alarm is not None else None


def cleared_by_verdict(board: StatusBoard) -> list[Alert]:
    return [
        a
        for a in recent(board)
        if a.kind == "anomaly_cleared" and "said it was not a fault" in a.message
    ]


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200
        return await response.json()


def raised_row(status: dict[str, Any], raised_t: float) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [
        r
        for r in status["alerts"]["recent"]
        if r["kind"] == "anomaly_raised" and r["asset"] == ASSET and r["t"] == raised_t
    ]
    [row] = rows
    return row


def saved_baseline(db: Path) -> list[float]:
    with sqlite3.connect(db) as connection:
        [(state_json,)] = connection.execute(
            "SELECT state_json FROM detector_state WHERE asset = ? AND kind = 'detector'",
            (ASSET,),
        ).fetchall()
    baseline: list[float] = json.loads(state_json)["threshold"]["baseline"]
    return baseline


async def stored(db: Path) -> tuple[list[Score], list[Alert]]:
    async with await Store.open(StoreSettings(path=db)) as store:
        records = [r for _, r in await store.history.outbox(limit=1_000_000)]
    scores = [r for r in records if isinstance(r, Score) and r.asset == ASSET]
    return scores, [r for r in records if isinstance(r, Alert)]


async def test_a_not_a_fault_verdict_teaches_the_threshold_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    config = rig_config(tmp_path)
    db = Path(config.store.path)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with running_page(config) as (url, board), aiohttp.ClientSession() as http:
        await wait_until(lambda: raise_of(board) is not None, f"{ASSET} in alarm", 90.0)
        raised = raise_of(board)
        assert raised is not None
        body = {"asset": ASSET, "t": raised.t, "verdict": "not_a_fault", "by": "anna"}
        async with http.post(url + "api/alerts/verdict", json=body, headers=headers) as response:
            assert response.status == 200, await response.text()
        await wait_until(lambda: bool(cleared_by_verdict(board)), "the episode cleared")
        shown = raised_row(await get_json(http, url + "api/status"), raised.t)
    [cleared] = cleared_by_verdict(board)
    baseline = set(saved_baseline(db))

    async with running_page(config) as (url, board), aiohttp.ClientSession() as http:
        after_restart = raised_row(await get_json(http, url + "api/status"), raised.t)

    scores, alerts = await stored(db)
    episode = [s.error for s in scores if raised.t <= s.t < cleared.t]
    assert episode and all(s.anomalous for s in scores if raised.t <= s.t < cleared.t)
    assert set(episode) <= baseline, "the episode's errors joined the saved baseline"
    assert f"the threshold learnt {len(episode)} of its windows as normal" in cleared.message
    assert shown["verdict"]["verdict"] == "not_a_fault" and shown["verdict"]["by"] == "anna"
    assert after_restart["verdict"] == shown["verdict"], "the verdict is kept across the restart"
    [record] = [a for a in alerts if a.kind == "anomaly_not_a_fault"]
    assert (
        record.asset == ASSET and f"(t={raised.t!r}) was not a fault, said anna" in record.message
    )


def episode_windows(board: StatusBoard) -> int:
    return board.asset(ASSET).anomalous_windows


async def test_a_verdict_after_a_restart_teaches_the_windows_from_before_it(
    tmp_path: Path,
) -> None:
    config = rig_config(tmp_path)
    db = Path(config.store.path)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with running_page(config) as (url, board):
        await wait_until(lambda: raise_of(board) is not None, f"{ASSET} in alarm", 90.0)
        raised = raise_of(board)
        assert raised is not None
        await wait_until(lambda: episode_windows(board) >= 10, "ten anomalous windows")
    scores, _ = await stored(db)
    before_restart = [s.error for s in scores if s.t >= raised.t]
    assert len(before_restart) >= 10

    async with running_page(config) as (url, board), aiohttp.ClientSession() as http:
        body = {"asset": ASSET, "t": raised.t, "verdict": "not_a_fault", "by": "anna"}
        async with http.post(url + "api/alerts/verdict", json=body, headers=headers) as response:
            assert response.status == 200, await response.text()
        await wait_until(lambda: bool(cleared_by_verdict(board)), "the episode cleared")
    [cleared] = cleared_by_verdict(board)

    scores, _ = await stored(db)
    episode = [s.error for s in scores if raised.t <= s.t < cleared.t]
    assert f"the threshold learnt {len(episode)} of its windows as normal" in cleared.message
    assert set(before_restart) <= set(saved_baseline(db)), "the windows from before the restart"


def score(t: float, error: float) -> Score:
    return Score(ASSET, t, "ae@1", error, 2.0, error > 2.0, ())


def anomaly(kind: str, t: float) -> Alert:
    return Alert(ASSET, t, "warning", kind, f"{ASSET}: {kind}")


async def test_the_stored_episode_ends_at_its_clear_and_keeps_the_latest_windows(
    tmp_path: Path,
) -> None:
    """Two episodes in the store: a verdict on the first reads its windows only, up to its
    anomaly_cleared; the second, still open, runs to the newest window."""
    t0 = 1_800_000_000.0
    errors = [1.0] * 10 + [3.0 + i / 100 for i in range(20)] + [1.0] * 10 + [4.0] * 5
    alerts = [anomaly("anomaly_raised", t0 + 10), anomaly("anomaly_cleared", t0 + 30)]
    alerts.append(anomaly("anomaly_raised", t0 + 40))
    async with await Store.open(StoreSettings(path=tmp_path / "store.db")) as store:
        await store.recorder.add_records([score(t0 + i, e) for i, e in enumerate(errors)])
        await store.recorder.add_records(alerts)
        verdicts = EpisodeVerdicts(store.detector_states)
        for raised_t in (t0 + 10, t0 + 40):
            verdict = EpisodeVerdict(ASSET, raised_t, "not_a_fault", "anna", t0 + 50)
            await verdicts.judge(verdict, "warning")
        first_page = await store.detector_states.episode_errors(ASSET, t0 + 10, limit=5)
    first, second = verdicts.take_pending(ASSET)
    assert [e for _, e in first.stored_errors] == errors[10:30]
    assert [t for t, _ in first.stored_errors] == [t0 + i for i in range(10, 30)]
    assert [e for _, e in second.stored_errors] == errors[40:]
    assert [e for _, e in first_page] == errors[25:30], "the latest, oldest first"
