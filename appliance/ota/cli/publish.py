"""`appliance model publish`: a signed bundle (or a rollback) sent to one gateway over MQTT,
with the gateway config's rules for the broker connection, and its reply awaited."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
from pathlib import Path
from typing import Any

import aiomqtt
from pydantic import ValidationError

from appliance.config import UplinkConfig, parse_broker_url
from appliance.detect.bundle import SIGNATURE_FILE, load_bundle
from appliance.errors import BundleError, ConfigError
from appliance.net.mqtt import describe_failure
from appliance.ota.cli.answers import EXIT_NO_ANSWER, EXIT_OK, add_wait, print_outcome
from appliance.ota.cli.bundle_files import archive_bytes, describe_bundle, unpacked
from appliance.uplink.commands import (
    Command,
    Reply,
    command_topic,
    decode_reply,
    encode_command,
    reply_topic,
)
from appliance.uplink.connection import tls_context
from appliance.uplink.errors import SchemaError, UplinkError
from appliance.uplink.schema import check_name
from appliance.uplink.settings import UplinkSettings, uplink_settings

OPTIONS = {
    "username": "--username",
    "password_file": "--password-file",
    "ca_file": "--ca",
    "client_cert": "--client-cert",
    "client_key": "--client-key",
    "topic_prefix": "--prefix",
}
"""The [uplink] keys `publish` takes, and its options for them."""


def add_publish(actions: Any) -> None:
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
    publish.add_argument(
        "--prefix", default="appliance", help="topic prefix (default: %(default)s)"
    )
    publish.add_argument(
        "--allow-downgrade",
        action="store_true",
        help="install even if the bundle's version is older than the asset's active one",
    )
    add_wait(publish, 120.0, "the gateway's reply")
    publish.set_defaults(handler=_publish)


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


def as_options(message: str) -> str:
    """A message about [uplink] keys, in terms of the options."""
    message = message.replace("uplink.", "")
    for key, option in OPTIONS.items():
        message = message.replace(key, option)
    return message


async def exchange(settings: UplinkSettings, command: Command, wait_s: float) -> Reply | None:
    """Subscribe to the reply topic, publish the command, wait for the reply with its id (None
    when none came in time); UplinkError saying why the broker connection failed."""
    broker = settings.broker
    client = aiomqtt.Client(
        broker.host,
        broker.port,
        username=settings.username,
        password=settings.password,
        identifier=f"appliance-model-{secrets.token_hex(6)}",
        clean_session=True,
        timeout=settings.connect_timeout_s,
        tls_context=tls_context(settings) if broker.tls else None,
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
        reason = describe_failure(exc, broker.host, broker.port, connected=connected)
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
