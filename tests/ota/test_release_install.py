"""Appliance releases on a release root in tmp: a good release installs beside the running one,
starts through `current` and is confirmed; a crash-looping one is switched back by the start
guard; a power cut (SIGKILL of the installing process) after each step leaves a release that
starts; rollback by command."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from release_helpers import (
    BROKEN,
    install_killed_at,
    installer,
    make_wheel,
    release_wheels,
    seed,
    start,
)

from appliance.detect.bundle import sha256_hex
from appliance.errors import BundleError
from appliance.ota.archive import BundleArchive
from appliance.ota.release import trial
from appliance.ota.release.bundle import RELEASE_LIMITS, ReleaseManifest, pack_release
from appliance.ota.release.slots import CONFIRMED, CURRENT, ReleaseRoot


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def root(tmp_path: Path, key: Ed25519PrivateKey) -> ReleaseRoot:
    return seed(tmp_path / "opt", key, release_wheels(tmp_path / "w1", "1.0"))


def update(tmp_path: Path, key: Ed25519PrivateKey, root: ReleaseRoot, body: str = "") -> bytes:
    """Release 2.0 packed against 1.0: only its appliance wheel travels."""
    wheels = release_wheels(tmp_path / "w2", "2.0", *([body] if body else []))
    running = ReleaseManifest("1.0", _pooled(root))
    manifest, data = pack_release(wheels, key, already_there=running)
    assert set(manifest.wheels) == {
        "edge_appliance-2.0-py3-none-any.whl",
        "helperlib-1.0-py3-none-any.whl",
    }
    return data


def _pooled(root: ReleaseRoot) -> dict[str, str]:
    return {p.name: sha256_hex(p.read_bytes()) for p in root.wheels.glob("*.whl")}


def test_a_good_release_runs_its_trial_and_is_confirmed(
    tmp_path: Path, key: Ed25519PrivateKey, root: ReleaseRoot
) -> None:
    data = update(tmp_path, key, root)
    with BundleArchive(data, RELEASE_LIMITS) as archive:  # helperlib stays home
        assert sorted(archive.names) == [
            "edge_appliance-2.0-py3-none-any.whl",
            "manifest.json",
            "signature.ed25519",
        ]
    with root.locked():
        message = installer(root.root, key).install(data, "inbox:2.0.tar")
    assert "2.0 installed" in message
    assert (root.linked(CURRENT), root.linked(CONFIRMED)) == ("2.0", "1.0")

    started = start(root.root)
    assert (started.returncode, started.stdout) == (0, "appliance 2.0\n")
    on_trial = root.load().trial
    assert on_trial is not None and (on_trial.version, on_trial.starts) == ("2.0", 1)

    trial.confirm(root, "2.0")
    state = root.load()
    assert (root.linked(CONFIRMED), state.trial, state.previous) == ("2.0", None, "1.0")
    assert state.installs == 1

    assert "from 2.0 to 1.0" in trial.roll_back(root, "rollback requested")
    assert start(root.root).stdout == "appliance 1.0\n"
    assert root.load().rollbacks == 1


def test_a_crash_looping_release_is_switched_back_by_the_start_guard(
    tmp_path: Path, key: Ed25519PrivateKey, root: ReleaseRoot
) -> None:
    with root.locked():
        installer(root.root, key, max_starts=2).install(update(tmp_path, key, root, BROKEN), "t")
    assert [start(root.root).returncode for _ in range(2)] == [1, 1]  # systemd restarts it
    back = start(root.root)
    assert (back.returncode, back.stdout) == (0, "appliance 1.0\n")
    state = root.load()
    assert state.trial is None and state.automatic_rollbacks == 1
    assert state.failed[-1]["version"] == "2.0" and "crash loop" in state.failed[-1]["reason"]
    assert root.linked(CONFIRMED) == "1.0"


@pytest.mark.parametrize(
    ("step", "runs"),
    [
        pytest.param("staged", "1.0", marks=pytest.mark.slow),  # nothing changed yet
        ("built", "1.0"),
        ("trial_recorded", "1.0"),
        ("switched", "2.0"),
    ],
)
def test_a_power_cut_after_each_step_leaves_a_release_that_starts(
    tmp_path: Path, key: Ed25519PrivateKey, root: ReleaseRoot, step: str, runs: str
) -> None:
    archive = tmp_path / "2.0.tar"
    archive.write_bytes(update(tmp_path, key, root))
    assert install_killed_at(root.root, key, archive, step) == -signal.SIGKILL
    started = start(root.root)
    assert (started.returncode, started.stdout) == (0, f"appliance {runs}\n")
    state = root.load()
    if step == "switched":  # on trial: the next starts count; confirmed, it stays
        assert state.trial is not None and state.trial.starts == 1
        return
    assert state.trial is None
    if step == "trial_recorded":
        assert "interrupted" in state.failed[-1]["reason"]
    with root.locked():  # the same bundle installs afterwards
        installer(root.root, key).install(archive.read_bytes(), "again")
    assert start(root.root).stdout == "appliance 2.0\n"


def test_a_power_cut_inside_confirm_or_rollback_is_completed_at_the_next_start(
    tmp_path: Path, key: Ed25519PrivateKey, root: ReleaseRoot
) -> None:
    data = update(tmp_path, key, root)
    with root.locked():
        installer(root.root, key).install(data, "t")
    root.switch(CONFIRMED, "2.0")  # confirm's first write, then the cut
    assert start(root.root).stdout == "appliance 2.0\n"
    state = root.load()
    assert (state.trial, state.previous, state.installs) == (None, "1.0", 1)

    state.trial = trial.Trial("3.0", "2.0", 2, "t")  # a trial whose switch back was cut short
    root.save(state)
    assert start(root.root).stdout == "appliance 2.0\n"
    assert root.load().failed[-1]["version"] == "3.0"


def test_no_rollback_without_a_previous_release(root: ReleaseRoot) -> None:
    with pytest.raises(trial.NoRollback, match="no previous release"):
        trial.roll_back(root, "asked")
    with pytest.raises(trial.NoRollback, match="no release is on trial"):
        trial.fail(root, "unhealthy", automatic=True)


def test_a_wheel_a_power_cut_left_empty_in_the_pool_is_replaced(
    tmp_path: Path, key: Ed25519PrivateKey, root: ReleaseRoot
) -> None:
    """The cut came after the carried wheel was renamed into the pool, before its bytes reached
    the disk: the same bundle, taken again from the inbox, installs."""
    data = update(tmp_path, key, root)
    cut_short = root.wheels / "edge_appliance-2.0-py3-none-any.whl"
    cut_short.write_bytes(b"")
    with root.locked():
        installer(root.root, key).install(data, "inbox:2.0.tar")
    assert start(root.root).stdout == "appliance 2.0\n"
    signed = (tmp_path / "w2" / cut_short.name).read_bytes()
    assert sha256_hex(cut_short.read_bytes()) == sha256_hex(signed)


def test_a_wheel_an_installed_release_pins_is_not_replaced_by_other_bytes(
    tmp_path: Path, key: Ed25519PrivateKey, root: ReleaseRoot
) -> None:
    wheels = release_wheels(tmp_path / "w2", "2.0")
    make_wheel(wheels, "helperlib", "1.0", body="print('other bytes, same name')")
    _, data = pack_release(wheels, key)
    pooled = root.wheels / "helperlib-1.0-py3-none-any.whl"
    before = pooled.read_bytes()
    with root.locked(), pytest.raises(BundleError) as refused:
        installer(root.root, key).install(data, "inbox:2.0.tar")
    assert str(refused.value) == (
        "release: helperlib-1.0-py3-none-any.whl differs from the wheel of that name"
        " release 1.0 runs"
    )
    assert pooled.read_bytes() == before
    assert start(root.root).stdout == "appliance 1.0\n"
