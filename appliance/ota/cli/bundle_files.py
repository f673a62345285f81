"""Bundles as the model commands read, describe and write them: the archive as it travels
(from a bundle directory or a .tar), unpacked into a temporary directory, in one line, and
files written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from appliance.detect.bundle import ModelBundle
from appliance.errors import ApplianceError, BundleError
from appliance.ota.archive import pack, unpack


def archive_bytes(path: Path) -> bytes:
    """The archive as it travels: a bundle directory is packed, a .tar read."""
    if path.is_dir():
        return pack(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror or exc}") from None


@contextlib.contextmanager
def unpacked(data: bytes) -> Iterator[Path]:
    """The archive's files in a temporary bundle directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="appliance-model-") as temporary:
        yield unpack(data, Path(temporary) / "bundle")


def describe_bundle(bundle: ModelBundle) -> str:
    manifest = bundle.manifest
    return (
        f"bundle {bundle.bundle_id} for {manifest.asset or '(no asset)'}, "
        f"{manifest.n_features} features, model sha256 {manifest.model_sha256}"
    )


def write_atomically(path: Path, data: bytes) -> None:
    hidden = path.with_name(f".{path.name}.tmp")
    try:
        hidden.write_bytes(data)
        os.replace(hidden, path)
    except OSError as exc:
        raise ApplianceError(f"{path}: cannot write: {exc.strerror or exc}") from None
