"""`appliance model keygen|sign|verify|publish|rollback` through `appliance.cli.main`: real keys,
real bundles (variants of the demo's pump-1), a real mosquitto with the shipped ACL for publish
(the gateway's side played by a small client that answers with appliance.uplink.commands), and
a running appliance for the rollback through the inbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from broker import Broker, BrokerFactory
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ota_helpers import (
    archive,
    config_file,
    drop,
    ota_config,
    rename_a_feature,
    result,
    variant,
)
from waiting import cancel_and_wait, run_appliance_until, wait_until

from appliance.cli import main
from appliance.config import ApplianceConfig
from appliance.detect.bundle import MANIFEST_FILE, SIGNATURE_FILE, load_bundle
from appliance.ota.archive import unpack
from appliance.ota.library import BundleLibrary, Slots
from appliance.ota.settings import OtaSettings, ota_settings
from appliance.ota.signing import load_private_key, public_key_text
from appliance.rig import run_appliance
from appliance.status import StatusBoard
from appliance.uplink.commands import Command, answer, command_topic, decode_command, reply_topic

ASSET = "pump-1"
GATEWAY = "gw-a"
MODELLER = "modeller"


def model(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["model", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def ota_gateway(tmp_path: Path) -> tuple[Ed25519PrivateKey, ApplianceConfig, Path]:
    """A signing key, the demo gateway's config trusting it, and that config as a file."""
    key = Ed25519PrivateKey.generate()
    config = ota_config(tmp_path, key)
    return key, config, config_file(tmp_path / "gateway.toml", config)


def keygen(capsys: pytest.CaptureFixture[str], path: Path) -> Ed25519PrivateKey:
    assert model(capsys, "keygen", "--out", path)[0] == 0
    return load_private_key(path)


# --- keygen, sign, verify -----------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "team.pem"
    code, out, _ = model(capsys, "keygen", "--out", path)

    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    public = public_key_text(load_private_key(path).public_key())
    assert (tmp_path / "team.pem.pub").read_text() == public + "\n"
    assert public in out.splitlines() and "public_keys" in out and "[models]" in out

    before = path.read_bytes()
    code, _, err = model(capsys, "keygen", "--out", path)
    assert code == 2 and "refusing to overwrite a signing key" in err
    assert path.read_bytes() == before


def test_a_signed_bundle_verifies_as_a_directory_and_as_its_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = keygen(capsys, tmp_path / "team.pem")
    bundle = variant(tmp_path / "bundle", "cli-1", None)
    tar = tmp_path / "bundle.tar"

    code, out, _ = model(capsys, "sign", bundle, "--key", tmp_path / "team.pem", "--archive", tar)

    assert code == 0
    loaded = load_bundle(bundle)
    public = public_key_text(key.public_key())
    for shown in (loaded.bundle_id, loaded.manifest.model_sha256, public, str(tar)):
        assert shown in out
    assert (bundle / SIGNATURE_FILE).exists()
    for target, trusted in ((bundle, tmp_path / "team.pem.pub"), (tar, public)):
        code, out, _ = model(capsys, "verify", target, "--public-key", trusted)
        assert code == 0, out
        for check in ("archive", "signature", "bundle", "asset", "runtime"):
            assert f"  {check:<10} OK" in out
        assert f"signed by {public}" in out


def tamper_with_the_manifest(bundle: Path) -> None:
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest["threshold"]["fixed_threshold"] *= 10
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("tampered manifest", "wrong signature: manifest.json was not signed by any of the 1"),
        ("wrong key", "wrong signature: manifest.json was not signed by any of the 1"),
        ("unsigned", "unsigned: the bundle has no signature.ed25519"),
    ],
)
def test_verify_refuses_a_bundle_whose_signature_does_not_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, reason: str
) -> None:
    trusted = Ed25519PrivateKey.generate()
    signer = Ed25519PrivateKey.generate() if case == "wrong key" else trusted
    bundle = variant(tmp_path / "bundle", "cli-1", None if case == "unsigned" else signer)
    if case == "tampered manifest":
        tamper_with_the_manifest(bundle)

    code, out, _ = model(
        capsys, "verify", bundle, "--public-key", public_key_text(trusted.public_key())
    )

    assert code == 1
    assert f"  signature  FAILED  {reason}" in out
    assert "  bundle     OK" in out  # the other checks still run and say what they found
    assert out.splitlines()[-1] == "refused: signature failed"


def test_sign_refuses_a_bundle_whose_model_does_not_match_its_sha256(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keygen(capsys, tmp_path / "team.pem")
    bundle = variant(tmp_path / "bundle", "cli-1", None)
    model_file = bundle / "model.tflite"
    data = bytearray(model_file.read_bytes())
    data[-1] ^= 0xFF
    model_file.write_bytes(bytes(data))

    code, out, err = model(capsys, "sign", bundle, "--key", tmp_path / "team.pem")

    assert code == 2 and out == ""
    assert err.startswith("error: not signed: ") and "does not match model_sha256" in err
    assert not (bundle / SIGNATURE_FILE).exists()


@pytest.mark.parametrize(
    ("edit", "failed", "reason"),
    [
        (None, None, None),
        (rename_a_feature, "features", "the model needs 1 feature(s) asset pump-1 does not "
         "produce: accel_w.rms"),
        (lambda m: m.update(asset="pump-9"), "asset", "this gateway has no asset 'pump-9'"),
    ],
)  # fmt: skip
def test_verify_against_a_gateway_config_checks_its_assets_features_and_keys(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[dict[str, Any]], None] | None,
    failed: str | None,
    reason: str | None,
) -> None:
    key, _, gateway = ota_gateway(tmp_path)
    bundle = variant(tmp_path / "bundle", "cli-1", key, edit)

    code, out, _ = model(capsys, "verify", bundle, "--config", gateway)

    assert "  signature  OK" in out  # the key came from the config's [models] table
    if failed is None:
        assert code == 0, out
        assert f"{ASSET} is an asset of gateway demo-gw" in out
        assert "  features   OK" in out
    else:
        assert code == 1
        assert f"  {failed:<10} FAILED  {failed}: {reason}" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "{bundle}"], "give --public-key (repeatable) or --config"),
        (["verify", "{bundle}", "--public-key", "bm90IGEga2V5"], "public key is 32 bytes"),
        (["verify", "{tmp}/nowhere.tar", "--public-key", "{pub}"], "nowhere.tar: cannot read"),
        (["sign", "{bundle}", "--key", "{tmp}/none.pem"], "cannot read the signing key"),
        (["rollback", "--config", "{plain}", "--asset", ASSET], "no [models] table"),
        (["rollback", "--config", "{gateway}", "--asset", "pump-9"], "no asset 'pump-9'"),
        (
            ["publish", "{bundle}", "--gateway", GATEWAY, "--broker", "mqtt://example.com"],
            "plain mqtt:// to example.com sends the bundle and the password in clear",
        ),
        (
            ["publish", "{bundle}", "--gateway", GATEWAY, "--broker", "mqtt://127.0.0.1:1"],
            "not published: unsigned: sign it first",
        ),
        (
            ["publish", "--rollback", ASSET, "--gateway", GATEWAY, "--broker",
             "mqtts://127.0.0.1:1", "--username", MODELLER],
            "--username 'modeller' needs a password or --password-file",
        ),
    ],
)  # fmt: skip
def test_errors_say_what_is_wrong_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    key = Ed25519PrivateKey.generate()
    places = {
        "tmp": tmp_path,
        "bundle": variant(tmp_path / "bundle", "cli-1", None),
        "pub": public_key_text(key.public_key()),
        "gateway": config_file(tmp_path / "gateway.toml", ota_config(tmp_path, key)),
        "plain": config_file(tmp_path / "plain.toml", ota_config(tmp_path, key).model_copy(
            update={"models": None})),
    }  # fmt: skip

    code, _, err = model(capsys, *(arg.format(**places) for arg in argv))

    assert code == 2
    assert err.startswith("error: ") and message in err, err


# --- rollback -----------------------------------------------------------------------------


def ota_places(config: ApplianceConfig) -> OtaSettings:
    """Where the appliance keeps its model library and inbox with this config."""
    assert config.models is not None
    return ota_settings(config.models, Path(config.store.path))


def installed_library(directory: Path, key: Ed25519PrivateKey, versions: list[str]) -> list[str]:
    """A model library as the manager leaves it after installing these versions in order."""
    library = BundleLibrary(directory)
    library.open()
    ids = []
    for version in versions:
        staged = variant(library.new_staging_dir(), version, key)
        ids.append(load_bundle(staged).bundle_id)
        library.keep(staged, ASSET, ids[-1])
    library.save_slots(ASSET, Slots(history=list(ids)))
    return ids


async def test_rollback_while_the_appliance_is_stopped_changes_what_it_starts_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, config, gateway = ota_gateway(tmp_path)
    library = BundleLibrary(ota_places(config).directory)
    first, second = installed_library(library.root, key, ["ota-1", "ota-2"])
    rollback = ["rollback", "--config", gateway, "--asset", ASSET, "--reason", "too many alarms"]

    code, out, _ = model(capsys, *rollback)

    assert code == 0, out
    assert "the appliance is not running" in out
    assert f"no longer uses {second}" in out and f"it uses bundle {first}" in out
    assert library.slots(ASSET) == Slots(history=[first], rolled_back=[second])
    board = await run_appliance_until(
        config, lambda b: b.asset(ASSET).scores >= 1, "a window scored after the rollback"
    )
    assert board.models.active[ASSET] == first

    code, out, _ = model(capsys, *rollback)
    assert code == 0 and "it uses the configured model" in out
    code, out, _ = model(capsys, *rollback)
    assert code == 1
    refusal = f"refused: rollback {ASSET}: nothing to roll back: {ASSET} uses its configured model"
    assert out.strip() == refusal
    assert library.slots(ASSET) == Slots(history=[], rolled_back=[second, first])


async def test_rollback_while_the_appliance_runs_goes_through_its_inbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, config, gateway = ota_gateway(tmp_path)
    inbox = ota_places(config).inbox
    board = StatusBoard(config.gateway.id)
    stop = asyncio.Event()
    run = asyncio.create_task(run_appliance(config, stop=stop, board=board))
    await wait_until(lambda: board.asset(ASSET).scores >= 8, "8 windows scored", alive=run)
    configured = board.models.active[ASSET]
    await drop(inbox, "good.tar", archive(tmp_path / "bundles", "ota-2", key))
    await wait_until(lambda: result(inbox, "done", "good.tar") is not None, "install", alive=run)
    assert board.models.active[ASSET].startswith("ota-2-")
    rollback = ["model", "rollback", "--config", str(gateway), "--asset", ASSET]

    code = await asyncio.to_thread(main, [*rollback, "--reason", "drifts", "--wait", "30"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "the appliance is running: asked it to roll back" in out
    assert f"\naccepted: rollback {ASSET}: drifts; now the configured model\n" in out
    assert board.models.active[ASSET] == configured

    code = await asyncio.to_thread(main, rollback)
    out = capsys.readouterr().out
    assert code == 1 and "refused" in out and "nothing to roll back" in out
    stop.set()
    await run
    assert sorted(p.name for p in inbox.iterdir()) == ["done", "refused"]  # nothing left behind


# --- publish ------------------------------------------------------------------------------

Handler = Callable[[Command], Awaitable[dict[str, Any]]]


@pytest.fixture
def broker(make_broker: BrokerFactory) -> Broker:
    """TLS, passwords and the shipped ACL, with a gateway and the data team's user."""
    return make_broker(users=(GATEWAY, "gw-b", MODELLER))


@contextlib.asynccontextmanager
async def fake_gateway(broker: Broker, handler: Handler | None) -> AsyncIterator[list[Command]]:
    """Gateway gw-a's side of the protocol: takes commands on its command topic (persistent
    session, like the uplink) and answers each through `handler` (None: never answers)."""
    received: list[Command] = []

    async def handle(command: Command) -> dict[str, Any]:
        received.append(command)
        assert handler is not None
        return await handler(command)

    args = broker.client_args(GATEWAY, identifier=GATEWAY, clean_session=False)
    async with aiomqtt.Client(**args) as client:
        await client.subscribe(command_topic("appliance", GATEWAY), qos=1)

        async def serve() -> None:
            async for message in client.messages:
                if handler is None:
                    received.append(decode_command(message.payload))
                    continue
                reply = await answer(message.payload, handle, GATEWAY)
                assert reply is not None
                await client.publish(reply_topic("appliance", GATEWAY), reply, qos=1)

        task = asyncio.create_task(serve())
        try:
            yield received
        finally:
            await cancel_and_wait(task)


def publish_args(broker: Broker, tmp_path: Path, user: str = MODELLER) -> list[str]:
    password = tmp_path / f"{user}.password"
    password.write_text(broker.credentials[user].password + "\n")
    return [
        "model", "publish", "--gateway", GATEWAY,
        "--broker", f"mqtts://{broker.host}:{broker.port}",
        "--username", user, "--password-file", str(password), "--ca", str(broker.ca_path),
    ]  # fmt: skip


def outcome(accepted: bool, action: str, message: str, **more: Any) -> dict[str, Any]:
    return {"accepted": accepted, "action": action, "asset": ASSET, "message": message, **more}


@pytest.mark.parametrize("accepted", [True, False])
async def test_publish_sends_the_archive_and_reports_the_gateways_answer(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str], accepted: bool
) -> None:
    key = Ed25519PrivateKey.generate()
    bundle = variant(tmp_path / "bundle", "ota-7", key)
    bundle_id = load_bundle(bundle).bundle_id
    message = "installed; canary: 0 of 5 alarms" if accepted else "canary: 5 of 5 above"

    async def install(command: Command) -> dict[str, Any]:
        assert command.action == "install_model" and command.bundle is not None
        assert load_bundle(unpack(command.bundle, tmp_path / "received")).bundle_id == bundle_id
        return outcome(accepted, "install", message, model=bundle_id)

    async with fake_gateway(broker, install) as received:
        argv = [*publish_args(broker, tmp_path), str(bundle), "--wait", "60"]
        code = await asyncio.to_thread(main, argv)

    out = capsys.readouterr().out
    assert len(received) == 1
    assert f"publish install_model {received[0].id} to appliance/{GATEWAY}/command" in out
    assert f"bundle {bundle_id} for {ASSET}" in out
    verdict = "accepted" if accepted else "refused"
    assert f"gateway {GATEWAY}: {verdict}: install {ASSET} {bundle_id}: {message}" in out
    assert code == (0 if accepted else 1)


async def test_publish_rollback_sends_a_rollback_command(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def roll_back(command: Command) -> dict[str, Any]:
        assert command.action == "rollback_model" and command.asset == ASSET
        return outcome(True, "rollback", "rollback requested over MQTT; now ota-1-0123")

    async with fake_gateway(broker, roll_back) as received:
        argv = [*publish_args(broker, tmp_path), "--rollback", ASSET, "--wait", "60"]
        code = await asyncio.to_thread(main, argv)

    out = capsys.readouterr().out
    assert code == 0, out
    assert len(received) == 1 and f"rollback of {ASSET}" in out
    assert f"gateway {GATEWAY}: accepted: rollback {ASSET}: rollback requested" in out


async def test_publish_to_an_offline_gateway_times_out_and_the_broker_keeps_the_command(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = Ed25519PrivateKey.generate()
    async with fake_gateway(broker, None):
        pass  # subscribed once with a persistent session, then gone

    argv = [*publish_args(broker, tmp_path), str(variant(tmp_path / "b", "ota-8", key))]
    code = await asyncio.to_thread(main, [*argv, "--wait", "0.5"])

    out = capsys.readouterr().out
    assert code == 3, out
    assert f"no reply from gateway {GATEWAY} within 0.5 s" in out
    assert "applied when the gateway reconnects" in out
    async with fake_gateway(broker, None) as received:
        await wait_until(lambda: len(received) == 1, "the queued command after reconnecting")
    assert received[0].action == "install_model" and f" {received[0].id} " in out


async def test_publish_without_waiting_returns_once_the_broker_has_the_command(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with fake_gateway(broker, None) as received:
        argv = [*publish_args(broker, tmp_path), "--rollback", ASSET, "--wait", "0"]
        code = await asyncio.to_thread(main, argv)
        await wait_until(lambda: len(received) == 1, "the command at the gateway")

    out = capsys.readouterr().out
    assert code == 0 and "not waiting for the reply" in out


async def test_publish_as_a_user_the_acl_does_not_allow_to_command_fails_clearly(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with fake_gateway(broker, None) as received:
        argv = [*publish_args(broker, tmp_path, user="gw-b"), "--rollback", ASSET]
        code = await asyncio.to_thread(main, [*argv, "--wait", "30"])
        _, err = capsys.readouterr()
        assert code == 2
        assert "may user gw-b write appliance/+/command?" in err
        assert received == []
