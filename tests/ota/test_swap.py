"""Swapping models in a running appliance: at 64 channels x 1 kHz no window is skipped or scored
twice (counted by seq); an installed model survives a restart; a model whose live alarm rate
breaks its probation is rolled back automatically; rollbacks walk back to the configured model."""

from __future__ import annotations

import asyncio
import math
import statistics
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ota_helpers import (
    archive,
    check_every_window_scored_once,
    drop,
    ota_config,
    result,
    with_models,
)
from waiting import wait_until

from appliance.config import ApplianceConfig, parse_config
from appliance.rig import run_appliance
from appliance.rig.demo import demo_config, wide_demo_document
from appliance.status import StatusBoard
from appliance.store import Store, StoreSettings

ASSET = "pump-1"


class Run:
    """One appliance run in a task, watched through its status board."""

    def __init__(self, config: ApplianceConfig) -> None:
        self.board = StatusBoard(config.gateway.id)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(run_appliance(config, stop=self.stop, board=self.board))

    async def until(self, condition: Any, what: str) -> None:
        await wait_until(condition, what, deadline_s=90, alive=self.task)

    def scored_by(self, model: str) -> bool:
        score = self.board.asset(ASSET).latest_score
        return score is not None and score.model_id == model

    async def finish(self) -> None:
        self.stop.set()
        await self.task


async def install(run: Run, inbox: Path, filename: str, data: bytes) -> dict[str, object]:
    """Drop `filename` into the inbox; its outcome once handled."""
    await drop(inbox, filename, data)

    def outcome() -> dict[str, object] | None:
        return result(inbox, "done", filename) or result(inbox, "refused", filename)

    await run.until(lambda: outcome() is not None, f"{filename} handled")
    handled = outcome()
    assert handled is not None
    return handled


async def test_swap_at_64_channels_loses_and_doubles_no_window(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    config = with_models(parse_config(wide_demo_document(tmp_path), "<64>"), key)
    assert sum(len(a.channels) for a in config.assets) == 66  # 64 vibration + 2 slow
    inbox = tmp_path / "model-inbox"
    run = Run(config)
    await run.until(lambda: run.board.asset(ASSET).scores >= 6, "6 windows scored")
    await until_the_canary_has_windows(run, tmp_path / "appliance.db")
    old = run.board.models.active[ASSET]
    outcome = await install(run, inbox, "new.tar", archive(tmp_path, "swap-2", key))
    assert outcome["accepted"] is True, outcome
    new = str(outcome["model"])
    await run.until(lambda: run.scored_by(new), "a window scored by the new model")
    swapped_at = run.board.asset(ASSET).scores
    await run.until(lambda: run.board.asset(ASSET).scores >= swapped_at + 5, "5 more windows")
    await run.finish()
    assert all(rate == 0 for rate in dropped(run.board))
    await check_every_window_scored_once(tmp_path / "appliance.db", [old, new])


async def until_the_canary_has_windows(run: Run, db: Path, needed: int = 5) -> None:
    """Under load the store and the slow sensors can lag the scores: wait until the canary
    would find `needed` stored windows with every feature finite."""
    store = await Store.open(StoreSettings(path=db))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while True:
            windows = await store.history.recent_normal_features(ASSET, 60)
            if sum(all(math.isfinite(v) for v in w.values) for w in windows) >= needed:
                return
            assert not run.task.done(), "the appliance stopped before the canary had windows"
            assert loop.time() < deadline, "timed out waiting for windows the canary can use"
            await asyncio.sleep(0.2)
    finally:
        await store.close()


def dropped(board: StatusBoard) -> list[int]:
    return [stats.dropped_samples for stats in board.serial.values()]


async def test_installed_model_survives_restart_and_rollbacks_walk_back(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    config = ota_config(tmp_path, key)
    inbox = tmp_path / "model-inbox"
    run = Run(config)
    await run.until(lambda: run.board.asset(ASSET).scores >= 6, "6 windows scored")
    configured = run.board.models.active[ASSET]
    first = await install(run, inbox, "a.tar", archive(tmp_path, "a-1", key))
    await run.until(lambda: run.scored_by(str(first["model"])), "model a scoring")
    second = await install(run, inbox, "b.tar", archive(tmp_path, "b-1", key))
    await run.until(lambda: run.scored_by(str(second["model"])), "model b scoring")
    await run.finish()
    probation = (await stored_states(tmp_path / "appliance.db")).get((ASSET, "probation"))
    assert probation is not None and probation["model_id"] == second["model"]
    scored = probation["scored"]
    assert isinstance(scored, int) and scored >= 1

    run = Run(config)  # restart: b is still the one
    await run.until(lambda: run.scored_by(str(second["model"])), "model b scoring after restart")
    assert run.board.models.origin[ASSET] == "over the air"
    assert run.board.models.previous[ASSET] == first["model"]
    rollback = b'{"action": "rollback", "asset": "pump-1"}'
    for i, expected in enumerate((first["model"], configured)):
        assert (await install(run, inbox, f"back-{i}.request", rollback))["accepted"] is True
        await run.until(lambda: run.scored_by(str(expected)), f"{expected} scoring again")  # noqa: B023
    nothing = await install(run, inbox, "back-again.request", rollback)
    assert nothing["accepted"] is False
    assert "nothing to roll back" in str(nothing["message"])
    await run.finish()
    assert run.board.models.origin[ASSET] == "config"
    assert (ASSET, "probation") not in await stored_states(tmp_path / "appliance.db")


async def test_model_alarming_live_is_rolled_back_automatically(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    models = {
        "canary_max_alarm_fraction": 0.9,  # a permissive canary: the live check must catch it
        "probation_min_windows": 5,
        "probation_max_alarm_fraction": 0.2,
    }
    base = demo_config(tmp_path, [], sms=False).model_dump(exclude_none=True)
    for asset in base["assets"]:
        asset["model"]["rule"] = "fixed"  # live threshold = the bundle's own
    config = with_models(parse_config(base, "<fixed>"), key, models)
    inbox = tmp_path / "model-inbox"
    run = Run(config)
    await run.until(lambda: run.board.asset(ASSET).scores >= 10, "10 windows scored")
    configured = run.board.models.active[ASSET]
    median = statistics.median(await recent_errors(tmp_path / "appliance.db"))

    def at_the_median(manifest: dict[str, Any]) -> None:
        manifest["threshold"]["fixed_threshold"] = median

    outcome = await install(
        run, inbox, "touchy.tar", archive(tmp_path, "touchy-1", key, at_the_median)
    )
    assert outcome["accepted"] is True, outcome
    await run.until(lambda: run.board.models.automatic_rollbacks == 1, "an automatic rollback")
    await run.until(lambda: run.scored_by(configured), "the configured model scoring again")
    await run.finish()
    last = run.board.models.outcomes[-1]
    assert last.action == "rollback" and last.source == "probation"
    assert "automatic rollback: live alarm rate" in last.message


async def stored_states(db: Path) -> dict[tuple[str, str], dict[str, object]]:
    store = await Store.open(StoreSettings(path=db))
    try:
        return await store.detector_states.load_states()
    finally:
        await store.close()


async def recent_errors(db: Path) -> list[float]:
    store = await Store.open(StoreSettings(path=db))
    try:
        return [score.error for _, score in await store.history.scores(ASSET, limit=1000)]
    finally:
        await store.close()
