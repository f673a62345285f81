"""Bundles for over-the-air tests: variants of the demo's pump-1 bundle (its features are exactly
the demo rig's), signed with keys made here, and the demo config with a [models] table."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
from broker import Broker
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.config import ApplianceConfig, parse_config
from appliance.detect.bundle import MANIFEST_FILE, sha256_hex
from appliance.ota.archive import pack
from appliance.ota.inbox import RESULT_SUFFIX
from appliance.ota.signing import public_key_text, sign_bundle
from appliance.rig.demo import demo_config
from appliance.store import Store, StoreSettings
from appliance.uplink.commands import (
    Command,
    Reply,
    command_topic,
    decode_reply,
    encode_command,
    reply_topic,
)

REPO = Path(__file__).resolve().parents[2]
DEMO_BUNDLE = REPO / "models" / "default" / "pump-1"
GATEWAY = "demo-gw"
MODELLER = "modeller"  # the data team's broker user

Manifest = dict[str, Any]


def variant(
    dest: Path,
    version: str,
    key: Ed25519PrivateKey | None,
    edit: Callable[[Manifest], None] | None = None,
    model: Callable[[bytes, Manifest], bytes] | None = None,
) -> Path:
    """A copy of the demo pump-1 bundle with another version, `edit`ed manifest and `model`
    bytes (the sha256 follows), signed with `key` (None: unsigned)."""
    shutil.copytree(DEMO_BUNDLE, dest)
    manifest: Manifest = json.loads((dest / MANIFEST_FILE).read_text())
    manifest["version"] = version
    if model is not None:
        data = model((dest / manifest["model_file"]).read_bytes(), manifest)
        (dest / manifest["model_file"]).write_bytes(data)
        manifest["model_sha256"] = sha256_hex(data)
    if edit is not None:
        edit(manifest)
    (dest / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    if key is not None:
        sign_bundle(dest, key)
    return dest


def archive(
    tmp: Path,
    version: str,
    key: Ed25519PrivateKey | None,
    edit: Callable[[Manifest], None] | None = None,
    model: Callable[[bytes, Manifest], bytes] | None = None,
) -> bytes:
    return pack(variant(tmp / version, version, key, edit, model))


def drop_last_feature(manifest: Manifest) -> None:
    """Still the asset's features, one fewer than the model's input takes."""
    for key in ("feature_names", "scaler_mean", "scaler_scale"):
        manifest[key] = manifest[key][:-1]


def rename_a_feature(manifest: Manifest) -> None:
    manifest["feature_names"][2] = "accel_w.rms"


def alarm_on_everything(manifest: Manifest) -> None:
    manifest["threshold"]["fixed_threshold"] = 1e-9


def overflowing_scaler(manifest: Manifest) -> None:
    """A valid-looking scaler (positive, finite) that blows a feature up past float32's range:
    the model's scores are not finite. (An int8 model cannot output NaN itself: its output is
    an int8 times a finite scale; this is the nearest real way to get non-finite scores.)"""
    manifest["scaler_scale"][0] = 1e-300


def ota_config(
    data_dir: Path, public_key: Ed25519PrivateKey, models: dict[str, Any] | None = None, **demo: Any
) -> ApplianceConfig:
    """The demo rig (SMS off) with a [models] table trusting `public_key`'s public half."""
    return with_models(demo_config(data_dir, [], sms=False, **demo), public_key, models)


def with_models(
    config: ApplianceConfig, public_key: Ed25519PrivateKey, models: dict[str, Any] | None = None
) -> ApplianceConfig:
    document = config.model_dump(exclude_none=True)
    document["models"] = {
        "public_keys": [public_key_text(public_key.public_key())],
        "inbox_poll_s": 0.1,
        "canary_min_windows": 5,
        **(models or {}),
    }
    return parse_config(document, "<ota test>")


def result(inbox: Path, folder: str, filename: str) -> dict[str, object] | None:
    path = inbox / folder / f"{filename}{RESULT_SUFFIX}"
    return json.loads(path.read_text()) if path.exists() else None


async def drop(inbox: Path, filename: str, data: bytes) -> None:
    """As an integrator should: write under a hidden name, then rename into the inbox."""
    hidden = inbox / f".{filename}"
    hidden.write_bytes(data)
    hidden.rename(inbox / filename)


async def check_every_window_scored_once(
    db: Path, models_in_order: list[str], asset: str = "pump-1"
) -> None:
    """Each stored window of the asset has exactly one score, right after it in seq order, and
    the model ids change only in the given order (never back and forth)."""
    store = await Store.open(StoreSettings(path=db))
    try:
        features = await store.history.features(asset, limit=1_000_000)
        scores = await store.history.scores(asset, limit=1_000_000)
    finally:
        await store.close()
    score_by_seq = {seq: score for seq, score in scores}
    assert len(scores) == len(features)
    used: list[str] = []
    for seq, vector in features:
        score = score_by_seq.get(seq + 1)
        assert score is not None, f"window seq {seq} (t={vector.window_end}) has no score"
        assert score.t == vector.window_end
        if not used or used[-1] != score.model_id:
            used.append(score.model_id)
    assert used == models_in_order


def config_file(path: Path, config: ApplianceConfig) -> Path:
    """`config` written as a TOML file, for the commands that take --config."""
    from chaos.chaos_rig import toml_pairs  # tests/chaos: the chaos rig's TOML writer

    path.write_text("\n".join(toml_pairs(config.model_dump(exclude_none=True))) + "\n")
    return path


async def send(broker: Broker, payload: bytes, command_id: str | None) -> Reply | None:
    """As the data team's user: publish `payload` on the gateway's command topic; the reply with
    `command_id` (None: wait for nothing)."""
    async with aiomqtt.Client(**broker.client_args(MODELLER)) as client:
        await client.subscribe(reply_topic("appliance", GATEWAY), qos=1)
        await client.publish(command_topic("appliance", GATEWAY), payload, qos=1)
        if command_id is None:
            return None
        async with asyncio.timeout(60):
            async for message in client.messages:
                reply = decode_reply(bytes(message.payload))
                if reply.id == command_id:
                    return reply
    raise AssertionError("unreachable")


async def send_command(broker: Broker, command: Command) -> Reply:
    """`command` sent as the data team's user; the gateway's reply to it."""
    reply = await send(broker, encode_command(command), command.id)
    assert reply is not None
    return reply
