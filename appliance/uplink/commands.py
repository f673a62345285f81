"""Commands to one gateway over MQTT (pure): the data team's `appliance model publish` sends a
signed bundle (or a rollback), and `appliance-receiver fetch` asks for an asset's records of a
time range (PROTOCOL.md, "Fetch on demand"), on the gateway's command topic; the gateway answers
on its reply topic. Both are three levels deep, so receivers' `<prefix>/+/+/+` data
subscription never sees them. The broker's ACL decides who may command
(receiver/mosquitto/acl.conf); the bundle's own signature decides what may score."""

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
from appliance.uplink.schema.values import check_int, check_time

log = structlog.get_logger(__name__)

Action = Literal["install_model", "rollback_model", "fetch_records"]
ACTIONS: Final = ("install_model", "rollback_model", "fetch_records")
RELEASE_ACTIONS: Final = ("install_release", "rollback_release")
"""Appliance updates (appliance/ota/release/): a signed release bundle, or back to the release
before."""
ReleaseAction = Literal["install_release", "rollback_release"]
MAX_ID_CHARS = 64
MAX_COMMAND_BYTES = 12 * 1024 * 1024
"""An 8 MiB bundle archive in base64 (10.7 MiB) and the rest of the command."""
FIELDS: Final = frozenset(
    {"v", "id", "action", "bundle", "asset", "allow_downgrade", "since", "until", "max_records"}
)
MAX_FETCH_RECORDS = 10_000_000
"""The highest max_records a fetch may ask for (the gateway's own bound is usually lower)."""


def command_topic(prefix: str, gateway: str) -> str:
    return f"{check_prefix(prefix)}/{check_name(gateway, 'gateway')}/command"


def reply_topic(prefix: str, gateway: str) -> str:
    return f"{check_prefix(prefix)}/{check_name(gateway, 'gateway')}/reply"


@dataclass(frozen=True)
class Command:
    id: str
    action: Action | ReleaseAction
    bundle: bytes | None = None
    """install_model: the bundle archive (appliance/ota/archive.py)."""
    asset: str | None = None
    """rollback_model: the asset whose model is rolled back; fetch_records: whose records."""
    allow_downgrade: bool = False
    """install_model: install even if the bundle's version is older than the active one."""
    since: float | None = None
    """fetch_records: the records with since <= t < until (UTC epoch seconds)."""
    until: float | None = None
    max_records: int | None = None
    """fetch_records: refuse rather than send more records than this (None: the gateway's
    bound)."""


@dataclass(frozen=True)
class RefusedCommand:
    """A payload on the command topic that is not a command: the handler records the refusal
    (counted and shown like any other) and its answer is sent when the id could be read."""

    id: str | None
    reason: str


CommandHandler = Callable[[Command | RefusedCommand], Awaitable[dict[str, Any]]]
"""Carries out a command (or records a refusal); returns the outcome (JSON-ready) for the
reply."""


async def answer(payload: bytes, handler: CommandHandler, gateway: str) -> bytes | None:
    """The reply to one command payload (None: its id could not be read, nobody to answer).
    Raises nothing but a cancellation: a handler that fails is answered as a refusal, so no
    payload can end the uplink's connection."""
    command = read_command(payload)
    if isinstance(command, RefusedCommand):
        log.warning("command_refused", id=command.id, reason=command.reason)
    try:
        outcome = await handler(command)
    except Exception as exc:
        log.exception("command_failed", id=command.id)
        outcome = {"accepted": False, "message": f"internal error: {type(exc).__name__}"}
    if command.id is None:
        return None
    try:
        return encode_reply(gateway, command.id, outcome)
    except SchemaError as exc:
        log.error("command_reply_unencodable", id=command.id, reason=str(exc))
        message = "the outcome could not be encoded as JSON (see the gateway's log)"
        return encode_reply(gateway, command.id, {"accepted": False, "message": message})


def encode_command(command: Command) -> bytes:
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": command.id, "action": command.action}
    if command.bundle is not None:
        body["bundle"] = base64.b64encode(command.bundle).decode("ascii")
    if command.asset is not None:
        body["asset"] = command.asset
    if command.allow_downgrade:
        body["allow_downgrade"] = True
    for key in ("since", "until", "max_records"):
        if getattr(command, key) is not None:
            body[key] = getattr(command, key)
    return dump_json(body, "command")


def read_command(payload: bytes) -> Command | RefusedCommand:
    """The command, or the refusal naming what is wrong (with the id when it can be read).
    Total: whatever the payload holds, this returns."""
    try:
        body = _load(payload)
    except SchemaError as exc:
        return RefusedCommand(None, str(exc))
    try:
        return _command(body)
    except SchemaError as exc:
        return RefusedCommand(_readable_id(body), str(exc))
    except Exception as exc:  # a check nobody expected to fail: still a refusal
        log.exception("command_unreadable")
        return RefusedCommand(_readable_id(body), f"command: unreadable ({type(exc).__name__})")


def decode_command(payload: bytes) -> Command:
    """SchemaError naming what is wrong."""
    command = read_command(payload)
    if isinstance(command, RefusedCommand):
        raise SchemaError(command.reason)
    return command


def _load(payload: bytes) -> dict[str, Any]:
    if not isinstance(payload, bytes | bytearray):
        raise SchemaError("command: the payload is not bytes", "bad_json")
    if len(payload) > MAX_COMMAND_BYTES:
        raise SchemaError(
            f"command: {len(payload)} bytes, more than {MAX_COMMAND_BYTES}", "too_big"
        )
    try:
        return load_json(bytes(payload), "command")
    except SchemaError:
        raise
    except RecursionError:
        raise SchemaError("command: JSON nested too deeply", "bad_json") from None
    except Exception as exc:  # the decoder's own limits, whatever they raise
        raise SchemaError(
            f"command: not a JSON object ({type(exc).__name__})", "bad_json"
        ) from None


def _command(body: dict[str, Any]) -> Command:
    check_version(body, "command")
    command_id = _id(body.get("id"))
    unknown = sorted(str(key)[:MAX_ID_CHARS] for key in body.keys() - FIELDS)
    if unknown:
        raise SchemaError(f"command {command_id}: unknown field(s) {', '.join(unknown[:5])}")
    action = body.get("action")
    if action in RELEASE_ACTIONS:
        return _release(body, command_id, action)
    if action == "install_model":
        return Command(
            command_id,
            "install_model",
            bundle=_bundle(body.get("bundle"), command_id),
            allow_downgrade=_flag(body.get("allow_downgrade", False), command_id),
        )
    if action == "rollback_model":
        return Command(command_id, "rollback_model", asset=_asset(body, command_id))
    if action == "fetch_records":
        return _fetch(body, command_id)
    raise SchemaError(f"command {command_id}: action must be one of {', '.join(ACTIONS)}")


def _asset(body: dict[str, Any], command_id: str) -> str:
    asset = check_name(body.get("asset"), f"command {command_id}: asset")
    if len(asset) > MAX_ID_CHARS:
        raise SchemaError(f"command {command_id}: asset longer than {MAX_ID_CHARS}")
    return asset


def _fetch(body: dict[str, Any], command_id: str) -> Command:
    where = f"command {command_id}"
    since = check_time(body.get("since"), f"{where}: since")
    until = check_time(body.get("until"), f"{where}: until")
    if not since < until:
        raise SchemaError(f"{where}: since ({since}) must be before until ({until})")
    max_records = body.get("max_records")
    if max_records is not None:
        max_records = check_int(max_records, f"{where}: max_records")
        if not 1 <= max_records <= MAX_FETCH_RECORDS:
            raise SchemaError(f"{where}: max_records must be 1 to {MAX_FETCH_RECORDS}")
    asset = _asset(body, command_id)
    return Command(command_id, "fetch_records", asset=asset, since=since, until=until,
                   max_records=max_records)  # fmt: skip


def _release(body: dict[str, Any], command_id: str, action: ReleaseAction) -> Command:
    if action == "install_release":
        return Command(command_id, action, bundle=_bundle(body.get("bundle"), command_id))
    return Command(command_id, action)


def _readable_id(body: dict[str, Any]) -> str | None:
    try:
        return _id(body.get("id"))
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
    if not value.isprintable() or not value.isascii():
        raise SchemaError("command id must be printable ASCII")
    return value


def _flag(value: object, command_id: str) -> bool:
    if not isinstance(value, bool):
        raise SchemaError(f"command {command_id}: allow_downgrade must be true or false")
    return value


def _bundle(value: object, command_id: str) -> bytes:
    if not isinstance(value, str):
        raise SchemaError(f"command {command_id}: bundle must be the archive in base64")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SchemaError(f"command {command_id}: bundle is not valid base64") from None
