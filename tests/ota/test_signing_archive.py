"""Signatures and the archive a bundle travels in, without a running appliance."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ota_helpers import DEMO_BUNDLE, config_file, ota_config, variant

from appliance.cli import main
from appliance.config import parse_config
from appliance.errors import BundleError, ConfigError
from appliance.ota.archive import MAX_ARCHIVE_BYTES, BundleArchive, pack, unpack
from appliance.ota.settings import ota_settings
from appliance.ota.signing import (
    generate_key,
    load_private_key,
    parse_public_key,
    public_key_text,
    verify_signature,
)
from appliance.ota.vetting import stage_signed
from appliance.rig.demo import demo_config


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_pack_is_deterministic_and_unpacks_to_the_same_files(tmp_path: Path) -> None:
    assert pack(DEMO_BUNDLE) == pack(DEMO_BUNDLE)
    unpack(pack(DEMO_BUNDLE), tmp_path / "out")
    for original in DEMO_BUNDLE.iterdir():
        assert (tmp_path / "out" / original.name).read_bytes() == original.read_bytes()


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (tarfile.TarInfo("../escape"), "not a plain file"),
        (tarfile.TarInfo("dir/model.tflite"), "not a plain file"),
    ],
)
def test_unpack_refuses_paths(tmp_path: Path, member: tarfile.TarInfo, problem: str) -> None:
    with pytest.raises(BundleError, match=problem):
        unpack(tar_of((member, b"x")), tmp_path / "out")
    assert not (tmp_path / "escape").exists()


def test_unpack_refuses_links_empty_and_oversized(tmp_path: Path) -> None:
    link = tarfile.TarInfo("manifest.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(BundleError, match=r"not a plain file"):
        unpack(tar_of((link, b"")), tmp_path / "a")
    with pytest.raises(BundleError, match=r"empty"):
        unpack(tar_of(), tmp_path / "b")
    with pytest.raises(BundleError, match=r"more than"):
        unpack(b"\0" * (MAX_ARCHIVE_BYTES + 1), tmp_path / "c")


def test_every_truncation_of_an_archive_is_refused_or_complete(tmp_path: Path) -> None:
    """Cut anywhere: either refused as truncated, or (cut in the end-of-archive padding) every
    file arrives whole: never a short file."""
    data = pack(DEMO_BUNDLE)
    for i, cut in enumerate(range(0, len(data), 256)):
        try:
            unpack(data[:cut], tmp_path / str(i))
        except BundleError as exc:
            assert str(exc).startswith("archive:")
            continue
        for original in DEMO_BUNDLE.iterdir():
            assert (tmp_path / str(i) / original.name).read_bytes() == original.read_bytes()


def test_signature_accepts_any_configured_key_and_names_what_is_wrong(tmp_path: Path) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    signed = variant(tmp_path / "b", "v-1", new)
    keys = [old.public_key(), new.public_key()]
    assert verify_signature(signed, keys) == 1  # a rotation: both keys trusted
    with pytest.raises(BundleError, match=r"wrong signature"):
        verify_signature(signed, [old.public_key()])
    manifest = signed / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"v-1"', '"v-2"'))
    with pytest.raises(BundleError, match=r"changed after signing"):
        verify_signature(signed, keys)
    (signed / "signature.ed25519").write_text("not base64!\n")
    with pytest.raises(BundleError, match=r"not base64"):
        verify_signature(signed, keys)
    (signed / "signature.ed25519").unlink()
    with pytest.raises(BundleError, match=r"unsigned"):
        verify_signature(signed, keys)


def test_keys_round_trip_and_bad_keys_are_named(tmp_path: Path) -> None:
    public = generate_key(tmp_path / "k")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "k.pub").read_text().strip() == public
    assert public_key_text(load_private_key(tmp_path / "k").public_key()) == public
    with pytest.raises(BundleError, match=r"refusing to overwrite"):
        generate_key(tmp_path / "k")
    with pytest.raises(BundleError, match=r"where: public key is not base64"):
        parse_public_key("???", "where")
    with pytest.raises(BundleError, match=r"32 bytes, this one 3"):
        parse_public_key("YWJj", "where")


def test_models_config_needs_a_key_and_names_a_bad_one(tmp_path: Path) -> None:
    document = demo_config(tmp_path, [], sms=False).model_dump(exclude_none=True)
    with pytest.raises(ConfigError, match=r"needs public_keys or public_key_files"):
        parse_config({**document, "models": {}}, "<t>")
    config = parse_config({**document, "models": {"public_keys": ["A" * 44]}}, "<t>")
    assert config.models is not None
    with pytest.raises(ConfigError, match=r"models.public_keys\[0\]: an Ed25519 public key"):
        ota_settings(config.models, tmp_path / "db")


def test_check_config_reads_the_model_keys_and_names_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = ota_config(tmp_path, Ed25519PrivateKey.generate())
    assert main(["check-config", str(config_file(tmp_path / "good.toml", good))]) == 0
    assert "model updates over the air signed by 1 key(s)" in capsys.readouterr().out
    assert good.models is not None
    bad_models = good.models.model_copy(update={"public_keys": ["!" * 44]})
    bad = good.model_copy(update={"models": bad_models})
    assert main(["check-config", str(config_file(tmp_path / "bad.toml", bad))]) == 2
    assert "models.public_keys[0]" in capsys.readouterr().err


# --- hostile archives (issue 12) --------------------------------------------------------------


def sparse_member(name: str, real_size: int) -> tuple[tarfile.TarInfo, bytes]:
    """A GNU sparse (PAX 1.0) member: one stored byte at the end of `real_size` bytes of holes,
    as `tar --sparse` writes it. Its reader hands out `real_size` bytes."""
    info = tarfile.TarInfo(name)
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": name,
        "GNU.sparse.realsize": str(real_size),
    }
    sparse_map = b"1\n%d\n1\n" % (real_size - 1)
    return info, sparse_map.ljust(tarfile.BLOCKSIZE, b"\0") + b"x"


def pax_tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def members_of(bundle_dir: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [(tarfile.TarInfo(p.name), p.read_bytes()) for p in sorted(bundle_dir.iterdir())]


def test_a_member_name_too_long_for_the_disk_is_refused_not_raised(tmp_path: Path) -> None:
    """Issue 12: an unsigned 10 KB tar whose one member has a 300-character name crashed the
    gateway (OSError: file name too long, while writing it)."""
    data = tar_of((tarfile.TarInfo("a" * 300), b"x" * 9000))
    assert len(data) <= 20 * 1024
    with pytest.raises(BundleError, match=r"\(300 chars\) is not a plain file of a bundle"):
        unpack(data, tmp_path / "out")
    with pytest.raises(BundleError, match=r"^archive: "):
        stage_signed(data, tmp_path / "staged", [Ed25519PrivateKey.generate().public_key()])
    assert list(tmp_path.iterdir()) == []


def test_a_sparse_member_is_refused_before_a_byte_of_it_is_read(tmp_path: Path) -> None:
    """Issue 12: a 10 KB tar holding a sparse 3 GB member took 3.2 GB of memory and wrote 3 GB
    before any signature was checked."""
    key = Ed25519PrivateKey.generate()
    signed = variant(tmp_path / "b", "v-1", key)
    data = pax_tar_of(*members_of(signed), sparse_member("extra.bin", 3 * 2**30))
    assert len(data) <= 20 * 1024
    with pytest.raises(BundleError, match=r"archive: 'extra.bin' is not a plain file"):
        stage_signed(data, tmp_path / "staged", [key.public_key()])
    with pytest.raises(BundleError, match=r"archive: 'extra.bin' is not a plain file"):
        unpack(data, tmp_path / "unpacked")
    assert not (tmp_path / "staged").exists() and not (tmp_path / "unpacked").exists()


def test_the_byte_budget_counts_what_is_read(tmp_path: Path) -> None:
    data = tar_of((tarfile.TarInfo("model.tflite"), b"x" * 5000))
    with BundleArchive(data) as archive:
        with pytest.raises(BundleError, match=r"archive: model.tflite is bigger than 4096 bytes"):
            archive.read("model.tflite", 4096)
        assert archive.read("model.tflite", 5000) == b"x" * 5000


def test_an_unsigned_extra_member_of_a_signed_bundle_is_refused_and_never_written(
    tmp_path: Path,
) -> None:
    key = Ed25519PrivateKey.generate()
    signed = variant(tmp_path / "b", "v-1", key)
    extra = (tarfile.TarInfo("extra.bin"), b"not signed by anybody")
    with pytest.raises(BundleError, match=r"archive: extra.bin is not a file the signed manifest"):
        stage_signed(tar_of(*members_of(signed), extra), tmp_path / "staged", [key.public_key()])
    assert not (tmp_path / "staged").exists()
    stage_signed(pack(signed), tmp_path / "staged", [key.public_key()])
    assert sorted(p.name for p in (tmp_path / "staged").iterdir()) == sorted(
        p.name for p in signed.iterdir()
    )


def test_the_signature_is_checked_before_the_model_is_read(tmp_path: Path) -> None:
    """An archive signed with another key is refused as such, whatever its model member holds
    (here: a sparse 3 GB one), and nothing is written."""
    other = Ed25519PrivateKey.generate()
    signed = variant(tmp_path / "b", "v-1", other)
    files = [(i, d) for i, d in members_of(signed) if i.name != "model.tflite"]
    data = pax_tar_of(*files)
    keys = [Ed25519PrivateKey.generate().public_key()]
    with pytest.raises(BundleError, match=r"^signature: wrong signature"):
        stage_signed(data, tmp_path / "staged", keys)
    unsigned = [(i, d) for i, d in members_of(signed) if i.name != "signature.ed25519"]
    with pytest.raises(BundleError, match=r"^signature: unsigned"):
        stage_signed(tar_of(*unsigned), tmp_path / "staged", keys)
    with pytest.raises(BundleError, match=r"^bundle: model.tflite: missing from the archive"):
        stage_signed(data, tmp_path / "staged", [other.public_key()])
    assert not (tmp_path / "staged").exists()


def test_a_model_that_does_not_match_the_signed_hash_is_never_written(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    signed = variant(tmp_path / "b", "v-1", key)
    (signed / "model.tflite").write_bytes(b"\x1c\0\0\0TFL3 another model")
    with pytest.raises(BundleError, match=r"^bundle: model.tflite: sha256 [0-9a-f]+ does not"):
        stage_signed(pack(signed), tmp_path / "staged", [key.public_key()])
    assert not (tmp_path / "staged").exists()
