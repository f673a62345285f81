"""Home Assistant MQTT discovery ([homeassistant]): the gateway and its assets appear in Home
Assistant as devices with their state, anomaly score and main features; published on the
uplink's connection (entities.py: what is announced; publisher.py: when)."""

from __future__ import annotations

from appliance.config import ApplianceConfig
from appliance.homeassistant.entities import HomeAssistantSettings, home_assistant_settings
from appliance.homeassistant.publisher import HomeAssistant
from appliance.status import StatusBoard


def home_assistant(config: ApplianceConfig, board: StatusBoard) -> HomeAssistant | None:
    """The publisher for the uplink to run on each connection; None without an enabled
    [homeassistant] table. ConfigError if two assets would share a discovery topic."""
    settings = home_assistant_settings(config)
    return HomeAssistant(settings, board) if settings is not None else None


__all__ = ["HomeAssistant", "HomeAssistantSettings", "home_assistant", "home_assistant_settings"]
