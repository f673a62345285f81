"""An [[assets]] table: its channels and how its windows are scored."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from appliance.config.capture import ChannelConfig
from appliance.config.fields import Name, PathText, PositiveFloat, Strict
from appliance.config.machine import MachineConfig, check_machine


class ModelConfig(Strict):
    """How the asset's windows are scored (docs/DETECTION.md)."""

    bundle: PathText | None = None
    """Directory of the asset's model bundle (manifest.json + model.tflite). Without one the
    asset commissions: it learns normal on the gateway for `commission_hours`, then scores."""
    commission_hours: PositiveFloat = 24.0
    commission_min_windows: Annotated[int, Field(ge=20)] = 600
    """Commissioning goes on past its period until it has seen this many windows."""
    rule: Literal["adaptive", "fixed"] = "adaptive"
    k: PositiveFloat = 6.5
    """Adaptive rule: threshold = centre + k * spread of recent non-alarmed errors."""
    statistic: Literal["mean_std", "median_mad"] = "mean_std"
    clear_after_windows: Annotated[int, Field(ge=1)] = 10
    """An alarm clears after this many windows in a row below 0.9 x the threshold. Fewer: fewer
    false alarms on a machine that drifts, more of a long anomaly missed (docs/DETECTION.md,
    "How long to learn": 8 instead of 10 alarmed 7 points fewer normal SKAB rows and missed 2
    points more of valve1's anomalous rows)."""
    backend: Literal["ai-edge-litert", "tflite-runtime"] = "ai-edge-litert"


class AssetConfig(Strict):
    name: Name
    description: str = ""
    speed_rpm: PositiveFloat | None = None
    """Shaft speed in revolutions per minute, if it is fixed and known: the status page marks its
    harmonics (1x, 2x, ...) on the asset's spectra. Without it, none are marked."""
    channels: Annotated[list[ChannelConfig], Field(min_length=1)]
    model: ModelConfig = ModelConfig()
    """Without a bundle the asset commissions itself (see ModelConfig.bundle)."""
    machine: MachineConfig | None = None
    """Shaft speed range, bearings, ISO 20816 group and sensor mounting for the vibration
    diagnosis (appliance/config/machine.py, docs/DIAGNOSIS.md). Without it: no diagnosis."""

    @model_validator(mode="after")
    def _machine_fits(self) -> AssetConfig:
        if self.machine is not None:
            check_machine(self.machine, self.channels, self.speed_rpm)
        return self
