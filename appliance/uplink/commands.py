"""Commands to one gateway over MQTT (pure): the data team's `appliance model publish` sends a
signed bundle (or a rollback) on the gateway's command topic; the gateway answers on its reply
topic. Both are three levels deep, so receivers' `<prefix>/+/+/+` data subscription never sees
them. The broker's ACL decides who may command (receiver/mosquitto/acl.conf); the bundle's own
signature decides what may score."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import structlog

from appliance.uplink.schema import (
    PROTOCOL_VERSION,
    SchemaError,
    check_name,
    check_prefix,
    check_version,
    dump_json,
    load_json,
)

log = structlog.get_logger(__name__)

Action = Literal["install_model", "rollback_model"]
ACTIONS: Final = ("install_model", "rollback_model")
MAX_ID_CHARS = 64


def command_topic(prefix: str, gateway: str) -> str:
    return f"{check_prefix(prefix)}/{check_name(gateway, 'gateway')}/command"


def reply_topic(prefix: str, gateway: str) -> str:
    return f"{check_prefix(prefix)}/{check_name(gateway, 'gateway')}/reply"


@dataclass(frozen=True)
class Command:
    id: str
    action: Action
    bundle: bytes | None = None
    """install_model: the bundle archive (appliance/ota/archive.py)."""
    asset: str | None = None
    """rollback_model: the asset whose model is rolled back."""


CommandHandler = Callable[[Command], Awaitable[dict[str, Any]]]
"""Carries out a command; returns the outcome (JSON-ready) for the reply."""


async def answer(payload: bytes, handler: CommandHandler, gateway: str) -> bytes | None:
    """The reply to one command payload; a command that does not decode is refused in the
    reply when its id can be read, else only logged (nobody to answer)."""
    try:
        command = decode_command(payload)
    except SchemaError as exc:
        log.warning("command_refused", reason=str(exc))
        refused_id = command_id(payload)
        if refused_id is None:
            return None
        return encode_reply(gateway, refused_id, {"accepted": False, "message": str(exc)})
    return encode_reply(gateway, command.id, await handler(command))


def encode_command(command: Command) -> bytes:
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": command.id, "action": command.action}
    if command.bundle is not None:
        body["bundle"] = base64.b64encode(command.bundle).decode("ascii")
    if command.asset is not None:
        body["asset"] = command.asset
    return dump_json(body, "command")


def decode_command(payload: bytes) -> Command:
    """SchemaError naming what is wrong (the gateway answers with it when it can read an id)."""
    body = load_json(payload, "command")
    check_version(body, "command")
    command_id = _id(body.get("id"))
    action = body.get("action")
    if action == "install_model":
        return Command(command_id, "install_model", bundle=_bundle(body.get("bundle")))
    if action == "rollback_model":
        return Command(command_id, "rollback_model", asset=check_name(body.get("asset"), "asset"))
    raise SchemaError(f"command {command_id}: action must be one of {', '.join(ACTIONS)}")


def command_id(payload: bytes) -> str | None:
    """The id of a command that failed to decode, to address the refusal; None if unreadable."""
    try:
        return _id(load_json(payload, "command").get("id"))
    except SchemaError:
        return None


def encode_reply(gateway: str, command_id: str, outcome: dict[str, Any]) -> bytes:
    body = {"v": PROTOCOL_VERSION, "gateway": gateway, "id": command_id, "outcome": outcome}
    return dump_json(body, f"reply of {gateway}")


@dataclass(frozen=True)
class Reply:
    gateway: str
    id: str
    outcome: dict[str, Any]


def decode_reply(payload: bytes) -> Reply:
    body = load_json(payload, "reply")
    check_version(body, "reply")
    outcome = body.get("outcome")
    if not isinstance(outcome, dict):
        raise SchemaError("reply: outcome must be an object")
    return Reply(check_name(body.get("gateway"), "reply: gateway"), _id(body.get("id")), outcome)


def _id(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        raise SchemaError(f"command id must be a string of 1-{MAX_ID_CHARS} characters")
    return value


def _bundle(value: object) -> bytes:
    if not isinstance(value, str):
        raise SchemaError("install_model: bundle must be the archive in base64")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SchemaError("install_model: bundle is not valid base64") from None
