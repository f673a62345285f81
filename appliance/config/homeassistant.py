"""The [homeassistant] table: Home Assistant MQTT discovery through the uplink's broker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from appliance.config.fields import Name, PositiveFloat, Strict, refuse_duplicates
from appliance.config.uplink import TopicPrefix

VibrationFeature = Literal[
    "rms",
    "peak",
    "crest_factor",
    "excess_kurtosis",
    "dominant_freq_hz",
    "spectral_energy",
    "mean",
    "std",
]
SlowFeature = Literal["mean", "std", "min", "max", "slope"]


class HomeAssistantConfig(Strict):
    """Each asset appears in Home Assistant as a device (via the gateway's device) with its
    state, anomaly score and main features as sensors, announced by MQTT discovery on the
    uplink's broker (docs: README "Home Assistant"). Needs an [uplink] table; the broker's ACL
    must let the gateway write the discovery and state topics (receiver/mosquitto/README.md)."""

    enabled: bool = True
    """false: nothing is published for Home Assistant (the table can stay)."""
    discovery_prefix: TopicPrefix = "homeassistant"
    """Home Assistant's discovery prefix (its MQTT integration's setting)."""
    assets: Annotated[list[Name], Field(max_length=1000)] | None = None
    """The assets to expose; default: every asset."""
    vibration_features: list[VibrationFeature] = ["rms", "peak", "dominant_freq_hz"]
    """The features shown for each vibration channel."""
    slow_features: list[SlowFeature] = ["mean"]
    """The features shown for each slow channel (temperature, current, ...)."""
    state_every_s: PositiveFloat = 10.0
    """Numbers are published at most this often per asset; a change of state or alarm goes
    at once."""

    def check_against(self, assets: Sequence[str], *, has_uplink: bool) -> None:
        """ValueError naming the key if an exposed asset does not exist, or there is no
        [uplink] to publish through."""
        if not self.enabled:
            return
        if not has_uplink:
            raise ValueError(
                "homeassistant: needs an [uplink] table (discovery goes to the uplink's broker)"
            )
        refuse_duplicates("homeassistant.assets", list(self.assets or []))
        refuse_duplicates("homeassistant.vibration_features", list(self.vibration_features))
        refuse_duplicates("homeassistant.slow_features", list(self.slow_features))
        unknown = sorted(set(self.assets or []) - set(assets))
        if unknown:
            raise ValueError(
                f"homeassistant.assets: no asset named {', '.join(map(repr, unknown))}"
            )

    def exposed(self, assets: Sequence[str]) -> list[str]:
        """The configured assets this table exposes, in config order."""
        return [a for a in assets if self.assets is None or a in self.assets]
