"""`appliance model ...`: over-the-air models from the command line.

On the data team's workstation: `keygen` (the signing key pair), `sign` (a trained bundle),
`verify` (every check a gateway makes before its canary) and `publish` (a bundle or a rollback,
over MQTT to one gateway, waiting for its answer). On the gateway: `rollback` (through the
running appliance's inbox, or straight in the model library when it is stopped).

Exit codes: 0 done or accepted, 1 refused (the reason is printed), 2 error (bad arguments or
files, "error: ..."), 3 no answer in time."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from appliance.config import ApplianceConfig, UplinkConfig, load_config, parse_broker_url
from appliance.detect.bundle import SIGNATURE_FILE, ModelBundle, load_bundle
from appliance.detect.runtime import DEFAULT_BACKEND, open_runtime
from appliance.errors import ApplianceError, BundleError, ConfigError
from appliance.features.from_config import build_feature_engines
from appliance.ota.archive import pack, unpack
from appliance.ota.library import BundleLibrary
from appliance.ota.manager import (
    LOCK_FILE,
    REQUEST_SUFFIX,
    RESULT_SUFFIX,
    OtaSettings,
    ota_settings,
)
from appliance.ota.signing import (
    generate_key,
    load_private_key,
    parse_public_key,
    public_key_text,
    sign_bundle,
    verify_signature,
)
from appliance.ota.vetting import check_asset, check_features, without_staging_path
from appliance.uplink.commands import (
    Command,
    Reply,
    command_topic,
    decode_reply,
    encode_command,
    reply_topic,
)
from appliance.uplink.errors import SchemaError, UplinkError
from appliance.uplink.publisher import describe_failure, tls_context
from appliance.uplink.schema import check_name
from appliance.uplink.settings import UplinkSettings, uplink_settings

EXIT_OK, EXIT_REFUSED, EXIT_NO_ANSWER = 0, 1, 3
POLL_S = 0.1
OutcomeFields = Mapping[str, Any]
"""What the manager answers (Outcome.to_dict): accepted, action, asset, model, message."""


def add_model_commands(commands: Any) -> None:
    model = commands.add_parser(
        "model",
        help="over-the-air models: keygen, sign, verify, publish, rollback",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = model.add_subparsers(required=True, metavar="ACTION")
    _add_keygen(actions)
    _add_sign(actions)
    _add_verify(actions)
    _add_publish(actions)
    _add_rollback(actions)


# --- keygen -------------------------------------------------------------------------------


def _add_keygen(actions: Any) -> None:
    keygen = actions.add_parser(
        "keygen",
        help="make a signing key pair",
        description="Write a new Ed25519 private key (PEM, mode 0600; refused if PATH exists) "
        "and its public key as PATH.pub. The private key stays on the workstation that signs; "
        "the public key goes into each gateway's [models] public_keys.",
    )
    keygen.add_argument("--out", type=Path, required=True, metavar="PATH", help="private key")
    keygen.set_defaults(handler=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    try:
        public = generate_key(args.out)
    except OSError as exc:
        raise BundleError(f"{args.out}: cannot write the key: {exc.strerror or exc}") from None
    print(f"private key: {args.out} (mode 0600; keep it here, never on a gateway)")
    print(f"public key:  {args.out}.pub")
    print(public)
    print("Gateways accept bundles signed with it once their config trusts it:")
    print(f'  [models]\n  public_keys = ["{public}"]')
    return EXIT_OK


# --- sign ---------------------------------------------------------------------------------


def _add_sign(actions: Any) -> None:
    sign = actions.add_parser(
        "sign",
        help="sign a bundle directory (and pack it for sending)",
        description="Check that the bundle loads (manifest, model sha256), then write "
        "signature.ed25519 into it; with --archive also write the .tar it travels in.",
    )
    sign.add_argument("bundle_dir", type=Path, metavar="BUNDLE_DIR")
    sign.add_argument("--key", type=Path, required=True, metavar="PRIVATE.pem")
    sign.add_argument("--archive", type=Path, metavar="OUT.tar", help="also write the archive")
    sign.set_defaults(handler=_sign)


def _sign(args: argparse.Namespace) -> int:
    key = load_private_key(args.key)
    try:
        bundle = load_bundle(args.bundle_dir)
        if bundle.manifest.asset is None:
            raise BundleError("the manifest names no asset; gateways refuse such a bundle")
        signature = sign_bundle(args.bundle_dir, key)
    except (BundleError, OSError) as exc:
        raise BundleError(f"not signed: {exc}") from None
    print(f"signed {args.bundle_dir}: {describe_bundle(bundle)}")
    print(f"  signature:  {signature}")
    print(f"  signed by:  {public_key_text(key.public_key())} (listed in [models] public_keys?)")
    if args.archive is not None:
        data = pack(args.bundle_dir)
        write_atomically(args.archive, data)
        print(f"  archive:    {args.archive} ({len(data)} bytes)")
    return EXIT_OK


def describe_bundle(bundle: ModelBundle) -> str:
    manifest = bundle.manifest
    return (
        f"bundle {bundle.bundle_id} for {manifest.asset or '(no asset)'}, "
        f"{manifest.n_features} features, model sha256 {manifest.model_sha256}"
    )


def write_atomically(path: Path, data: bytes) -> None:
    hidden = path.with_name(f".{path.name}.tmp")
    try:
        hidden.write_bytes(data)
        os.replace(hidden, path)
    except OSError as exc:
        raise ApplianceError(f"{path}: cannot write: {exc.strerror or exc}") from None


# --- verify -------------------------------------------------------------------------------


def _add_verify(actions: Any) -> None:
    verify = actions.add_parser(
        "verify",
        help="run a gateway's checks on a bundle (exit 0 ok, 1 refused)",
        description="The checks a gateway makes before its canary: archive, signature, "
        "manifest and model sha256, runtime load; with --config also the asset and the "
        "feature names that gateway produces. Each is printed OK or with the reason.",
    )
    verify.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle directory or .tar")
    verify.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="KEY_OR_FILE",
        help="a trusted public key (base64) or a file holding one, e.g. from keygen (repeatable)",
    )
    verify.add_argument(
        "--config",
        type=Path,
        metavar="gateway.toml",
        help="check against this gateway: its assets, their features, its [models] keys",
    )
    verify.set_defaults(handler=_verify)


@dataclass(frozen=True)
class GatewayView:
    """What a gateway's config asks of a bundle, computed without its hardware."""

    name: str
    keys: tuple[Ed25519PublicKey, ...]
    feature_names: dict[str, tuple[str, ...]]
    backends: dict[str, str]


def gateway_view(path: Path) -> GatewayView:
    config = load_config(path)
    engines = build_feature_engines(config)
    return GatewayView(
        config.gateway.id,
        models_settings(config, path).keys,
        {asset: engine.feature_names for asset, engine in engines.items()},
        {asset.name: asset.model.backend for asset in config.assets},
    )


def models_settings(config: ApplianceConfig, path: Path) -> OtaSettings:
    if config.models is None:
        raise ConfigError(f"{path}: no [models] table: this gateway takes no over-the-air models")
    return ota_settings(config.models, Path(config.store.path))


def public_keys(values: Sequence[str]) -> list[Ed25519PublicKey]:
    keys = []
    for value in values:
        path = Path(value)
        try:
            text = path.read_text(encoding="utf-8") if path.is_file() else value
        except (OSError, UnicodeDecodeError) as exc:
            raise BundleError(f"--public-key {value}: cannot read: {exc}") from None
        keys.append(parse_public_key(text, f"--public-key {value}"))
    return keys


def _verify(args: argparse.Namespace) -> int:
    gateway = None if args.config is None else gateway_view(args.config)
    keys = public_keys(args.public_key) + list(gateway.keys if gateway else ())
    if not keys:
        raise ConfigError("verify: give --public-key (repeatable) or --config with [models]")
    data = archive_bytes(args.bundle)
    print(f"verify {args.bundle}" + (f" for gateway {gateway.name}" if gateway else ""))
    checks = Checks()
    with contextlib.ExitStack() as stack:
        directory = checks.run("archive", lambda: stack.enter_context(unpacked(data)), _files)
        if directory is not None:
            checks.directory = directory
            verify_bundle(checks, directory, keys, gateway)
    if checks.failed:
        print(f"refused: {', '.join(checks.failed)} failed")
        return EXIT_REFUSED
    print("OK: a gateway would accept it up to its canary (which needs its stored windows)")
    return EXIT_OK


def verify_bundle(
    checks: Checks, directory: Path, keys: Sequence[Ed25519PublicKey], gateway: GatewayView | None
) -> None:
    """The signature, then the bundle and what depends on it: every check that can run."""
    checks.run("signature", lambda: verify_signature(directory, keys), lambda i: _signer(keys[i]))
    bundle = checks.run("bundle", lambda: load_bundle(directory), describe_bundle)
    if bundle is None:
        return
    asset = checks.run("asset", lambda: asset_of(bundle, gateway), _for_gateway(gateway))
    if asset is not None and gateway is not None:
        check = partial(check_features, bundle, asset, gateway.feature_names[asset])
        checks.run("features", check, lambda _: f"{asset} produces every feature the model takes")
    backend = gateway.backends.get(asset or "", DEFAULT_BACKEND) if gateway else DEFAULT_BACKEND
    loaded = f"{backend} builds the interpreter and runs a batch"
    checks.run("runtime", lambda: open_runtime(bundle, backend), lambda _: loaded)


def asset_of(bundle: ModelBundle, gateway: GatewayView | None) -> str:
    """The asset the bundle names (a gateway refuses a bundle that names none); with a
    gateway, one of its assets."""
    asset = bundle.manifest.asset
    return check_asset(bundle, gateway.feature_names if gateway else {asset or "": ()})


def _for_gateway(gateway: GatewayView | None) -> Callable[[str], str]:
    if gateway is None:
        return lambda asset: f"{asset} (give --config to check it against a gateway)"
    return lambda asset: f"{asset} is an asset of gateway {gateway.name}"


def _signer(key: Ed25519PublicKey) -> str:
    return f"signed by {public_key_text(key)}"


def _files(directory: Path) -> str:
    return ", ".join(sorted(path.name for path in directory.iterdir()))


T = TypeVar("T")


class Checks:
    """Runs named checks, printing each as OK with what it found, or FAILED with the reason."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.directory: Path | None = None
        """Where the archive was unpacked: left out of the reasons (it means nothing)."""

    def run(self, name: str, check: Callable[[], T], describe: Callable[[T], str]) -> T | None:
        try:
            found = check()
        except BundleError as exc:
            self.failed.append(name)
            where = self.directory
            reason = str(exc) if where is None else without_staging_path(exc, where)
            print(f"  {name:<10} FAILED  {reason}")
            return None
        print(f"  {name:<10} OK      {describe(found)}")
        return found


def archive_bytes(path: Path) -> bytes:
    """The archive as it travels: a bundle directory is packed, a .tar read."""
    if path.is_dir():
        return pack(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror or exc}") from None


@contextlib.contextmanager
def unpacked(data: bytes) -> Iterator[Path]:
    """The archive's files in a temporary bundle directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="appliance-model-") as temporary:
        yield unpack(data, Path(temporary) / "bundle")


# --- publish ------------------------------------------------------------------------------


def _add_publish(actions: Any) -> None:
    publish = actions.add_parser(
        "publish",
        help="send a signed bundle (or a rollback) to a gateway over MQTT",
        description="Publish an install_model command with the bundle (or, with --rollback, "
        "a rollback_model command) on <prefix>/<gateway>/command, QoS 1, and wait for the "
        "gateway's reply on <prefix>/<gateway>/reply. Exit 0 accepted, 1 refused, 3 no reply "
        "in time (the broker keeps the command for the gateway's persistent session: it is "
        "applied when the gateway reconnects).",
    )
    what = publish.add_mutually_exclusive_group(required=True)
    what.add_argument("bundle", nargs="?", type=Path, metavar="BUNDLE", help="signed dir or .tar")
    what.add_argument("--rollback", metavar="ASSET", help="roll this asset's model back instead")
    publish.add_argument("--gateway", required=True, metavar="ID", help="the gateway's id")
    publish.add_argument(
        "--broker",
        required=True,
        metavar="URL",
        help="mqtts://host[:8883] (plain mqtt:// only to this machine)",
    )
    publish.add_argument("--username", help="MQTT user (its ACL must let it write commands)")
    publish.add_argument("--password-file", metavar="FILE", help="the user's password, one line")
    publish.add_argument("--client-cert", metavar="FILE", help="client certificate (PEM)")
    publish.add_argument("--client-key", metavar="FILE", help="its key, unless in --client-cert")
    publish.add_argument("--ca", metavar="FILE", help="CA that signed the broker's certificate")
    publish.add_argument("--prefix", default="appliance", help="topic prefix (default appliance)")
    publish.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="install even if the bundle's version is older than the asset's active one",
    )
    _add_wait(publish, 120.0, "the gateway's reply")
    publish.set_defaults(handler=_publish)


def _add_wait(parser: argparse.ArgumentParser, default: float, what: str) -> None:
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=default,
        metavar="SECONDS",
        help=f"how long to wait for {what} (default {default:g}; 0: do not wait)",
    )


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def _publish(args: argparse.Namespace) -> int:
    settings = broker_settings(args)
    command_id = secrets.token_hex(8)
    if args.rollback is not None:
        command = Command(command_id, "rollback_model", asset=check_name(args.rollback, "asset"))
        what = f"rollback of {args.rollback}"
    else:
        data = archive_bytes(args.bundle)
        what = publishable(data)
        command = Command(
            command_id, "install_model", bundle=data, allow_downgrade=args.allow_downgrade
        )
    topic = command_topic(settings.prefix, settings.gateway)
    print(f"publish {command.action} {command_id} to {topic}: {what}")
    if args.wait > 0:
        replies = reply_topic(settings.prefix, settings.gateway)
        print(f"waiting up to {args.wait:g} s for the reply on {replies}")
    reply = asyncio.run(exchange(settings, command, args.wait))
    if args.wait == 0:
        print("published; not waiting for the reply")
        return EXIT_OK
    if reply is None:
        print(
            f"no reply from gateway {settings.gateway} within {args.wait:g} s: it may be offline "
            "or still at work. The broker keeps the command for the gateway's "
            "persistent session; it is applied when the gateway reconnects."
        )
        return EXIT_NO_ANSWER
    return print_outcome(reply.outcome, f"gateway {reply.gateway}")


def publishable(data: bytes) -> str:
    """What is about to be sent; BundleError if a gateway would refuse it for sure."""
    try:
        with unpacked(data) as directory:
            if not (directory / SIGNATURE_FILE).exists():
                raise BundleError("unsigned: sign it first (appliance model sign)")
            bundle = load_bundle(directory)
    except BundleError as exc:
        raise BundleError(f"not published: {exc}") from None
    return f"{describe_bundle(bundle)} ({len(data)} bytes)"


def broker_settings(args: argparse.Namespace) -> UplinkSettings:
    """The gateway config's rules for a broker connection, applied to the options."""
    try:
        address = parse_broker_url(args.broker)
        if not address.tls and not address.is_loopback:
            raise ValueError(
                f"plain mqtt:// to {address.host} sends the bundle and the password in clear: "
                "use mqtts://"
            )
        options = {key: getattr(args, opt[2:].replace("-", "_")) for key, opt in OPTIONS.items()}
        return uplink_settings(args.gateway, UplinkConfig(broker=args.broker, **options))
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise ConfigError(as_options("; ".join(problems).removeprefix(": "))) from None
    except ValueError as exc:
        raise ConfigError(f"--broker: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(as_options(str(exc))) from None


OPTIONS = {
    "username": "--username",
    "password_file": "--password-file",
    "ca_file": "--ca",
    "client_cert": "--client-cert",
    "client_key": "--client-key",
    "topic_prefix": "--prefix",
}
"""The [uplink] keys `publish` takes, and its options for them."""


def as_options(message: str) -> str:
    """A message about [uplink] keys, in terms of the options."""
    message = message.replace("uplink.", "")
    for key, option in OPTIONS.items():
        message = message.replace(key, option)
    return message


async def exchange(settings: UplinkSettings, command: Command, wait_s: float) -> Reply | None:
    """Subscribe to the reply topic, publish the command, wait for the reply with its id (None
    when none came in time); UplinkError saying why the broker connection failed."""
    tls = tls_context(settings) if settings.broker.tls else None
    client = aiomqtt.Client(
        settings.broker.host,
        settings.broker.port,
        username=settings.username,
        password=settings.password,
        identifier=f"appliance-model-{secrets.token_hex(6)}",
        clean_session=True,
        timeout=settings.connect_timeout_s,
        tls_context=tls,
    )
    connected = False
    try:
        async with client:
            connected = True
            if wait_s > 0:
                await client.subscribe(reply_topic(settings.prefix, settings.gateway), qos=1)
            topic = command_topic(settings.prefix, settings.gateway)
            await client.publish(topic, encode_command(command), qos=1, retain=False)
            return None if wait_s == 0 else await reply_to(client, command.id, wait_s)
    except aiomqtt.MqttError as exc:
        reason = describe_failure(exc, settings, connected=connected)
        raise UplinkError(f"{reason}{_acl_hint(settings) if connected else ''}") from None


async def reply_to(client: aiomqtt.Client, command_id: str, wait_s: float) -> Reply | None:
    try:
        async with asyncio.timeout(wait_s):
            async for message in client.messages:
                with contextlib.suppress(SchemaError):  # not a reply anyone can read
                    reply = decode_reply(message.payload)
                    if reply.id == command_id:
                        return reply
    except TimeoutError:
        pass
    return None


def _acl_hint(settings: UplinkSettings) -> str:
    return (
        f" (mosquitto closes the connection of a client its ACL does not allow to publish: may "
        f"user {settings.username} write {settings.prefix}/+/command? see "
        "receiver/mosquitto/acl.conf)"
    )


def print_outcome(outcome: OutcomeFields, who: str = "") -> int:
    accepted = outcome.get("accepted") is True
    what = " ".join(str(outcome[k]) for k in ("action", "asset", "model") if outcome.get(k))
    verdict = "accepted" if accepted else "refused"
    message = outcome.get("message") or "(no message)"
    print(f"{who}{': ' if who else ''}{verdict}: {what or '-'}: {message}")
    return EXIT_OK if accepted else EXIT_REFUSED


# --- rollback -----------------------------------------------------------------------------


def _add_rollback(actions: Any) -> None:
    rollback = actions.add_parser(
        "rollback",
        help="on the gateway: go back to an asset's previous model",
        description="If the appliance runs (it holds the lock on <models directory>/.lock), "
        "ask it through its inbox and wait for the outcome; if not, change the model "
        "library so the asset starts with its previous bundle (or its configured model). "
        "Exit 0 done, 1 refused (e.g. nothing to roll back), 3 no outcome in time.",
    )
    rollback.add_argument("--config", type=Path, required=True, metavar="gateway.toml")
    rollback.add_argument("--asset", required=True, metavar="NAME")
    rollback.add_argument("--reason", default="rollback requested with appliance model rollback")
    _add_wait(rollback, 30.0, "a running appliance's outcome")
    rollback.set_defaults(handler=_rollback)


def _rollback(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    settings = models_settings(config, args.config)
    assets = [asset.name for asset in config.assets]
    if args.asset not in assets:
        raise ConfigError(f"{args.config}: no asset {args.asset!r} (it has {', '.join(assets)})")
    if not settings.directory.is_dir():
        return print_outcome(_nothing_to_roll_back(args.asset))
    with library_lock(settings.directory) as held:
        if held:
            return roll_back_in_library(BundleLibrary(settings.directory), args.asset)
    return roll_back_through_inbox(settings.inbox, args.asset, args.reason, args.wait)


@contextlib.contextmanager
def library_lock(directory: Path) -> Iterator[bool]:
    """True (and held) when no appliance holds the library's lock, False when one runs."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ApplianceError(f"{directory / LOCK_FILE}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)


def roll_back_in_library(library: BundleLibrary, asset: str) -> int:
    """The appliance is stopped: set the active bundle aside, as its manager would."""
    slots = library.slots(asset)
    if slots.active is None:
        return print_outcome(_nothing_to_roll_back(asset))
    slots.rolled_back.append(slots.history.pop())
    try:
        library.save_slots(asset, slots)
    except OSError as exc:
        raise ApplianceError(f"{library.root / asset}: cannot save: {exc}") from None
    uses = f"bundle {slots.active}" if slots.active else "the configured model"
    print(
        f"the appliance is not running: {asset} no longer uses {slots.rolled_back[-1]}; from "
        f"its next start it uses {uses} (checked again then)"
    )
    return EXIT_OK


def _nothing_to_roll_back(asset: str) -> OutcomeFields:
    message = f"nothing to roll back: {asset} uses its configured model"
    return {"accepted": False, "action": "rollback", "asset": asset, "message": message}


def roll_back_through_inbox(inbox: Path, asset: str, reason: str, wait_s: float) -> int:
    """The appliance runs: drop a request in its inbox and wait for the outcome it files."""
    name = f"rollback-{asset}-{secrets.token_hex(4)}{REQUEST_SUFFIX}"
    request = {"action": "rollback", "asset": asset, "reason": reason}
    write_atomically(inbox / name, json.dumps(request).encode() + b"\n")
    print(f"the appliance is running: asked it to roll back {asset} ({inbox / name})")
    if wait_s == 0:
        return EXIT_OK
    outcome = wait_for_result(inbox, name, wait_s)
    if outcome is None:
        print(
            f"no outcome within {wait_s:g} s: the request stays in the inbox and is applied "
            f"when the appliance gets to it (delete {inbox / name} to cancel)"
        )
        return EXIT_NO_ANSWER
    return print_outcome(outcome)


def wait_for_result(inbox: Path, name: str, wait_s: float) -> OutcomeFields | None:
    places = [inbox / folder / f"{name}{RESULT_SUFFIX}" for folder in ("done", "refused")]
    deadline = time.monotonic() + wait_s
    while True:
        for path in places:
            with contextlib.suppress(OSError, ValueError):  # not there, or still being written
                outcome = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(outcome, dict):
                    return outcome
        if time.monotonic() > deadline:
            return None
        time.sleep(POLL_S)
