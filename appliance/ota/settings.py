"""The [models] table as the model manager and `appliance model` use it: the trusted keys parsed,
the library and inbox directories resolved, the canary and probation limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.config import ApplianceConfig, ModelsConfig, read_text_file
from appliance.errors import BundleError, ConfigError
from appliance.ota.signing import parse_public_key
from appliance.ota.vetting import CanarySettings

CHECK_BUDGET_S = 120.0
"""Longest the checks of one bundle (or its canary) may take before it is refused."""


@dataclass(frozen=True)
class OtaSettings:
    keys: tuple[Ed25519PublicKey, ...]
    directory: Path
    inbox: Path
    inbox_poll_s: float
    canary: CanarySettings
    probation_s: float
    probation_min_windows: int
    probation_max_alarm_fraction: float
    keep_bundles: int
    check_budget_s: float = CHECK_BUDGET_S


def ota_settings(models: ModelsConfig, store_path: Path) -> OtaSettings:
    """ConfigError naming the key or file that is wrong."""
    keys = trusted_keys("models", models.public_keys, models.public_key_files)
    here = store_path.parent
    return OtaSettings(
        keys=keys,
        directory=Path(models.directory) if models.directory else here / "ota-models",
        inbox=Path(models.inbox) if models.inbox else here / "model-inbox",
        inbox_poll_s=models.inbox_poll_s,
        canary=CanarySettings(
            models.canary_windows, models.canary_min_windows, models.canary_max_alarm_fraction
        ),
        probation_s=models.probation_s,
        probation_min_windows=models.probation_min_windows,
        probation_max_alarm_fraction=models.probation_max_alarm_fraction,
        keep_bundles=models.keep_bundles,
    )


def models_settings(config: ApplianceConfig, path: Path) -> OtaSettings:
    """The settings of the gateway whose config file is `path`; ConfigError when it takes no
    over-the-air models."""
    if config.models is None:
        raise ConfigError(f"{path}: no [models] table: this gateway takes no over-the-air models")
    return ota_settings(config.models, Path(config.store.path))


def trusted_keys(
    table: str, texts: Sequence[str], files: Sequence[str]
) -> tuple[Ed25519PublicKey, ...]:
    """The keys of a table's public_keys and public_key_files; ConfigError naming the one that
    is wrong ([models] and [release] alike)."""
    keys = []
    for i, text in enumerate(texts):
        keys.append(_key(text, f"{table}.public_keys[{i}]"))
    for path in files:
        text = read_text_file(f"{table}.public_key_files", path)  # bounded: not /dev/zero
        keys.append(_key(text, f"{table}.public_key_files: {path}"))
    return tuple(keys)


def _key(text: str, where: str) -> Ed25519PublicKey:
    try:
        return parse_public_key(text, where)
    except BundleError as exc:
        raise ConfigError(str(exc)) from None
