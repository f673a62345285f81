"""The running appliance and its releases: a release on trial that becomes healthy confirms
itself; one that does not within the bound is switched back and the appliance stops with
RESTART_EXIT; a release dropped into the release inbox is installed and switched to; the
release is shown in /api/status's data and the MQTT status."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ota_helpers import drop
from release_helpers import release_wheels, seed
from waiting import wait_until

from appliance.config import ApplianceConfig, parse_config
from appliance.ota.inbox import RESULT_SUFFIX
from appliance.ota.release import trial
from appliance.ota.release.bundle import pack_release
from appliance.ota.release.install import RESTART_EXIT
from appliance.ota.release.manager import ReleaseManager, ReleaseSettings
from appliance.ota.release.slots import CONFIRMED, CURRENT, RELEASE_MANIFEST, ReleaseRoot
from appliance.ota.signing import public_key_text
from appliance.rig import run_appliance
from appliance.rig.demo import demo_config
from appliance.status import StatusBoard
from appliance.status_snapshot import snapshot
from appliance.uplink.commands import Command, decode_command, encode_command
from appliance.wiring import command_handler, extra_status

KEY = Ed25519PrivateKey.generate()


def on_trial(root: Path) -> ReleaseRoot:
    """Releases 1.0 (confirmed) and 2.0 (current, start 1 of its trial): just their marker
    files, the running code is this checkout's."""
    releases = ReleaseRoot(root)
    for version in ("1.0", "2.0"):
        releases.release_dir(version).mkdir(parents=True)
        (releases.release_dir(version) / RELEASE_MANIFEST).write_text("{}")
    releases.switch(CURRENT, "1.0")
    releases.switch(CONFIRMED, "1.0")
    trial.begin(releases, "2.0", "test", max_starts=3)
    assert "start 1 of 3" in trial.on_start(releases)
    return releases


def config(tmp_path: Path, root: Path, **release: Any) -> ApplianceConfig:
    document = demo_config(tmp_path, [], sms=False).model_dump(exclude_none=True)
    document["release"] = {
        "root": str(root),
        "public_keys": [public_key_text(KEY.public_key())],
        **release,
    }
    return parse_config(document, "<release test>")


async def run(config: ApplianceConfig, board: StatusBoard, until: Any) -> int:
    stop = asyncio.Event()
    task = asyncio.create_task(run_appliance(config, stop=stop, board=board))
    await wait_until(lambda: until() or task.done(), "the release's health check", alive=None)
    stop.set()
    return await task


async def test_a_healthy_release_on_trial_confirms_itself(tmp_path: Path) -> None:
    root = on_trial(tmp_path / "opt")
    board = StatusBoard("demo-gw")
    status = await run(config(tmp_path, root.root), board, lambda: root.linked(CONFIRMED) == "2.0")
    assert status == 0
    state = root.load()
    assert (state.trial, state.previous, state.installs) == (None, "1.0", 1)
    shown = snapshot(board, 0.0).release
    assert shown is not None and "passed its health check" in shown["health"]
    assert shown["confirmed"] == "2.0" and shown["version"]


async def test_a_release_not_healthy_in_time_is_switched_back(tmp_path: Path) -> None:
    root = on_trial(tmp_path / "opt")
    board = StatusBoard("demo-gw")
    quick = config(tmp_path, root.root, health_bound_s=0.01)  # before any window can be scored
    stop = asyncio.Event()
    status = await asyncio.wait_for(run_appliance(quick, stop=stop, board=board), 60)
    assert status == RESTART_EXIT  # stopped by itself: systemd starts `current` again
    assert (root.linked(CURRENT), root.linked(CONFIRMED)) == ("1.0", "1.0")
    state = root.load()
    assert state.trial is None and state.automatic_rollbacks == 1
    assert "health check failed" in state.failed[-1]["reason"]
    assert "no feature window yet" in state.failed[-1]["reason"]


async def test_a_release_dropped_in_the_inbox_is_installed_and_restarts(tmp_path: Path) -> None:
    root = seed(tmp_path / "opt", KEY, release_wheels(tmp_path / "w1", "1.0"))
    _, data = pack_release(release_wheels(tmp_path / "w2", "2.0"), KEY)
    settings = ReleaseSettings(root.root, (KEY.public_key(),), tmp_path / "inbox", 0.05,
                               60.0, 3, 3, with_pip=False)  # fmt: skip
    stop, board = asyncio.Event(), StatusBoard("gw")
    manager = ReleaseManager(settings, board, stop)
    manager.open()
    watch = asyncio.create_task(manager.inbox.watch())
    try:
        await drop(settings.inbox, "2.0.tar", b"not a tar")
        await drop(settings.inbox, "2.1.tar", data)
        await asyncio.wait_for(stop.wait(), 30)
    finally:
        watch.cancel()
    assert manager.exit_status == RESTART_EXIT and root.linked(CURRENT) == "2.0"
    done = json.loads((settings.inbox / "done" / f"2.1.tar{RESULT_SUFFIX}").read_text())
    assert done["accepted"] and "2.0 installed" in done["message"]
    refused = json.loads((settings.inbox / "refused" / f"2.0.tar{RESULT_SUFFIX}").read_text())
    assert "not a tar" in refused["message"]
    assert manager.status.refusals == 1
    assert extra_status(None, manager)["release"] == {
        "running": "2.0", "confirmed": "1.0", "trial": "2.0", "failed": [],
    }  # fmt: skip


async def test_release_commands_over_mqtt_reach_the_release_manager(tmp_path: Path) -> None:
    sent = Command("c1", "install_release", bundle=b"not a tar")
    assert decode_command(encode_command(sent)) == sent
    settings = ReleaseSettings(tmp_path / "opt", (KEY.public_key(),), tmp_path / "inbox", 1.0,
                               60.0, 3, 3, with_pip=False)  # fmt: skip
    manager = ReleaseManager(settings, StatusBoard("gw"), asyncio.Event())
    manager.open()
    handle = command_handler(None, manager)
    installed = await handle(sent)
    assert not installed["accepted"] and "not a tar" in installed["message"]
    rolled = await handle(decode_command(encode_command(Command("c2", "rollback_release"))))
    assert not rolled["accepted"] and "no previous release" in rolled["message"]
    assert manager.status.refusals == 2 and manager.exit_status == 0
    no_releases = await command_handler(None, None)(Command("c3", "rollback_release"))
    assert "no [release] table" in no_releases["message"]
