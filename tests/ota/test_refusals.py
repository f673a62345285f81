"""Bad bundles arriving in the inbox of a running appliance: each is refused with a reason that
names the check, and the old model keeps scoring every window without a gap; then a good one
takes over between two windows."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ota_helpers import (
    alarm_on_everything,
    archive,
    drop_last_feature,
    ota_config,
    overflowing_scaler,
    rename_a_feature,
)
from waiting import wait_until

from appliance.app import run_appliance
from appliance.ota.manager import RESULT_SUFFIX
from appliance.status import StatusBoard
from appliance.store import Store, StoreSettings

ASSET = "pump-1"


def bad_archives(tmp: Path, key: Ed25519PrivateKey) -> dict[str, tuple[bytes, str]]:
    """name -> (archive, what the refusal must say)."""
    good = archive(tmp, "ok-1", key)
    return {
        "unsigned": (archive(tmp, "unsigned", None), "signature: unsigned"),
        "wrongly-signed": (
            archive(tmp, "wrong-key", Ed25519PrivateKey.generate()),
            "signature: wrong signature",
        ),
        "truncated": (good[: len(good) // 2], "archive: truncated"),
        "wrong-shape": (
            archive(tmp, "wrong-shape", key, edit=drop_last_feature),
            "runtime: ",
        ),
        "wrong-names": (
            archive(tmp, "wrong-names", key, edit=rename_a_feature),
            "features: the model needs 1 feature(s) asset pump-1 does not produce: accel_w.rms",
        ),
        "not-finite": (
            archive(tmp, "not-finite", key, edit=overflowing_scaler),
            "canary: not finite",
        ),
        "alarms-on-everything": (
            archive(tmp, "alarms", key, edit=alarm_on_everything),
            "it would alarm on a healthy machine",
        ),
    }


def result(inbox: Path, folder: str, name: str) -> dict[str, object] | None:
    path = inbox / folder / f"{name}.tar{RESULT_SUFFIX}"
    return json.loads(path.read_text()) if path.exists() else None


async def drop(inbox: Path, name: str, data: bytes) -> None:
    """As an integrator should: write under a hidden name, then rename into the inbox."""
    hidden = inbox / f".{name}.tar"
    hidden.write_bytes(data)
    hidden.rename(inbox / f"{name}.tar")


async def test_bad_bundles_are_refused_and_the_old_model_scores_on(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    config = ota_config(tmp_path, key)
    inbox = tmp_path / "models" / "inbox"
    board = StatusBoard(config.gateway.id)
    stop = asyncio.Event()
    run = asyncio.create_task(run_appliance(config, stop=stop, board=board))
    scores = lambda: board.asset(ASSET).scores  # noqa: E731
    await wait_until(lambda: scores() >= 8, "8 windows scored by the configured model", alive=run)
    old_model = board.models.active[ASSET]

    refused: dict[str, str] = {}
    for name, (data, expected) in bad_archives(tmp_path / "bundles", key).items():
        before = scores()
        await drop(inbox, name, data)
        await wait_until(
            lambda: result(inbox, "refused", name) is not None,  # noqa: B023
            f"{name} refused",
            alive=run,
        )
        outcome = result(inbox, "refused", name)
        assert outcome is not None and outcome["accepted"] is False
        refused[name] = str(outcome["message"])
        assert expected in refused[name], (name, refused[name])
        await wait_until(lambda: scores() > before, f"scoring after {name}", alive=run)  # noqa: B023
        assert board.models.active[ASSET] == old_model

    await drop(inbox, "good", archive(tmp_path / "bundles", "ota-2", key))
    await wait_until(lambda: result(inbox, "done", "good") is not None, "good bundle", alive=run)
    new_model = board.models.active[ASSET]
    assert new_model.startswith("ota-2-") and new_model != old_model
    await wait_until(
        lambda: (
            board.asset(ASSET).latest_score is not None
            and board.asset(ASSET).latest_score.model_id == new_model
        ),
        "a window scored by the new model",
        alive=run,
    )
    stop.set()
    await run

    assert board.models.refusals == len(refused)
    await check_every_window_scored_once(tmp_path / "appliance.db", [old_model, new_model])


async def check_every_window_scored_once(db: Path, models_in_order: list[str]) -> None:
    """Each stored window of the asset has exactly one score, right after it in seq order, and
    the model ids change only in the given order (never back and forth)."""
    store = await Store.open(StoreSettings(path=db))
    try:
        features = await store.features(ASSET, limit=1_000_000)
        scores = await store.scores(ASSET, limit=1_000_000)
    finally:
        await store.close()
    score_by_seq = {seq: score for seq, score in scores}
    assert len(scores) == len(features)
    used: list[str] = []
    for seq, vector in features:
        score = score_by_seq.get(seq + 1)
        assert score is not None, f"window seq {seq} (t={vector.window_end}) has no score"
        assert score.t == vector.window_end
        if not used or used[-1] != score.model_id:
            used.append(score.model_id)
    assert used == models_in_order
