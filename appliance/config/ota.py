"""The [models] table: over-the-air model bundles, their keys, canary and probation."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from appliance.config.fields import PathText, Strict


class ModelsConfig(Strict):
    """Over-the-air model bundles (docs/MODELS.md): signed bundles arrive through the inbox
    directory, the uplink's MQTT command topic or the status page, are checked and canaried,
    then swapped in between two windows."""

    public_keys: list[Annotated[str, Field(min_length=40, max_length=64)]] = []
    """Ed25519 public keys (base64, from `appliance model keygen`) whose signatures are
    accepted. Several keys allow a key rotation."""
    public_key_files: list[PathText] = []
    """Files holding one such key each, instead of (or besides) public_keys."""
    directory: PathText | None = None
    """Where accepted bundles and the active/previous choice are kept; default: `ota-models`
    beside the store's database. Not the directory of configured bundles: it is pruned."""
    inbox: PathText | None = None
    """Watched directory: a bundle archive (.tar) dropped here is installed; default:
    `model-inbox` beside the store's database. Write it under another name (or a name starting
    with ".") and rename it in when complete."""
    inbox_poll_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    canary_windows: Annotated[int, Field(ge=1)] = 600
    """Newest stored windows (not scored anomalous) the new model must score before it swaps."""
    canary_min_windows: Annotated[int, Field(ge=1)] = 60
    """Fewer stored windows than this: refused (no evidence the model fits the asset)."""
    canary_max_alarm_fraction: Annotated[float, Field(ge=0, le=1)] = 0.02
    """Refused if more than this fraction of canary windows exceeds the model's threshold."""
    probation_s: Annotated[float, Field(ge=0)] = 3600.0
    """After a swap, the new model is rolled back automatically if, within this time, ..."""
    probation_min_windows: Annotated[int, Field(ge=1)] = 60
    probation_max_alarm_fraction: Annotated[float, Field(ge=0, le=1)] = 0.2
    """... more than this fraction of its (at least probation_min_windows) windows alarm."""
    keep_bundles: Annotated[int, Field(ge=2, le=100)] = 5
    """Bundles kept per asset (the active one and those before it, for rollback)."""

    @model_validator(mode="after")
    def _needs_a_key(self) -> ModelsConfig:
        if not self.public_keys and not self.public_key_files:
            raise ValueError(
                "needs public_keys or public_key_files: an unsigned bundle is never installed"
            )
        if self.canary_min_windows > self.canary_windows:
            raise ValueError("canary_min_windows must not exceed canary_windows")
        return self
