"""Typed gateway configuration, loaded from one TOML file and validated before anything runs.

Every table refuses unknown keys, values are type-checked strictly (a string is never silently
turned into a number) and cross-field rules (window vs Welch segment, duplicate names, sources that
point nowhere) are checked at load time. Errors name the offending key, e.g.
``assets[0].channels[1].rate_hz: Input should be greater than 0``.

One module per part of the file (capture, features, assets, uplink, sms, http, ota,
homeassistant, gateway for the whole), loading.py reads it; the names are imported from here.
"""

from appliance.config.assets import AssetConfig, ModelConfig
from appliance.config.capture import (
    SENSOR_QUANTITIES,
    ChannelConfig,
    ChannelKind,
    I2cConfig,
    I2cQuantity,
    I2cSensor,
    I2cSource,
    McuEmulation,
    SerialConfig,
    SerialSource,
    Source,
)
from appliance.config.features import (
    MAX_SEGMENTS_PER_WINDOW,
    MAX_SPECTRUM_VALUES,
    MAX_WINDOW_SAMPLES,
    FeaturesConfig,
)
from appliance.config.fields import BandEdges, Name, PathText, PositiveFloat
from appliance.config.files import MAX_SECRET_FILE_BYTES, read_text_file
from appliance.config.gateway import ApplianceConfig, GatewayConfig, StoreConfig
from appliance.config.homeassistant import HomeAssistantConfig
from appliance.config.http import HOST_LABEL, HOST_NAME, TOKEN_PATTERN, TOKEN_RULE, HttpConfig
from appliance.config.loading import SECRET_KEYS, load_config, parse_config
from appliance.config.ota import ModelsConfig
from appliance.config.release import ReleaseConfig
from appliance.config.sms import (
    E164,
    UNSTABLE_PORTS,
    AlarmEvent,
    AlertFamily,
    SimPin,
    SmsConfig,
)
from appliance.config.toml_nesting import MAX_NESTING
from appliance.config.uplink import TopicPrefix, UplinkConfig, parse_broker_url
from appliance.net.broker import BrokerAddress

__all__ = [
    "E164",
    "HOST_LABEL",
    "HOST_NAME",
    "MAX_NESTING",
    "MAX_SECRET_FILE_BYTES",
    "MAX_SEGMENTS_PER_WINDOW",
    "MAX_SPECTRUM_VALUES",
    "MAX_WINDOW_SAMPLES",
    "SECRET_KEYS",
    "SENSOR_QUANTITIES",
    "TOKEN_PATTERN",
    "TOKEN_RULE",
    "UNSTABLE_PORTS",
    "AlarmEvent",
    "AlertFamily",
    "ApplianceConfig",
    "AssetConfig",
    "BandEdges",
    "BrokerAddress",
    "ChannelConfig",
    "ChannelKind",
    "FeaturesConfig",
    "GatewayConfig",
    "HomeAssistantConfig",
    "HttpConfig",
    "I2cConfig",
    "I2cQuantity",
    "I2cSensor",
    "I2cSource",
    "McuEmulation",
    "ModelConfig",
    "ModelsConfig",
    "Name",
    "PathText",
    "PositiveFloat",
    "ReleaseConfig",
    "SerialConfig",
    "SerialSource",
    "SimPin",
    "SmsConfig",
    "Source",
    "StoreConfig",
    "TopicPrefix",
    "UplinkConfig",
    "load_config",
    "parse_broker_url",
    "parse_config",
    "read_text_file",
]
