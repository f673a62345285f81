"""Home Assistant's documented MQTT discovery schema, as far as the gateway uses it (sensor and
binary_sensor): a small validator for the tests. Each rule names where Home Assistant states it:

[discovery] https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery: the topic format
    `<discovery_prefix>/<component>/[<node_id>/]<object_id>/config`, ids of [a-zA-Z0-9_-], the
    payload a JSON dictionary checked like configuration.yaml (required keys present), the
    abbreviations (expanded here before the checks).
[sensor] https://www.home-assistant.io/integrations/sensor.mqtt/ and
[binary_sensor] https://www.home-assistant.io/integrations/binary_sensor.mqtt/: `state_topic`
    required; `device` "only works through MQTT discovery and when unique_id is set";
    `availability` (a list of {topic, payload_available, payload_not_available, value_template})
    "must not be used together with availability_topic".
[schemas.py] home-assistant/core homeassistant/components/mqtt/schemas.py: a device needs at
    least one of identifiers/connections and takes only its listed keys; an origin needs a name;
    an availability entry needs a topic and takes only its listed keys.
[sensor.py] home-assistant/core homeassistant/components/mqtt/sensor.py: `options` only with
    device class enum, never empty, never with state_class or unit_of_measurement;
    suggested_display_precision a positive integer.
[device classes] https://www.home-assistant.io/integrations/sensor/#device-class and
    https://www.home-assistant.io/integrations/binary_sensor/#device-class: the classes, and
    the units each sensor class accepts.

Unknown keys are allowed by Home Assistant (ignored) but refused here: they are typos.
"""

from __future__ import annotations

import json
import re
from typing import Any

DISCOVERY_TOPIC = (
    r"^{prefix}/(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?"
    r"(?P<object_id>[a-zA-Z0-9_-]+)/config$"
)
ABBREVIATIONS = {  # [discovery], the ones of the keys below
    "avty": "availability",
    "avty_t": "availability_topic",
    "dev": "device",
    "dev_cla": "device_class",
    "ent_cat": "entity_category",
    "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template",
    "o": "origin",
    "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off",
    "pl_on": "payload_on",
    "stat_cla": "state_class",
    "stat_t": "state_topic",
    "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template",
    "t": "topic",
}
DEVICE_ABBREVIATIONS = {  # [discovery], "for device registry configuration"
    "cu": "configuration_url",
    "cns": "connections",
    "ids": "identifiers",
    "mf": "manufacturer",
    "mdl": "model",
    "hw": "hw_version",
    "sw": "sw_version",
    "sa": "suggested_area",
}
COMMON_KEYS = {  # [schemas.py] MQTT_ENTITY_COMMON_SCHEMA with MQTT_RO_SCHEMA's
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "device",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "object_id",
    "origin",
    "payload_available",
    "payload_not_available",
    "qos",
    "state_topic",
    "unique_id",
    "value_template",
}
COMPONENT_KEYS = {
    "sensor": {  # [sensor]
        "device_class",
        "expire_after",
        "force_update",
        "last_reset_value_template",
        "options",
        "state_class",
        "suggested_display_precision",
        "unit_of_measurement",
    },
    "binary_sensor": {  # [binary_sensor]
        "device_class",
        "expire_after",
        "force_update",
        "off_delay",
        "payload_off",
        "payload_on",
    },
}
DEVICE_KEYS = {  # [schemas.py] MQTT_ENTITY_DEVICE_INFO_SCHEMA
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}  # [schemas.py] MQTT_ORIGIN_INFO_SCHEMA
AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
SENSOR_UNITS = {  # [device classes]: the units each class the gateway may use accepts
    "current": {"A", "mA"},
    "frequency": {"Hz", "kHz", "MHz", "GHz"},
    "power": {"W", "kW", "MW", "GW", "TW", "mW", "BTU/h"},
    "pressure": {"Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi"},
    "temperature": {"°C", "°F", "K"},
    "voltage": {"V", "mV", "µV", "kV", "MV"},
}
SENSOR_CLASSES = {*SENSOR_UNITS, "enum", "timestamp", "duration", "signal_strength", "speed"}
BINARY_SENSOR_CLASSES = {"connectivity", "problem", "running", "safety", "vibration", "heat"}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
TEMPLATE = re.compile(r"^\{\{ value_json(?:\.(?P<attr>\w+)|\['(?P<key>[^']+)'\]) \}\}$")
"""The value templates this validator can evaluate (the only forms the gateway sends)."""


def check_discovery(topic: str, payload: bytes, prefix: str) -> dict[str, Any]:
    """The discovery config on `topic`, abbreviations expanded; AssertionError naming the rule
    it breaks."""
    where = f"discovery message on {topic}"
    found = re.match(DISCOVERY_TOPIC.format(prefix=re.escape(prefix)), topic)
    assert found is not None, f"{where}: not {prefix}/<component>/[<node_id>/]<object_id>/config"
    component = found["component"]
    assert component in COMPONENT_KEYS, f"{where}: component {component} not checked here"
    config = json.loads(payload)
    assert isinstance(config, dict), f"{where}: the payload must be a JSON dictionary"
    config = _expanded(config, ABBREVIATIONS)
    unknown = set(config) - COMMON_KEYS - COMPONENT_KEYS[component]
    assert not unknown, f"{where}: unknown keys {sorted(unknown)}"
    _check_common(where, config)
    if component == "sensor":
        _check_sensor(where, config)
    else:
        _check_binary_sensor(where, config)
    return config


def _check_common(where: str, config: dict[str, Any]) -> None:
    _topic(where, "state_topic", config.get("state_topic"))  # required [sensor][binary_sensor]
    assert isinstance(config.get("unique_id"), str) and config["unique_id"], (
        f"{where}: unique_id (a string) is needed for the device [sensor]"
    )
    assert isinstance(config.get("name"), str | None), f"{where}: name must be a string"
    _template(where, "value_template", config)
    _template(where, "json_attributes_template", config)
    if "json_attributes_topic" in config:
        _topic(where, "json_attributes_topic", config["json_attributes_topic"])
    if "entity_category" in config:
        assert config["entity_category"] in ENTITY_CATEGORIES, f"{where}: entity_category"
    _check_device(where, _expanded(config.get("device"), DEVICE_ABBREVIATIONS))
    origin = config.get("origin")
    assert isinstance(origin, dict) and isinstance(origin.get("name"), str), (
        f"{where}: origin needs a name [schemas.py]"
    )
    assert set(origin) <= ORIGIN_KEYS, f"{where}: origin keys {sorted(set(origin))}"
    availability = config.get("availability")
    if availability is not None:
        assert "availability_topic" not in config, (
            f"{where}: availability must not be used together with availability_topic [sensor]"
        )
        assert isinstance(availability, list) and availability, f"{where}: availability list"
        for entry in availability:
            entry = _expanded(entry, ABBREVIATIONS)
            assert set(entry) <= AVAILABILITY_KEYS, f"{where}: availability keys {set(entry)}"
            _topic(where, "availability topic", entry.get("topic"))  # required [schemas.py]
            _template(where, "value_template", entry)
            for key in ("payload_available", "payload_not_available"):
                assert isinstance(entry.get(key, ""), str), f"{where}: {key} must be a string"


def _check_device(where: str, device: Any) -> None:
    assert isinstance(device, dict), f"{where}: device must be a mapping [sensor]"
    assert set(device) <= DEVICE_KEYS, f"{where}: device keys {sorted(set(device) - DEVICE_KEYS)}"
    identifiers = device.get("identifiers")
    if isinstance(identifiers, str):
        identifiers = [identifiers]
    assert identifiers or device.get("connections"), (
        f"{where}: a device needs identifiers or connections [schemas.py]"
    )
    assert all(isinstance(i, str) and i for i in identifiers or []), f"{where}: identifiers"
    for key in DEVICE_KEYS - {"identifiers", "connections"}:
        assert isinstance(device.get(key, ""), str), f"{where}: device {key} must be a string"


def _check_sensor(where: str, config: dict[str, Any]) -> None:
    device_class = config.get("device_class")
    unit = config.get("unit_of_measurement")
    assert device_class is None or device_class in SENSOR_CLASSES, f"{where}: {device_class}"
    assert config.get("state_class") in {None, *STATE_CLASSES}, f"{where}: state_class"
    if device_class in SENSOR_UNITS:
        assert unit in SENSOR_UNITS[device_class], (
            f"{where}: {unit!r} is not a unit of device class {device_class} [device classes]"
        )
    options = config.get("options")
    if options is not None:  # [sensor.py]
        assert device_class == "enum", f"{where}: options need device class enum"
        assert isinstance(options, list) and options, f"{where}: options must not be empty"
        assert unit is None and config.get("state_class") is None, (
            f"{where}: options exclude state_class and unit_of_measurement"
        )
    precision = config.get("suggested_display_precision", 0)
    assert isinstance(precision, int) and precision >= 0, f"{where}: display precision"


def _check_binary_sensor(where: str, config: dict[str, Any]) -> None:
    device_class = config.get("device_class")
    assert device_class is None or device_class in BINARY_SENSOR_CLASSES, f"{where}: class"
    for key in ("payload_on", "payload_off"):
        assert isinstance(config.get(key, ""), str), f"{where}: {key} must be a string"


def _topic(where: str, key: str, topic: Any) -> None:
    assert isinstance(topic, str) and topic, f"{where}: {key} is required (a topic)"
    assert "\0" not in topic and len(topic.encode()) <= 65535, f"{where}: {key} {topic!r}"


def _template(where: str, key: str, config: dict[str, Any]) -> None:
    assert isinstance(config.get(key, ""), str), f"{where}: {key} must be a template string"


def _expanded(mapping: Any, abbreviations: dict[str, str]) -> Any:
    if not isinstance(mapping, dict):
        return mapping
    return {abbreviations.get(key, key): value for key, value in mapping.items()}


def render(template: str, payload: bytes) -> str:
    """What Home Assistant makes of `payload` with a value template of the forms the gateway
    uses: the JSON value as text, "None" for null (Home Assistant's unknown)."""
    found = TEMPLATE.match(template)
    assert found is not None, f"template {template!r} is not one this validator evaluates"
    value = json.loads(payload)[found["attr"] or found["key"]]
    return "None" if value is None else str(value)
