"""What Home Assistant is told, as plain values: the devices (the gateway, and each asset as a
device via the gateway), each asset's entities (state, anomaly alarm, score and threshold, the
main features with the units of their channels) and one discovery message per entity.

Home Assistant's MQTT discovery (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):
a retained JSON config per entity on `<discovery_prefix>/<component>/<node_id>/<object_id>/config`
(node_id: the gateway, so a broker ACL can give each gateway its own subtree; ids only of
[a-zA-Z0-9_-]). Every entity has a unique_id and device identifiers; availability comes from
the uplink's retained status topic (its JSON `state` is "online", or "offline" from a clean stop
or the last will). Each asset's values are one retained JSON message on
`<topic_prefix>/<gateway>/ha/<asset>/state` (five levels: never matched by the receiver's
`<prefix>/+/+/+`); a value not known yet is null, which Home Assistant shows as unknown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from appliance import __version__
from appliance.config import ApplianceConfig, AssetConfig, ChannelConfig, HomeAssistantConfig
from appliance.errors import ConfigError
from appliance.status_snapshot import CONDITIONS
from appliance.status_snapshot.humanize import feature_unit
from appliance.uplink.schema import OFFLINE, ONLINE, status_topic

ORIGIN = "edge-appliance"
"""The software that sends the discovery messages (Home Assistant's `origin.name`)."""
FEATURE_WORDS = {
    "rms": "RMS",
    "peak": "peak",
    "crest_factor": "crest factor",
    "excess_kurtosis": "excess kurtosis",
    "dominant_freq_hz": "dominant frequency",
    "spectral_energy": "spectral energy",
    "mean": "mean",
    "std": "standard deviation",
    "min": "min",
    "max": "max",
    "slope": "slope",
}
LEVEL_FEATURES = frozenset({"mean", "min", "max", "rms", "peak"})
"""Features in the channel's own quantity, which may take its device class (a temperature's
mean is a temperature; its standard deviation is not: Home Assistant would convert it as one)."""
DEVICE_CLASSES = {
    "°C": "temperature",
    "°F": "temperature",
    "K": "temperature",
    "A": "current",
    "mA": "current",
    "V": "voltage",
    "mV": "voltage",
    "W": "power",
    "kW": "power",
    "Pa": "pressure",
    "hPa": "pressure",
    "kPa": "pressure",
    "bar": "pressure",
    "mbar": "pressure",
    "psi": "pressure",
    "Hz": "frequency",
}
"""Home Assistant's sensor device class for a unit it knows in that class."""
Component = Literal["sensor", "binary_sensor"]


@dataclass(frozen=True)
class Entity:
    component: Component
    key: str
    """The entity's value in its asset's state message ("score", "accel_x.rms")."""
    name: str
    options: Mapping[str, object] = field(default_factory=dict)
    """Its own discovery keys (unit_of_measurement, device_class, state_class, ...)."""


@dataclass(frozen=True)
class AssetDevice:
    name: str
    description: str
    entities: tuple[Entity, ...]


@dataclass(frozen=True)
class HomeAssistantSettings:
    gateway: str
    discovery_prefix: str
    topic_prefix: str
    assets: tuple[AssetDevice, ...]
    state_every_s: float = 10.0
    version: str = __version__

    @property
    def status_topic(self) -> str:
        """The uplink's retained status: Home Assistant's availability topic."""
        return status_topic(self.topic_prefix, self.gateway)

    def state_topic(self, asset: str) -> str:
        return f"{self.topic_prefix}/{self.gateway}/ha/{asset}/state"


def home_assistant_settings(config: ApplianceConfig) -> HomeAssistantSettings | None:
    """None without an enabled [homeassistant] table; ConfigError if two exposed assets would
    share a discovery topic."""
    table = config.homeassistant
    if table is None or not table.enabled or config.uplink is None:
        return None
    exposed = set(table.exposed([a.name for a in config.assets]))
    settings = HomeAssistantSettings(
        gateway=config.gateway.id,
        discovery_prefix=table.discovery_prefix,
        topic_prefix=config.uplink.topic_prefix,
        assets=tuple(asset_device(a, table) for a in config.assets if a.name in exposed),
        state_every_s=table.state_every_s,
    )
    topics = [topic for topic, _ in discovery_messages(settings)]
    repeated = sorted({t for t in topics if topics.count(t) > 1})
    if repeated:
        raise ConfigError(
            f"homeassistant.assets: asset names that differ only in '.' and '_' share the "
            f"discovery topic {repeated[0]}: rename one or leave it out of homeassistant.assets"
        )
    return settings


def asset_device(asset: AssetConfig, table: HomeAssistantConfig) -> AssetDevice:
    entities = [
        Entity(
            "sensor",
            "state",
            "State",
            {
                "device_class": "enum",
                "options": list(CONDITIONS),
                "json_attributes_template": "{{ {'reason': value_json.reason} | tojson }}",
            },
        ),
        Entity("binary_sensor", "alarm", "Anomaly alarm", {"device_class": "problem"}),
        Entity("sensor", "score", "Anomaly score", {"state_class": "measurement"}),
        Entity(
            "sensor",
            "threshold",
            "Anomaly threshold",
            {"state_class": "measurement", "entity_category": "diagnostic"},
        ),
    ]
    for channel in asset.channels:
        features = table.vibration_features if channel.is_vibration else table.slow_features
        entities += [feature_entity(channel, feature) for feature in features]
    return AssetDevice(asset.name, asset.description, tuple(entities))


def feature_entity(channel: ChannelConfig, feature: str) -> Entity:
    unit = feature_unit(feature, channel.unit)
    options: dict[str, object] = {"state_class": "measurement"}
    if unit:
        options["unit_of_measurement"] = unit
    device_class = DEVICE_CLASSES.get(unit)
    if device_class is not None and (feature in LEVEL_FEATURES or unit == "Hz"):
        options["device_class"] = device_class
    name = f"{channel.name} {FEATURE_WORDS[feature]}"
    return Entity("sensor", f"{channel.name}.{feature}", name, options)


def discovery_messages(settings: HomeAssistantSettings) -> list[tuple[str, bytes]]:
    """(topic, payload) of every entity's discovery config, the gateway's first."""
    messages = [_message(settings, "binary_sensor", "uplink", _uplink_entity(settings))]
    for asset in settings.assets:
        for entity in asset.entities:
            config = _entity_config(settings, asset, entity)
            object_id = f"{asset.name}_{entity.key}"
            messages.append(_message(settings, entity.component, object_id, config))
    return messages


def _entity_config(
    settings: HomeAssistantSettings, asset: AssetDevice, entity: Entity
) -> dict[str, object]:
    state_topic = settings.state_topic(asset.name)
    config: dict[str, object] = {
        "name": entity.name,
        "unique_id": f"{_gateway_id(settings)}_{asset.name}_{entity.key}",
        "state_topic": state_topic,
        "value_template": f"{{{{ value_json['{entity.key}'] }}}}",
        "availability": [_availability(settings)],
        "device": _asset_device(settings, asset),
        "origin": _origin(settings),
        **entity.options,
    }
    if "json_attributes_template" in config:
        config["json_attributes_topic"] = state_topic
    return config


def _uplink_entity(settings: HomeAssistantSettings) -> dict[str, object]:
    """The gateway's own entity: its link to the broker, from the status topic itself (no
    availability: offline is its value, not its absence)."""
    return {
        "name": "Uplink",
        "unique_id": f"{_gateway_id(settings)}_uplink",
        "state_topic": settings.status_topic,
        "value_template": "{{ value_json.state }}",
        "payload_on": ONLINE,
        "payload_off": OFFLINE,
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "device": _gateway_device(settings),
        "origin": _origin(settings),
    }


def _gateway_device(settings: HomeAssistantSettings) -> dict[str, object]:
    return {
        "identifiers": [_gateway_id(settings)],
        "name": settings.gateway,
        "manufacturer": ORIGIN,
        "model": "Edge anomaly gateway",
        "sw_version": settings.version,
    }


def _asset_device(settings: HomeAssistantSettings, asset: AssetDevice) -> dict[str, object]:
    return {
        "identifiers": [f"{_gateway_id(settings)}_{asset.name}"],
        "name": asset.name,
        "manufacturer": ORIGIN,
        "model": asset.description or "Monitored machine",
        "via_device": _gateway_id(settings),
    }


def _availability(settings: HomeAssistantSettings) -> dict[str, str]:
    return {
        "topic": settings.status_topic,
        "value_template": "{{ value_json.state }}",
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
    }


def _origin(settings: HomeAssistantSettings) -> dict[str, str]:
    return {"name": ORIGIN, "sw_version": settings.version}


def _gateway_id(settings: HomeAssistantSettings) -> str:
    return f"appliance_{settings.gateway}"


def _message(
    settings: HomeAssistantSettings, component: Component, object_id: str, config: object
) -> tuple[str, bytes]:
    node, obj = topic_id(settings.gateway), topic_id(object_id)
    topic = f"{settings.discovery_prefix}/{component}/{node}/{obj}/config"
    return topic, json.dumps(config, ensure_ascii=False, separators=(",", ":")).encode()


def topic_id(name: str) -> str:
    """A node or object id as Home Assistant takes them: only [a-zA-Z0-9_-] ('.' -> '_')."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)
