"""Every check a bundle passes before it may score, in order; the first that fails refuses it
with a reason that says which check and what is wrong."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.detect.bundle import ModelBundle, load_bundle
from appliance.detect.runtime import open_runtime
from appliance.detect.scorer import BundleModel, model_column_order
from appliance.errors import BundleError
from appliance.ota.signing import verify_signature
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
