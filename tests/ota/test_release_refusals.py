"""Hostile release bundles are refused before anything is written, each with a reason naming
what is wrong: unsigned, another key, a wheel whose bytes are not the signed hash, a file the
manifest does not name, path tricks, too big, a manifest that is not a release's."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from release_helpers import make_wheel, release_wheels

from appliance.detect.bundle import MANIFEST_FILE, SIGNATURE_FILE
from appliance.errors import BundleError
from appliance.ota.release.bundle import RELEASE_LIMITS, pack_release, stage_release
from appliance.ota.release.install import Installer
from appliance.ota.release.slots import ReleaseRoot

KEY = Ed25519PrivateKey.generate()


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def tar(files: dict[str, bytes], kind: bytes = tarfile.REGTYPE) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.type = len(data), kind
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture
def good(tmp_path: Path) -> dict[str, bytes]:
    return members(pack_release(release_wheels(tmp_path / "w", "2.0"), KEY)[1])


def refusal(data: bytes, tmp_path: Path) -> str:
    dest = tmp_path / "staged"
    dest.mkdir(parents=True)
    with pytest.raises(BundleError) as refused:
        stage_release(data, [KEY.public_key()], dest)
    assert list(dest.iterdir()) == []  # nothing written
    return str(refused.value)


def test_the_good_bundle_stages(good: dict[str, bytes], tmp_path: Path) -> None:
    manifest, written = stage_release(tar(good), [KEY.public_key()], tmp_path)
    assert manifest.version == "2.0" and len(written) == 2


def test_unsigned_and_foreign_signatures_are_refused(
    good: dict[str, bytes], tmp_path: Path
) -> None:
    unsigned = {k: v for k, v in good.items() if k != SIGNATURE_FILE}
    assert "unsigned" in refusal(tar(unsigned), tmp_path / "a")
    other = members(pack_release(release_wheels(tmp_path / "w2", "2.0"),
                                 Ed25519PrivateKey.generate())[1])  # fmt: skip
    assert "wrong signature" in refusal(tar(other), tmp_path / "b")


def test_a_tampered_wheel_or_manifest_is_refused(good: dict[str, bytes], tmp_path: Path) -> None:
    tampered = dict(good)
    wheel = "edge_appliance-2.0-py3-none-any.whl"
    tampered[wheel] = make_wheel(
        tmp_path / "evil", "edge_appliance", "2.0", "import os"
    ).read_bytes()
    assert f"{wheel}: sha256" in refusal(tar(tampered), tmp_path / "a")
    manifest = json.loads(good[MANIFEST_FILE])
    manifest["version"] = "9.9"
    edited = {**good, MANIFEST_FILE: json.dumps(manifest).encode()}
    assert "wrong signature" in refusal(tar(edited), tmp_path / "b")


@pytest.mark.parametrize(
    ("name", "kind", "reason"),
    [
        ("../edge_appliance-2.0-py3-none-any.whl", tarfile.REGTYPE, "not a plain file"),
        ("/etc/passwd", tarfile.REGTYPE, "not a plain file"),
        ("evil.whl", tarfile.SYMTYPE, "not a plain file"),
        ("extra-1.0-py3-none-any.whl", tarfile.REGTYPE, "not a wheel the signed manifest names"),
    ],
)
def test_path_tricks_and_unnamed_files_are_refused(
    good: dict[str, bytes], tmp_path: Path, name: str, kind: bytes, reason: str
) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member, data in [*good.items(), (name, b"x")]:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            if member == name:
                info.type, info.linkname = kind, "/etc/shadow"
                info.size = 0 if kind == tarfile.SYMTYPE else len(data)
            archive.addfile(info, io.BytesIO(data))
    assert reason in refusal(out.getvalue(), tmp_path)


def test_too_big_and_not_a_release_are_refused(good: dict[str, bytes], tmp_path: Path) -> None:
    too_big = b"\0" * (RELEASE_LIMITS.max_bytes + 1)
    assert "more than" in refusal(too_big, tmp_path / "a")
    model_like = {**good, MANIFEST_FILE: b'{"format": "model"}'}
    from appliance.ota.signing import sign_bundle

    bundle = tmp_path / "m"
    bundle.mkdir()
    (bundle / MANIFEST_FILE).write_bytes(model_like[MANIFEST_FILE])
    model_like[SIGNATURE_FILE] = sign_bundle(bundle, KEY).read_bytes()
    assert "not a release manifest" in refusal(tar(model_like), tmp_path / "b")


def test_a_wheel_neither_carried_nor_on_the_gateway_is_refused(
    good: dict[str, bytes], tmp_path: Path
) -> None:
    without_lib = {k: v for k, v in good.items() if not k.startswith("helperlib")}
    installer = Installer(ReleaseRoot(tmp_path / "opt"), [KEY.public_key()], 2, with_pip=False)
    with pytest.raises(BundleError, match=r"helperlib-1\.0-py3-none-any\.whl is neither"):
        installer.install(tar(without_lib), "t")
    assert not (tmp_path / "opt" / "releases").exists()
