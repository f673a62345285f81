"""Hostile bundle archives against a real model manager (real library directory, real SQLite
store), as they would arrive from the inbox, the page or MQTT (issue 12).

Property: whatever the archive holds (signed or not), `install` answers with a refusal that
names the check, counted; the active bundle, the library and everything around it stay exactly
as they were; nothing is left in staging or outside the library. The manager here is told that
its asset lacks one of the bundle's features, so an archive that happens to survive every
mutation is refused at the last check before the canary ("features:"), and the test needs no
model runtime."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from ota_helpers import DEMO_BUNDLE, ota_config, variant

from appliance.detect.bundle import MANIFEST_FILE, SIGNATURE_FILE, load_bundle
from appliance.errors import BundleError
from appliance.ota.daemon_thread import in_daemon_thread
from appliance.ota.library import BundleLibrary, Slots, dir_name
from appliance.ota.manager import ModelManager
from appliance.ota.settings import ota_settings
from appliance.ota.vetting import check_newer, version_key
from appliance.status import StatusBoard
from appliance.store import Store, StoreSettings

ASSET = "pump-1"
KEY = Ed25519PrivateKey.generate()
MANIFEST: dict[str, Any] = json.loads((DEMO_BUNDLE / MANIFEST_FILE).read_text())
MODEL = (DEMO_BUNDLE / MANIFEST["model_file"]).read_bytes()
CHECKS = ("archive: ", "signature: ", "bundle: ", "asset: ", "features: ", "version: ")


def signed_files(manifest: dict[str, Any], key: Ed25519PrivateKey = KEY) -> dict[str, bytes]:
    text = json.dumps(manifest, indent=2).encode()
    signature = base64.b64encode(key.sign(text)) + b"\n"
    return {MANIFEST_FILE: text, MANIFEST["model_file"]: MODEL, SIGNATURE_FILE: signature}


GOOD = signed_files({**MANIFEST, "version": "2026.03"})


def tar(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
                continue
            info = tarfile.TarInfo(member[0])
            info.size = len(member[1])
            archive.addfile(info, io.BytesIO(member[1]))
    return out.getvalue()


NAMES = st.sampled_from(
    ["a" * 300, "../escape", "/abs", "sub/dir", ".", "..", "", "é", "x\0y", "model.tflite"]
) | st.text(max_size=120)
HOSTILE_VALUES = st.sampled_from(
    ["../../../../tmp/X", "/tmp/X", "sub/dir", "v" * 300, "2026.01", "2026.02", "\ud800"]
) | st.recursive(
    st.none() | st.booleans() | st.integers(-(10**400), 10**400) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = st.sampled_from(
    ["version", "asset", "model_file", "feature_names", "scaler_mean", "training", "format"]
)


@st.composite
def hostile_archive(draw: st.DrawFn) -> bytes:
    """The good signed bundle with one or more things done to it."""
    files = dict(GOOD)
    extra: list[tarfile.TarInfo | tuple[str, bytes]] = []
    for change in draw(st.lists(st.integers(0, 6), min_size=1, max_size=3)):
        if change == 0 and files:  # a member missing
            files.pop(draw(st.sampled_from(sorted(files))))
        elif change == 1:  # an extra member, any name
            extra.append((draw(NAMES), draw(st.binary(max_size=64))))
        elif change == 2 and files:  # a member's bytes replaced
            files[draw(st.sampled_from(sorted(files)))] = draw(st.binary(max_size=256))
        elif change == 3:  # something that is not a plain file
            info = tarfile.TarInfo(draw(st.sampled_from(sorted(GOOD))))
            info.type = draw(st.sampled_from([tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE]))
            info.linkname = "/etc/passwd"
            extra.append(info)
        elif change == 4:  # a hostile manifest, signed with the trusted key
            manifest = {**MANIFEST, "version": "2026.03"}
            manifest[draw(FIELDS)] = draw(HOSTILE_VALUES)
            with contextlib.suppress(UnicodeEncodeError):  # json.dumps escapes surrogates
                files.update(signed_files(manifest))
        elif change == 5:  # signed with another key
            files[SIGNATURE_FILE] = signed_files(MANIFEST, Ed25519PrivateKey.generate())[
                SIGNATURE_FILE
            ]
        else:
            extra.append(("z-extra.bin", b"not signed"))
    data = tar([*files.items(), *extra])
    if draw(st.integers(0, 7)) == 0:  # cut short
        data = data[: draw(st.integers(0, len(data)))]
    if data and draw(st.integers(0, 7)) == 0:  # one byte flipped
        flip = draw(st.integers(0, len(data) - 1))
        data = data[:flip] + bytes([data[flip] ^ 0xFF]) + data[flip + 1 :]
    return data


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under `root`, with a hash of each file's bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file()
        else "dir"
        for path in sorted(root.rglob("*"))
    }


@contextlib.contextmanager
def a_manager(tmp: Path) -> Iterator[tuple[ModelManager, asyncio.Runner]]:
    """A manager whose asset has one bundle installed (2026.02) and lacks one feature the
    bundles need."""
    config = ota_config(tmp, KEY)
    assert config.models is not None
    ota = ota_settings(config.models, Path(config.store.path))
    library = BundleLibrary(ota.directory)
    library.open()
    staged = variant(library.new_staging_dir(), "2026.02", KEY)
    installed = load_bundle(staged).bundle_id
    library.keep(staged, ASSET, installed)
    library.save_slots(ASSET, Slots(history=[installed]))
    features = {ASSET: tuple(MANIFEST["feature_names"][:-1])}
    with asyncio.Runner() as runner:
        store = runner.run(Store.open(StoreSettings(path=Path(config.store.path))))
        manager = ModelManager(
            ota,
            config,
            store.history,
            store.detector_states,
            StatusBoard(config.gateway.id),
            features,
        )
        manager.open()
        try:
            yield manager, runner
        finally:
            manager.close()
            runner.run(store.close())


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_hostile_archive_is_refused_with_a_reason_and_changes_nothing(
    tmp_path: Path, data: st.DataObject
) -> None:
    with a_manager(tmp_path / "gw") as (manager, runner):
        before, slots = snapshot(tmp_path), manager.library.slots(ASSET)
        refusals = manager.status.refusals
        for _ in range(5):
            archive = data.draw(hostile_archive())
            outcome = runner.run(manager.install(archive, "test"))
            assert outcome.accepted is False
            assert outcome.message.startswith(CHECKS), outcome.message
            event(outcome.message.split(":")[0])
            assert "unexpectedly" not in outcome.message
            assert snapshot(tmp_path) == before
            assert manager.library.slots(ASSET) == slots
            refusals += 1
            assert manager.status.refusals == refusals
            assert manager.status.outcomes[-1] == outcome


def test_a_bundle_that_survives_is_refused_at_the_last_check(tmp_path: Path) -> None:
    """The premise of the property test: the unchanged archive gets as far as "features"."""
    with a_manager(tmp_path / "gw") as (manager, runner):
        outcome = runner.run(manager.install(tar(list(GOOD.items())), "test"))
    assert outcome.message.startswith("features: the model needs 1 feature(s)"), outcome


def test_an_exception_of_any_type_while_checking_is_a_refusal(tmp_path: Path) -> None:
    """Issue 12: only BundleError and ValueError were caught; anything else ended the task."""
    with a_manager(tmp_path / "gw") as (manager, runner):
        before = snapshot(tmp_path)

        def broken(*args: object) -> None:
            raise OSError(36, "File name too long")

        manager._vet = broken  # type: ignore[method-assign]
        outcome = runner.run(manager.install(tar(list(GOOD.items())), "test"))
        assert outcome.accepted is False and manager.status.refusals == 1
        assert "checks failed unexpectedly (OSError: [Errno 36] File name too long)" in (
            outcome.message
        )
        assert snapshot(tmp_path) == before


# --- the time budget, versions, the library ---------------------------------------------------


async def test_work_over_its_budget_is_abandoned_and_cleaned_up_when_it_ends() -> None:
    release, cleaned = threading.Event(), asyncio.Event()
    with pytest.raises(TimeoutError):
        await in_daemon_thread(release.wait, 0.05, on_abandoned=cleaned.set)
    assert not cleaned.is_set()
    release.set()
    await asyncio.wait_for(cleaned.wait(), 30)
    assert await in_daemon_thread(lambda: 42, 30, on_abandoned=cleaned.set) == 42


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("2026.02", "2026.03"),
        ("2026.9", "2026.10"),
        ("2026.10", "2026.10.1"),
        ("2026-02-01", "2026-03-01"),
        ("2026.02", "2027.01"),
        ("demo-1", "demo-2"),
        ("v9", "v10"),
        ("2026.02", "demo-1"),  # a number sorts before text
    ],
)
def test_versions_compare_in_natural_order(older: str, newer: str) -> None:
    assert version_key(older) < version_key(newer)
    check_newer(newer, older, ASSET)
    with pytest.raises(BundleError, match=f"^version: {older} is older than the active {newer}"):
        check_newer(older, newer, ASSET)
    with pytest.raises(BundleError, match=f"^version: {older} is the same version as"):
        check_newer(older, older, ASSET)


def test_bundle_directories_are_hashes_and_old_ones_are_renamed(tmp_path: Path) -> None:
    library = BundleLibrary(tmp_path / "lib")
    library.open()
    bundle_id = load_bundle(variant(tmp_path / "b", "2026.02", KEY)).bundle_id
    assert library.bundle_dir(ASSET, bundle_id) == tmp_path / "lib" / ASSET / dir_name(bundle_id)
    old = tmp_path / "lib" / ASSET / bundle_id  # the layout before hashes
    variant(old, "2026.02", KEY)
    hostile = "../../../../tmp/X-0123456789ab"
    (tmp_path / "lib" / ASSET / "slots.json").write_text(
        json.dumps({"history": [hostile, bundle_id, 7], "rolled_back": []})
    )
    assert library.slots(ASSET) == Slots(history=[bundle_id])  # the rest dropped, logged

    BundleLibrary(tmp_path / "lib").open()

    assert not old.exists()
    assert load_bundle(library.bundle_dir(ASSET, bundle_id)).bundle_id == bundle_id


REQUEST_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**400), 10**400) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
REQUESTS = st.binary(max_size=200) | st.dictionaries(
    st.sampled_from(["action", "asset", "reason", "other"]), REQUEST_VALUES
).map(lambda body: json.dumps(body).encode("utf-8", "surrogatepass"))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(requests=st.lists(REQUESTS, min_size=1, max_size=10))
def test_any_inbox_request_that_is_not_a_rollback_is_refused_and_changes_nothing(
    tmp_path: Path, requests: list[bytes]
) -> None:
    """The inbox's `<name>.request` files: anything but {"action": "rollback", "asset": <an
    asset of this gateway>} is refused with a reason; the library stays as it was."""
    with a_manager(tmp_path / "gw") as (manager, runner):
        before, slots = snapshot(tmp_path), manager.library.slots(ASSET)
        for data in requests:
            with contextlib.suppress(ValueError, RecursionError):
                body = json.loads(data)
                assume(not (isinstance(body, dict) and body.get("asset") == ASSET))
            outcome = runner.run(manager.inbox.request(data, "test"))
            assert outcome.accepted is False and outcome.action == "rollback"
            assert outcome.message.startswith(
                ('a request must be JSON {"action": "rollback"', "unknown action", "no asset")
            ), outcome.message
            assert len(outcome.message) < 400
            assert snapshot(tmp_path) == before and manager.library.slots(ASSET) == slots
        assert manager.status.refusals == len(requests)
