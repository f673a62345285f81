"""Model bundles: a directory holding an int8 TFLite autoencoder and the manifest that explains it.

Layout of a bundle directory:

    model.tflite        the int8 model (name given by the manifest's `model_file`)
    manifest.json       `Manifest` as JSON: feature names and order, scaler, quantisation,
                        threshold defaults, training data span, version, sha256 of the model
    signature.ed25519   an Ed25519 signature over manifest.json (which pins the model through
                        `model_sha256`); checked for every bundle that arrives over the air
                        (appliance/ota/signing.py, docs/MODELS.md), before `load_bundle`.

`load_bundle` refuses anything it cannot fully trust (missing or unknown fields, wrong types,
non-finite numbers, a model whose sha256 differs from the manifest) with a `BundleError` naming the
file and the field. It keeps the verified model bytes in memory, so the runtime loads exactly the
bytes that were hashed.

The manifest's types and field rules live in manifest.py and manifest_fields.py; their names
are importable from here too, so a bundle's user imports one module.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from appliance.detect.manifest import (
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MODEL_FILE,
    SIGNATURE_FILE,
    DataSpan,
    Manifest,
    Quantization,
    ThresholdDefaults,
    ThresholdRule,
    manifest_from_dict,
)
from appliance.detect.manifest_fields import (
    FILE_NAME_PATTERN,
    MAX_FEATURES,
    MAX_JSON_DEPTH,
    MAX_MANIFEST_BYTES,
    NAME_PATTERN,
    VERSION_PATTERN,
)
from appliance.errors import BundleError
from appliance.records import FloatArray

__all__ = [
    "BUNDLE_ID_PATTERN",
    "FILE_NAME_PATTERN",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "MAX_FEATURES",
    "MAX_JSON_DEPTH",
    "MAX_MANIFEST_BYTES",
    "MODEL_FILE",
    "NAME_PATTERN",
    "SIGNATURE_FILE",
    "TFLITE_IDENTIFIER",
    "VERSION_PATTERN",
    "DataSpan",
    "Manifest",
    "ModelBundle",
    "Quantization",
    "ThresholdDefaults",
    "ThresholdRule",
    "load_bundle",
    "manifest_from_dict",
    "sha256_hex",
    "write_bundle",
]

BUNDLE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}-[0-9a-f]{12}")
"""`ModelBundle.bundle_id`: the manifest's version, '-', 12 hex digits of the model's sha256."""
TFLITE_IDENTIFIER = b"TFL3"
"""FlatBuffer file identifier of a TFLite model, at bytes 4..8."""


@dataclass(frozen=True, slots=True)
class ModelBundle:
    """A verified bundle: its manifest and the model bytes whose sha256 matched it."""

    path: Path
    manifest: Manifest
    model_bytes: bytes = field(repr=False)
    scaler_mean: FloatArray = field(init=False, repr=False, compare=False)
    """The manifest's scaler as read-only arrays, built once (they are used for every score)."""
    scaler_scale: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("scaler_mean", "scaler_scale"):
            values = np.array(getattr(self.manifest, name), dtype=np.float64)
            values.setflags(write=False)
            object.__setattr__(self, name, values)

    @property
    def bundle_id(self) -> str:
        """Recorded with every score: the version plus the first 12 hex digits of the sha256."""
        return f"{self.manifest.version}-{self.manifest.model_sha256[:12]}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_bundle(path: Path) -> ModelBundle:
    """Read and verify the bundle directory at `path`; raise BundleError saying what is wrong."""
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory (missing or not a directory)")
    manifest_path = path / MANIFEST_FILE
    manifest = Manifest.from_json(_read_text(manifest_path, MAX_MANIFEST_BYTES), str(manifest_path))
    model_path = path / manifest.model_file
    model_bytes = _read_bytes(model_path)
    actual = sha256_hex(model_bytes)
    if actual != manifest.model_sha256:
        raise BundleError(
            f"{model_path}: sha256 {actual} does not match model_sha256 "
            f"{manifest.model_sha256} in {manifest_path}"
        )
    _check_tflite_header(model_bytes, str(model_path))
    return ModelBundle(path=path, manifest=manifest, model_bytes=model_bytes)


def write_bundle(path: Path, manifest: Manifest, model_bytes: bytes) -> ModelBundle:
    """Write a bundle directory (created if needed) and return it as `load_bundle` reads it.

    The manifest is validated and its `model_sha256` checked against `model_bytes` before anything
    is written; the manifest is written last, so a crash leaves no manifest that names a
    half-written model.
    """
    manifest_path = path / MANIFEST_FILE
    manifest_from_dict(manifest.to_dict(), str(manifest_path))
    try:
        manifest_text = manifest.to_json()
    except (TypeError, ValueError) as exc:  # free-form training info that JSON cannot hold
        raise BundleError(f"{manifest_path}: cannot write as JSON: {exc}") from exc
    actual = sha256_hex(model_bytes)
    if actual != manifest.model_sha256:
        raise BundleError(
            f"{manifest_path}: model_sha256 {manifest.model_sha256} does not match the model "
            f"bytes being written (sha256 {actual})"
        )
    _check_tflite_header(model_bytes, str(path / manifest.model_file))
    path.mkdir(parents=True, exist_ok=True)
    _write_atomically(path / manifest.model_file, model_bytes)
    _write_atomically(manifest_path, manifest_text.encode("utf-8"))
    return load_bundle(path)


def _check_tflite_header(model_bytes: bytes, source: str) -> None:
    if len(model_bytes) < 8 or model_bytes[4:8] != TFLITE_IDENTIFIER:
        raise BundleError(f"{source}: not a TFLite model (no TFL3 file identifier)")


def _read_text(path: Path, limit: int) -> str:
    try:
        return _read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path}: not UTF-8 text: {exc}") from exc


def _read_bytes(path: Path, limit: int | None = None) -> bytes:
    try:
        if limit is not None and path.stat().st_size > limit:
            raise BundleError(f"{path}: {path.stat().st_size} bytes, more than {limit}")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise BundleError(f"{path}: missing file") from exc
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
