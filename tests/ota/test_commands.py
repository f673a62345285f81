"""The command topic's schema (appliance/uplink/commands.py) against any payload (issue 12).

Property: whatever arrives, `read_command` returns (never raises); anything that is not a valid
command becomes a refusal whose reason names the field, and the handler is given that refusal
(to count and show it), never a command; the reply goes to the id when it can be read."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.uplink.commands import (
    FIELDS,
    MAX_COMMAND_BYTES,
    Command,
    RefusedCommand,
    answer,
    decode_reply,
    encode_command,
    read_command,
)

GATEWAY = "gw-a"
VALID: dict[str, dict[str, Any]] = {
    "install_model": {
        "v": 1,
        "id": "c-1",
        "action": "install_model",
        "bundle": base64.b64encode(b"archive").decode(),
    },
    "rollback_model": {"v": 1, "id": "c-2", "action": "rollback_model", "asset": "pump-1"},
    "fetch_records": {"v": 1, "id": "c-5", "action": "fetch_records", "asset": "pump-1",
                      "since": 1767225600.0, "until": 1767229200, "max_records": 1000},
}  # fmt: skip
DEEP = "__deep__"

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**400), 10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80)
    | st.sampled_from(["\ud800", "a/b", "+", "#", "x" * 100, "not base64!", DEEP]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


class Recorder:
    """A command handler that keeps what it was given and answers like the model manager."""

    def __init__(self) -> None:
        self.given: list[Command | RefusedCommand] = []

    async def __call__(self, command: Command | RefusedCommand) -> dict[str, Any]:
        self.given.append(command)
        if isinstance(command, RefusedCommand):
            return {"accepted": False, "message": command.reason}
        return {"accepted": True, "message": "done"}


def reply_to(payload: bytes) -> tuple[bytes | None, Recorder]:
    handler = Recorder()
    return asyncio.run(answer(payload, handler, GATEWAY)), handler


def check_refused(payload: bytes, field: str | None) -> RefusedCommand:
    """Refused naming `field`, the handler told, and answered iff the id is readable."""
    command = read_command(payload)
    assert isinstance(command, RefusedCommand), command
    assert command.reason.startswith("command"), command.reason
    if field is not None:
        assert field in command.reason, (field, command.reason)
    assert len(command.reason) < 600
    reply, handler = reply_to(payload)
    assert handler.given == [command]
    if command.id is None:
        assert reply is None
    else:
        decoded = decode_reply(reply or b"")
        assert decoded.id == command.id and decoded.outcome["accepted"] is False
    return command


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300))
def test_any_bytes_are_a_command_or_a_refusal(payload: bytes) -> None:
    command = read_command(payload)
    if isinstance(command, Command):
        assert read_command(encode_command(command)) == command
    else:
        check_refused(payload, None)


@settings(max_examples=200, deadline=None)
@given(
    action=st.sampled_from(sorted(VALID)),
    field=st.sampled_from(sorted(FIELDS | {"extra"})),
    value=JSON_VALUES,
    depth=st.integers(1, 5000),
)
def test_a_hostile_field_is_refused_naming_it_or_the_command_is_valid(
    action: str, field: str, value: object, depth: int
) -> None:
    body = {**VALID[action], field: value}
    text = json.dumps(body).replace(json.dumps(DEEP), "[" * depth + "]" * depth)
    payload = text.encode("utf-8", "surrogatepass")
    command = read_command(payload)
    if isinstance(command, Command):  # the value happened to be valid there
        assert field != "extra"
        assert read_command(encode_command(command)) == command
        return
    if DEEP in json.dumps(value) and depth > 14:
        check_refused(payload, "nested")
        return
    names = {"v": " v ", "extra": "unknown field(s) extra", "id": "command id"}
    check_refused(payload, None if field == "action" else names.get(field, field))


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"v": 1, "id": "c-3", "action": "install_model", "bundle": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",
        b'{"v": 1, "id": "c-4", "x": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001,
    ],
)
def test_deep_json_in_a_command_is_refused(payload: bytes) -> None:
    """Issue 12: deep JSON on the command topic raised RecursionError in the uplink's task and
    dropped its connection."""
    assert check_refused(payload, None).id is None


def test_a_command_too_big_is_refused_before_it_is_parsed() -> None:
    payload = b'{"v": 1, "id": "c-5", "pad": "' + b"x" * MAX_COMMAND_BYTES + b'"}'
    assert "more than" in check_refused(payload, "bytes").reason


async def test_a_handler_that_fails_is_answered_as_a_refusal() -> None:
    async def broken(command: Command | RefusedCommand) -> dict[str, Any]:
        raise OSError(36, "File name too long")

    reply = await answer(encode_command(Command("c-6", "rollback_model", asset="a")), broken, "g")
    decoded = decode_reply(reply or b"")
    assert decoded.id == "c-6"
    assert decoded.outcome == {"accepted": False, "message": "internal error: OSError"}

    async def unencodable(command: Command | RefusedCommand) -> dict[str, Any]:
        return {"accepted": True, "message": "\ud800"}

    reply = await answer(
        encode_command(Command("c-7", "rollback_model", asset="a")), unencodable, "g"
    )
    assert "could not be encoded" in decode_reply(reply or b"").outcome["message"]


def test_allow_downgrade_travels_and_must_be_a_boolean() -> None:
    command = Command("c-8", "install_model", bundle=b"x", allow_downgrade=True)
    assert read_command(encode_command(command)) == command
    body = {**VALID["install_model"], "allow_downgrade": "yes"}
    check_refused(json.dumps(body).encode(), "allow_downgrade must be true or false")
