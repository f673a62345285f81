"""Home Assistant discovery against a real mosquitto with the shipped ACL and its Home
Assistant lines: the emulated rig runs with [homeassistant] on while a client logged in as Home
Assistant's user subscribes to what Home Assistant reads; every discovery message is checked
against the documented schema (homeassistant_schema.py), the states against the configs'
templates and units, availability against the status topic, before and after a clean stop; and
after an unclean one: the gateway's process killed (SIGKILL: no MQTT DISCONNECT, no offline said
by the gateway), mosquitto publishes its retained last will and every entity's availability
reads unavailable."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
from broker import REPO, SHIPPED_ACL, Broker
from homeassistant_schema import check_discovery, render
from structlog.testing import capture_logs
from uplink_helpers import read_retained, running
from waiting import wait_until

from appliance.config import ApplianceConfig, parse_config
from appliance.homeassistant import home_assistant_settings
from appliance.homeassistant.entities import discovery_messages
from appliance.rig import run_appliance
from appliance.rig.demo import demo_config, demo_uplink
from appliance.status import StatusBoard

HA_ACL = REPO / "receiver" / "mosquitto" / "acl-homeassistant.conf"
GATEWAY = "demo-gw"
STATUS = f"appliance/{GATEWAY}/status"
READS = ("homeassistant/#", f"appliance/{GATEWAY}/ha/+/state", STATUS)
"""What Home Assistant subscribes to: its discovery prefix, then each entity's topics."""


def config_with_home_assistant(broker: Broker, tmp_path: Path) -> ApplianceConfig:
    uplink = demo_uplink(broker.url(GATEWAY), broker.ca_path) | {"ack": "broker"}
    document = demo_config(tmp_path, [], uplink=uplink).model_dump(exclude_none=True)
    document["homeassistant"] = {"state_every_s": 0.5}
    return parse_config(document, "<test>")


def home_assistant_on_its_broker(
    make_broker: Callable[..., Broker], tmp_path: Path
) -> tuple[Broker, ApplianceConfig, set[str]]:
    """A broker with the shipped ACL and its Home Assistant lines, the rig's config announcing
    to it, and the discovery topics that config announces."""
    broker = make_broker(
        users=(GATEWAY, "homeassistant"), acl=SHIPPED_ACL.read_text() + HA_ACL.read_text()
    )
    config = config_with_home_assistant(broker, tmp_path)
    settings = home_assistant_settings(config)
    assert settings is not None
    return broker, config, {topic for topic, _ in discovery_messages(settings)}


async def listen(broker: Broker, seen: dict[str, bytes], subscribed: asyncio.Event) -> None:
    """As Home Assistant's user: the latest payload of every topic it reads (retained too)."""
    async with aiomqtt.Client(**broker.client_args("homeassistant")) as client:
        for topic in READS:
            await client.subscribe(topic, qos=1)
        subscribed.set()
        async for message in client.messages:
            seen[str(message.topic)] = bytes(message.payload)


def state_json(seen: dict[str, bytes], asset: str) -> dict[str, Any] | None:
    payload = seen.get(f"appliance/{GATEWAY}/ha/{asset}/state")
    return json.loads(payload) if payload is not None else None


def scored(seen: dict[str, bytes], asset: str) -> bool:
    state = state_json(seen, asset)
    keys = ("score", "accel_x.rms", "bearing_temp.mean")
    return state is not None and all(state.get(key) is not None for key in keys)


async def test_discovery_states_and_availability_as_home_assistant_reads_them(
    make_broker: Callable[..., Broker], tmp_path: Path
) -> None:
    broker, config, announced = home_assistant_on_its_broker(make_broker, tmp_path)
    seen: dict[str, bytes] = {}
    subscribed, stop = asyncio.Event(), asyncio.Event()
    board = StatusBoard(GATEWAY)

    async with running(listen(broker, seen, subscribed)):
        await subscribed.wait()
        run = asyncio.create_task(run_appliance(config, stop=stop, board=board))
        await wait_until(
            lambda: (
                announced <= set(seen) and all(scored(seen, a) for a in ("pump-1", "compressor-2"))
            ),
            "every discovery config and both assets' scored states",
            alive=run,
        )
        while_running = dict(seen)
        stop.set()
        await run
        await wait_until(lambda: json.loads(seen[STATUS])["state"] == "offline", "offline")

    configs = {t: check_discovery(t, while_running[t], "homeassistant") for t in announced}
    assert {t for t in while_running if t.startswith("homeassistant/")} == announced
    for topic, ha_config in configs.items():
        check_availability(ha_config, while_running[STATUS], seen[STATUS], topic)
        check_value(ha_config, while_running[ha_config["state_topic"]], topic)
    some_config = sorted(announced)[0]
    retained = await read_retained(broker, some_config, username="homeassistant")
    assert retained == while_running[some_config], "discovery configs are retained"


def check_availability(
    ha_config: dict[str, Any], online: bytes, offline: bytes, topic: str
) -> None:
    """Available while the gateway ran, unavailable after its clean stop; the gateway's own
    connectivity entity is off instead."""
    if "availability" not in ha_config:
        assert ha_config["state_topic"] == STATUS, topic
        on, off = ha_config["payload_on"], ha_config["payload_off"]
        assert render(ha_config["value_template"], online) == on, topic
        assert render(ha_config["value_template"], offline) == off, topic
        return
    [availability] = ha_config["availability"]
    assert availability["topic"] == STATUS, topic
    template = availability["value_template"]
    assert render(template, online) == availability["payload_available"], topic
    assert render(template, offline) == availability["payload_not_available"], topic


def check_value(ha_config: dict[str, Any], payload: bytes, topic: str) -> None:
    """What Home Assistant would take from the state message: a number for a sensor with a unit
    or a state class, one of the options for an enum, ON/OFF for a binary sensor."""
    value = render(ha_config["value_template"], payload)
    if "options" in ha_config:
        assert value in ha_config["options"], (topic, value)
    elif topic.startswith("homeassistant/binary_sensor/"):
        assert value in {ha_config.get("payload_on", "ON"), ha_config.get("payload_off", "OFF")}
    elif "unit_of_measurement" in ha_config or "state_class" in ha_config:
        assert value == "None" or math.isfinite(float(value)), (topic, value)
    unit = ha_config.get("unit_of_measurement")
    if topic.endswith(("_bearing_temp_mean/config",)):
        assert unit == "°C" and 0.0 < float(value) < 100.0, (topic, value)
    if topic.endswith("_accel_x_rms/config"):
        assert unit == "g" and 0.0 < float(value) < 2.0, (topic, value)


GATEWAY_PROCESS = """
import asyncio, json, sys
from appliance.config import parse_config
from appliance.rig import run_appliance
with open(sys.argv[1], encoding="utf-8") as file:
    config = parse_config(json.load(file), sys.argv[1])
asyncio.run(run_appliance(config))
"""
"""The gateway in a process of its own, so that it can die as a power cut or a crash ends it."""


async def test_an_unclean_stop_makes_home_assistant_read_unavailable_from_the_will(
    make_broker: Callable[..., Broker], tmp_path: Path
) -> None:
    broker, config, announced = home_assistant_on_its_broker(make_broker, tmp_path)
    config_file = tmp_path / "gateway.json"
    config_file.write_text(json.dumps(config.model_dump(mode="json", exclude_none=True)))
    seen: dict[str, bytes] = {}
    subscribed = asyncio.Event()

    async with running(listen(broker, seen, subscribed)):
        await subscribed.wait()
        with (tmp_path / "gateway.log").open("wb") as log:
            gateway = await asyncio.create_subprocess_exec(
                sys.executable, "-c", GATEWAY_PROCESS, str(config_file), stdout=log, stderr=log
            )
        exited = asyncio.create_task(gateway.wait())
        try:
            await wait_until(
                lambda: (
                    announced <= set(seen)
                    and scored(seen, "pump-1")
                    and status_state(seen) == "online"
                ),
                "the gateway announced, online and scoring",
                alive=exited,  # fails at once if the process ends
            )
            online = seen[STATUS]
        finally:
            gateway.kill()  # SIGKILL: the socket closes without a DISCONNECT
            await exited
        assert gateway.returncode == -signal.SIGKILL
        await wait_until(lambda: status_state(seen) == "offline", "the will: offline")

    retained = await read_retained(broker, STATUS, username="homeassistant")
    assert retained == seen[STATUS], "the will is retained: Home Assistant started later reads it"
    for topic in announced:
        ha_config = check_discovery(topic, seen[topic], "homeassistant")
        check_availability(ha_config, online, retained, topic)


def status_state(seen: dict[str, bytes]) -> str | None:
    payload = seen.get(STATUS)
    return None if payload is None else str(json.loads(payload)["state"])


async def test_without_the_acl_lines_the_gateway_gives_up_announcing_and_keeps_uplinking(
    make_broker: Callable[..., Broker], tmp_path: Path
) -> None:
    broker = make_broker(users=(GATEWAY,))  # the shipped ACL alone: no discovery topics
    config = config_with_home_assistant(broker, tmp_path)
    board, stop = StatusBoard(GATEWAY), asyncio.Event()

    with capture_logs() as logs:
        run = asyncio.create_task(run_appliance(config, stop=stop, board=board))
        await wait_until(
            lambda: any(e["event"] == "homeassistant_given_up" for e in logs),
            "giving up",
            alive=run,
        )
        assert board.uplink is not None
        given_up_at = board.uplink.acked_seq
        await wait_until(
            lambda: board.uplink is not None and board.uplink.acked_seq > given_up_at + 20,
            "records delivered after giving up",
            alive=run,
        )
        connections = board.uplink.connections
        stop.set()
        await run

    assert connections == 4, "three connections dropped while announcing, then one that stays"
    [given_up] = [e for e in logs if e["event"] == "homeassistant_given_up"]
    assert "homeassistant/+/demo-gw/+/config" in given_up["reason"]
