"""Every check a bundle passes before it may score, in order; the first that fails refuses it
with a reason that says which check and what is wrong."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.detect.bundle import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    SIGNATURE_FILE,
    Manifest,
    ModelBundle,
    load_bundle,
    sha256_hex,
)
from appliance.detect.runtime import open_runtime
from appliance.detect.scorer import BundleModel, model_column_order
from appliance.errors import BundleError
from appliance.ota.archive import MAX_ARCHIVE_BYTES, BundleArchive
from appliance.ota.signing import read_signed_manifest, verify_signature
from appliance.records import FeatureVector, FloatArray


@dataclass(frozen=True)
class CanarySettings:
    windows: int
    min_windows: int
    max_alarm_fraction: float


@dataclass(frozen=True)
class CanaryResult:
    windows: int
    alarms: int
    errors: FloatArray
    threshold: float

    @property
    def alarm_fraction(self) -> float:
        return self.alarms / self.windows

    def describe(self) -> str:
        return (
            f"canary: {self.alarms} of {self.windows} recent normal windows above the model's "
            f"threshold {self.threshold:.4g} ({100 * self.alarm_fraction:.1f} %)"
        )


def stage_signed(data: bytes, dest: Path, keys: Sequence[Ed25519PublicKey]) -> None:
    """Unpack an archive into the new directory `dest`, trusting nothing before it is checked:
    the headers first (archive), then the signature over the manifest (signature), then the
    manifest itself (bundle); only then is the model read, with a byte budget, and checked
    against its hash. Only the three files the signed manifest names are ever written."""
    with BundleArchive(data) as archive:
        manifest_bytes, signature = read_signed_manifest(archive, keys, MAX_MANIFEST_BYTES)
        manifest = _manifest(manifest_bytes)
        expected = {MANIFEST_FILE, SIGNATURE_FILE, manifest.model_file}
        for name in archive.names:
            if name not in expected:
                raise BundleError(f"archive: {name} is not a file the signed manifest names")
        if manifest.model_file not in archive.members:
            raise BundleError(f"bundle: {manifest.model_file}: missing from the archive")
        model = archive.read(manifest.model_file, MAX_ARCHIVE_BYTES)
    if sha256_hex(model) != manifest.model_sha256:
        raise BundleError(
            f"bundle: {manifest.model_file}: sha256 {sha256_hex(model)} does not match "
            f"model_sha256 {manifest.model_sha256} in {MANIFEST_FILE}"
        )
    dest.mkdir(parents=True)
    (dest / MANIFEST_FILE).write_bytes(manifest_bytes)
    (dest / SIGNATURE_FILE).write_bytes(signature)
    (dest / manifest.model_file).write_bytes(model)


def _manifest(data: bytes) -> Manifest:
    try:
        return Manifest.from_json(data.decode("utf-8"), MANIFEST_FILE)
    except UnicodeDecodeError as exc:
        raise BundleError(f"bundle: {MANIFEST_FILE}: not UTF-8 text: {exc}") from None
    except BundleError as exc:
        raise BundleError(f"bundle: {exc}") from exc


def check_bundle(
    bundle_dir: Path,
    keys: Sequence[Ed25519PublicKey],
    feature_names: Mapping[str, tuple[str, ...]],
    backend: Mapping[str, str],
) -> BundleModel:
    """Signature, hash and manifest, asset, feature names, runtime load; BundleError at the
    first failure, prefixed with the check's name."""
    try:
        verify_signature(bundle_dir, keys)
    except BundleError as exc:
        raise BundleError(f"signature: {exc}") from exc
    try:
        bundle = load_bundle(bundle_dir)
    except BundleError as exc:
        raise BundleError(f"bundle: {without_staging_path(exc, bundle_dir)}") from exc
    asset = check_asset(bundle, feature_names)
    check_features(bundle, asset, feature_names[asset])
    try:
        runtime = open_runtime(bundle, backend[asset])
    except BundleError as exc:
        raise BundleError(f"runtime: {without_staging_path(exc, bundle_dir)}") from exc
    return BundleModel(bundle, runtime)


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order: runs of digits compare as numbers, anything else character by character,
    and a number sorts before text at the same place (2026.9 < 2026.10 < 2026.10.1)."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.findall(r"[0-9]+|[^0-9]+", version)
    )


def check_newer(version: str, active: str, asset: str) -> None:
    """A bundle over the air must be newer than the asset's active one (docs/MODELS.md)."""
    if version_key(version) > version_key(active):
        return
    relation = (
        "the same version as" if version_key(version) == version_key(active) else ("older than")
    )
    raise BundleError(
        f"version: {version} is {relation} the active {active} of {asset}; roll back to go "
        "back, or send it with allow_downgrade (appliance model publish --allow-downgrade)"
    )


def check_asset(bundle: ModelBundle, feature_names: Mapping[str, tuple[str, ...]]) -> str:
    asset = bundle.manifest.asset
    if asset is None:
        raise BundleError(
            "asset: the manifest names no asset; a bundle sent over the air must name the "
            "asset it is for"
        )
    if asset not in feature_names:
        raise BundleError(
            f"asset: this gateway has no asset {asset!r} "
            f"(it has {', '.join(sorted(feature_names))})"
        )
    return asset


def check_features(bundle: ModelBundle, asset: str, produced: tuple[str, ...]) -> None:
    have = set(produced)
    missing = [name for name in bundle.manifest.feature_names if name not in have]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise BundleError(
            f"features: the model needs {len(missing)} feature(s) asset {asset} does not "
            f"produce: {shown}"
        )


def run_canary(
    model: BundleModel, windows: Sequence[FeatureVector], settings: CanarySettings
) -> CanaryResult:
    """Score the asset's recent normal windows with the new model: refused if there are too
    few, if any error is not finite, or if too many exceed the model's own threshold."""
    rows = _rows_in_model_order(model, windows)
    rows = rows[np.isfinite(rows).all(axis=1)]  # a window with a dead sensor tells nothing
    if len(rows) < settings.min_windows:
        raise BundleError(
            f"canary: only {len(rows)} stored normal window(s) of this asset, at least "
            f"{settings.min_windows} needed to try the model (wait, or lower "
            "models.canary_min_windows)"
        )
    try:
        errors, _ = model.errors(rows)
    except ValueError as exc:  # the runtime refuses non-finite scaled inputs
        raise BundleError(
            f"canary: not finite: the model cannot score these windows: {exc}"
        ) from None
    bad = int(np.count_nonzero(~np.isfinite(errors)))
    if bad:
        example = next(float(e) for e in errors if not math.isfinite(float(e)))
        raise BundleError(
            f"canary: not finite: reconstruction error {example} on {bad} of {len(rows)} windows"
        )
    threshold = model.commissioned_threshold
    result = CanaryResult(len(rows), int(np.count_nonzero(errors > threshold)), errors, threshold)
    if result.alarm_fraction > settings.max_alarm_fraction:
        raise BundleError(
            f"{result.describe()}, more than the bound "
            f"{100 * settings.max_alarm_fraction:.1f} %: it would alarm on a healthy machine"
        )
    return result


def _rows_in_model_order(model: BundleModel, windows: Sequence[FeatureVector]) -> FloatArray:
    rows = np.empty((len(windows), len(model.feature_names)))
    order: tuple[tuple[str, ...], np.ndarray] | None = None
    for i, vector in enumerate(windows):
        if order is None or order[0] != vector.names:
            order = (vector.names, model_column_order(model, vector.names))
        rows[i] = np.asarray(vector.values, dtype=np.float64)[order[1]]
    return rows


def without_staging_path(exc: BundleError, bundle_dir: Path) -> str:
    """The error without the staging directory's path (meaningless to whoever sent it)."""
    return str(exc).replace(f"{bundle_dir}/", "").replace(str(bundle_dir), "bundle")
