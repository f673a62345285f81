"""Bad bundles arriving in the inbox of a running appliance: each is refused with a reason that
names the check, and the old model keeps scoring every window without a gap; then a good one
takes over between two windows."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ota_helpers import (
    alarm_on_everything,
    archive,
    check_every_window_scored_once,
    drop,
    drop_last_feature,
    ota_config,
    overflowing_scaler,
    rename_a_feature,
    result,
)
from waiting import wait_until

from appliance.rig import run_appliance
from appliance.status import StatusBoard

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


async def test_bad_bundles_are_refused_and_the_old_model_scores_on(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    config = ota_config(tmp_path, key)
    inbox = tmp_path / "model-inbox"
    board = StatusBoard(config.gateway.id)
    stop = asyncio.Event()
    run = asyncio.create_task(run_appliance(config, stop=stop, board=board))
    scores = lambda: board.asset(ASSET).scores  # noqa: E731
    await wait_until(lambda: scores() >= 8, "8 windows scored by the configured model", alive=run)
    old_model = board.models.active[ASSET]

    refused: dict[str, str] = {}
    for name, (data, expected) in bad_archives(tmp_path / "bundles", key).items():
        before = scores()
        await drop(inbox, f"{name}.tar", data)
        await wait_until(
            lambda: result(inbox, "refused", f"{name}.tar") is not None,  # noqa: B023
            f"{name} refused",
            alive=run,
        )
        outcome = result(inbox, "refused", f"{name}.tar")
        assert outcome is not None and outcome["accepted"] is False
        refused[name] = str(outcome["message"])
        assert expected in refused[name], (name, refused[name])
        await wait_until(lambda: scores() > before, f"scoring after {name}", alive=run)  # noqa: B023
        assert board.models.active[ASSET] == old_model

    await drop(inbox, "good.tar", archive(tmp_path / "bundles", "ota-2", key))
    await wait_until(
        lambda: result(inbox, "done", "good.tar") is not None, "good bundle", alive=run
    )
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
