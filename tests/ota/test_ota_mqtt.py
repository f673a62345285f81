"""A signed bundle sent on the gateway's MQTT command topic (real mosquitto with the shipped ACL,
TLS and passwords) is installed by the running appliance, which answers on its reply topic and
publishes the new active model in its retained status; a bad one is refused in the reply."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from pathlib import Path

from broker import Broker
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ota_helpers import GATEWAY, MODELLER, archive, ota_config, send_command
from uplink_helpers import read_retained
from waiting import wait_until

from appliance.rig import run_appliance
from appliance.rig.demo import demo_uplink
from appliance.status import StatusBoard
from appliance.uplink.commands import Command
from appliance.uplink.schema import decode_status

ASSET = "pump-1"


async def test_bundle_over_mqtt_is_installed_and_published(
    make_broker: Callable[..., Broker], tmp_path: Path
) -> None:
    broker = make_broker(users=(GATEWAY, MODELLER, "receiver"))
    key = Ed25519PrivateKey.generate()
    uplink = demo_uplink(broker.url(GATEWAY), broker.ca_path)
    config = ota_config(tmp_path, key, uplink=uplink)
    board = StatusBoard(config.gateway.id)
    stop = asyncio.Event()
    run = asyncio.create_task(run_appliance(config, stop=stop, board=board))
    await wait_until(
        lambda: board.asset(ASSET).scores >= 8 and board.uplink is not None
        and board.uplink.connected,
        "scores and a connected uplink",
        alive=run,
    )  # fmt: skip
    old_model = board.models.active[ASSET]

    unsigned = Command(secrets.token_hex(8), "install_model", archive(tmp_path, "u-1", None))
    refused = await send_command(broker, unsigned)
    assert refused.outcome["accepted"] is False
    assert str(refused.outcome["message"]).startswith("signature: unsigned")

    good = Command(secrets.token_hex(8), "install_model", archive(tmp_path, "mqtt-2", key))
    accepted = await send_command(broker, good)
    assert accepted.outcome["accepted"] is True, accepted.outcome
    new_model = str(accepted.outcome["model"])
    assert new_model.startswith("mqtt-2-") and new_model != old_model

    status_topic = f"appliance/{GATEWAY}/status"
    await wait_until_retained_models(broker, status_topic, {ASSET: new_model})

    rollback = await send_command(
        broker, Command(secrets.token_hex(8), "rollback_model", asset=ASSET)
    )
    assert rollback.outcome["accepted"] is True, rollback.outcome
    await wait_until(lambda: board.models.active[ASSET] == old_model, "rolled back", alive=run)
    stop.set()
    await run


async def wait_until_retained_models(broker: Broker, topic: str, expected: dict[str, str]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        status = decode_status(await read_retained(broker, topic))
        models = status.fields.get("models")
        if isinstance(models, dict) and all(models.get(a) == m for a, m in expected.items()):
            return
        assert loop.time() < deadline, f"retained status still says models {models}"
