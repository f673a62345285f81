"""Home Assistant discovery without a broker: the [homeassistant] table, the discovery messages
checked against Home Assistant's documented schema (homeassistant_schema.py), the state
messages and when they go (a fake clock, a list for a broker)."""

from __future__ import annotations

import asyncio
import json
import tomllib
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from homeassistant_schema import check_discovery, render
from test_config_uplink import uncommented_table

from appliance.config import ApplianceConfig, parse_config
from appliance.config.homeassistant import SlowFeature, VibrationFeature
from appliance.errors import ConfigError
from appliance.features.settings import SLOW_FEATURES, VIBRATION_FEATURES
from appliance.homeassistant import HomeAssistant, home_assistant_settings
from appliance.homeassistant.entities import HomeAssistantSettings, discovery_messages
from appliance.records import FeatureVector, Score
from appliance.rig.demo import demo_config
from appliance.status import StatusBoard

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gateway.toml"
UPLINK = {"broker": "mqtt://localhost", "ack": "broker"}
T0 = 1_767_225_600.0


def demo_with(tmp_path: Path, **table: Any) -> ApplianceConfig:
    document = demo_config(tmp_path, [], uplink=UPLINK).model_dump(exclude_none=True)
    return parse_config({**document, "homeassistant": table}, "site.toml")


def settings_of(config: ApplianceConfig) -> HomeAssistantSettings:
    settings = home_assistant_settings(config)
    assert settings is not None
    return settings


# --- the table ------------------------------------------------------------------------------


def test_the_commented_example_is_valid_and_shows_every_key() -> None:
    text = EXAMPLE.read_text()
    document = tomllib.loads(text) | uncommented_table(text, "uplink")
    document |= uncommented_table(text, "homeassistant")

    config = parse_config(document, "gateway.toml")

    table = config.homeassistant
    assert table is not None and table.enabled and table.assets == ["pump-1"]
    assert table.model_fields_set == set(type(table).model_fields), "every key is shown"


@pytest.mark.parametrize(
    ("table", "uplink", "expected"),
    [
        ({}, False, "homeassistant: needs an [uplink] table"),
        ({"assets": ["pump-1", "nope"]}, True, "homeassistant.assets: no asset named 'nope'"),
        ({"assets": ["pump-1", "pump-1"]}, True, "homeassistant.assets: duplicate name(s)"),
        ({"vibration_features": ["band_0_100hz"]}, True, "homeassistant.vibration_features"),
        ({"slow_features": ["rms"]}, True, "homeassistant.slow_features"),
        ({"state_every_s": 0}, True, "homeassistant.state_every_s"),
        ({"discovery_prefix": "home/#"}, True, "homeassistant.discovery_prefix"),
        ({"enabeld": True}, True, "homeassistant.enabeld: unknown key"),
    ],
)
def test_a_wrong_table_is_refused_naming_the_key(
    tmp_path: Path, table: dict[str, Any], uplink: bool, expected: str
) -> None:
    document = demo_config(tmp_path, []).model_dump(exclude_none=True)
    document["homeassistant"] = table
    if uplink:
        document["uplink"] = UPLINK
    with pytest.raises(ConfigError) as refused:
        parse_config(document, "site.toml")
    assert expected in str(refused.value)


def test_disabled_or_absent_publishes_nothing(tmp_path: Path) -> None:
    document = demo_config(tmp_path, []).model_dump(exclude_none=True)
    off = parse_config({**document, "homeassistant": {"enabled": False}}, "site.toml")

    assert home_assistant_settings(off) is None, "disabled needs no [uplink] either"
    assert home_assistant_settings(demo_config(tmp_path, [], uplink=UPLINK)) is None


def test_the_feature_choices_are_the_features_the_engine_computes() -> None:
    assert set(typing.get_args(VibrationFeature)) <= set(VIBRATION_FEATURES)
    assert set(typing.get_args(SlowFeature)) == set(SLOW_FEATURES)


# --- discovery ------------------------------------------------------------------------------


def test_every_discovery_message_follows_home_assistants_schema(tmp_path: Path) -> None:
    settings = settings_of(demo_with(tmp_path))
    messages = discovery_messages(settings)

    configs = {
        topic: check_discovery(topic, payload, "homeassistant") for topic, payload in messages
    }

    per_asset = 4 + 3 * 3 + 2 * 1  # state, alarm, score, threshold; 3 vibration, 2 slow channels
    assert len(configs) == len(messages) == 1 + 2 * per_asset, "one topic per entity"
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    uplink = configs["homeassistant/binary_sensor/demo-gw/uplink/config"]
    assert uplink["state_topic"] == "appliance/demo-gw/status" and "availability" not in uplink
    assert uplink["device"]["identifiers"] == ["appliance_demo-gw"]
    for topic, config in configs.items():
        if config is uplink:
            continue
        assert config["device"]["via_device"] == "appliance_demo-gw", topic
        [availability] = config["availability"]
        assert availability["topic"] == "appliance/demo-gw/status"


def test_features_have_the_units_and_device_classes_of_their_channels(tmp_path: Path) -> None:
    configs = {
        topic.split("/")[3]: check_discovery(topic, payload, "homeassistant")
        for topic, payload in discovery_messages(settings_of(demo_with(tmp_path)))
    }

    def shown(object_id: str) -> tuple[str | None, str | None]:
        config = configs[object_id]
        return config.get("unit_of_measurement"), config.get("device_class")

    assert shown("pump-1_accel_x_rms") == ("g", None)
    assert shown("pump-1_accel_y_dominant_freq_hz") == ("Hz", "frequency")
    assert shown("pump-1_bearing_temp_mean") == ("°C", "temperature")
    assert shown("pump-1_motor_current_mean") == ("A", "current")
    assert shown("compressor-2_supply_voltage_mean") == ("V", "voltage")
    assert shown("pump-1_score") == (None, None)
    assert configs["pump-1_state"]["options"] == [
        "alarm",
        "sensor_fault",
        "warning",
        "no_data",
        "commissioning",
        "ok",
    ]


def test_the_table_chooses_the_assets_and_features(tmp_path: Path) -> None:
    settings = settings_of(
        demo_with(
            tmp_path,
            assets=["compressor-2"],
            discovery_prefix="ha/disc",
            vibration_features=["crest_factor"],
            slow_features=["min", "std"],
        )
    )
    messages = discovery_messages(settings)
    configs = {topic: check_discovery(topic, payload, "ha/disc") for topic, payload in messages}

    names = {c["name"] for c in configs.values() if "compressor-2" in c["unique_id"]}
    assert "accel_z crest factor" in names and "bearing_temp standard deviation" in names
    assert not any("pump-1" in topic for topic in configs)
    std = next(c for c in configs.values() if c["name"] == "bearing_temp standard deviation")
    assert (std["unit_of_measurement"], std.get("device_class")) == ("°C", None)


def test_assets_that_would_share_a_discovery_topic_are_refused(tmp_path: Path) -> None:
    document = demo_config(tmp_path, [], uplink=UPLINK).model_dump(exclude_none=True)
    document["assets"][1]["name"] = "pump.1"
    document["assets"][0]["name"] = "pump_1"
    config = parse_config({**document, "homeassistant": {}}, "site.toml")

    with pytest.raises(ConfigError, match="share the discovery topic"):
        home_assistant_settings(config)


# --- states ---------------------------------------------------------------------------------


class Broker:
    """A list for a broker: what was published, in order."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []

    async def __call__(self, topic: str, payload: bytes, *, retain: bool) -> None:
        self.messages.append((topic, payload, retain))

    def states(self) -> dict[str, dict[str, Any]]:
        return {t: json.loads(p) for t, p, _ in self.messages if t.endswith("/state")}


def scored_board(config: ApplianceConfig, now: float) -> StatusBoard:
    board = StatusBoard("demo-gw")
    for asset in config.assets:
        status = board.asset(asset.name)
        status.samples = {c.name: 1000 for c in asset.channels}
        names = ("accel_x.rms", "accel_x.peak", "bearing_temp.mean", "motor_current.mean")
        values = np.array([0.0123456, 0.5, 41.25, float("nan")])
        status.latest = FeatureVector(asset.name, now - 1, names, values)
        status.latest_score = Score(asset.name, now - 1, "m-1", 0.123456, 0.5, False)
    return board


def test_the_state_message_carries_every_entitys_value(tmp_path: Path) -> None:
    config = demo_with(tmp_path)
    settings = settings_of(config)
    board = scored_board(config, T0)
    broker = Broker()

    asyncio.run(HomeAssistant(settings, board, clock=lambda: T0).publish_states(broker))

    state = broker.states()["appliance/demo-gw/ha/pump-1/state"]
    payload = json.dumps(state).encode()
    values = {
        config["name"]: render(config["value_template"], payload)
        for topic, message in discovery_messages(settings)
        if "/pump-1_" in topic
        for config in [json.loads(message)]
    }
    assert values["State"] == "ok" and values["Anomaly alarm"] == "OFF"
    assert (values["Anomaly score"], values["Anomaly threshold"]) == ("0.1235", "0.5")
    assert values["accel_x RMS"] == "0.01235" and values["bearing_temp mean"] == "41.25"
    assert values["motor_current mean"] == "None", "NaN: unknown in Home Assistant"
    assert values["accel_y RMS"] == "None", "not computed: unknown"
    assert state["reason"].startswith("score 0.123 under threshold 0.5")
    assert all(retain for _, _, retain in broker.messages)


def test_a_change_of_state_goes_at_once_numbers_at_most_every_state_every_s(
    tmp_path: Path,
) -> None:
    config = demo_with(tmp_path, state_every_s=10.0)
    now = [T0]
    board = scored_board(config, T0)
    home = HomeAssistant(settings_of(config), board, clock=lambda: now[0])
    broker = Broker()
    pump_topic = "appliance/demo-gw/ha/pump-1/state"

    def publish_at(t: float) -> list[str]:
        now[0] = t
        broker.messages.clear()
        asyncio.run(home.publish_states(broker))
        return [topic for topic, _, _ in broker.messages]

    assert len(publish_at(T0)) == 2, "each asset's state at first"
    pump = board.assets["pump-1"]
    pump.latest_score = Score("pump-1", T0 + 1, "m-1", 0.2, 0.5, False)
    assert publish_at(T0 + 1) == [], "numbers changed, but within state_every_s"
    pump.alarm = "critical"
    pump.latest_score = Score("pump-1", T0 + 2, "m-1", 0.9, 0.5, True)
    assert publish_at(T0 + 2) == [pump_topic], "an alarm goes at once"
    assert broker.states()[pump_topic]["state"] == "alarm"
    assert publish_at(T0 + 11) == [], "nothing changed since"
    pump.latest_score = Score("pump-1", T0 + 12, "m-1", 0.8, 0.5, True)
    assert publish_at(T0 + 12) == [pump_topic], "changed numbers after state_every_s"
    assert home.state_messages == 4


def test_three_connections_lost_while_announcing_leave_home_assistant_out(
    tmp_path: Path,
) -> None:
    home = HomeAssistant(settings_of(demo_with(tmp_path)), StatusBoard("demo-gw"))
    attempts = 0

    async def refused(topic: str, payload: bytes, *, retain: bool) -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("connection dropped by the broker")

    for _ in range(3):
        with pytest.raises(ConnectionError):
            asyncio.run(home.serve(refused))
    asyncio.run(home.serve(refused))  # returns at once: given up

    assert home.given_up and attempts == 3 and home.announcements == 0
