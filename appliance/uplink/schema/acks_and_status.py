"""The two retained messages besides the data: the receiver's acknowledgement per gateway and the
gateway's status (its last will says offline)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from appliance.uplink.errors import SchemaError
from appliance.uplink.schema.json_body import check_keys, check_version, dump_json, load_json
from appliance.uplink.schema.schema_refs import SCHEMA_REF_BYTES
from appliance.uplink.schema.values import PROTOCOL_VERSION, check_int, check_name


@dataclass(frozen=True, slots=True)
class Ack:
    """The receiver has committed every record of `gateway` with seq <= `seq` (or it was
    declared evicted): the gateway may delete them."""

    gateway: str
    seq: int
    unknown_schemas: frozenset[bytes] = frozenset()
    """Not an ack but a request, never retained: the receiver refused parts referring to these
    feature schemas (it does not know them): send their names again (PROTOCOL.md)."""
    announced: bool = False
    """Never retained: a receiver has just (re)subscribed; what was sent while none was
    subscribed may be lost (PROTOCOL.md, "Gateway rules")."""


ACK_KEYS: Final = frozenset({"v", "gateway", "seq"})
SCHEMA_REQUEST_KEYS: Final = ACK_KEYS | {"unknown_schemas"}
ANNOUNCEMENT_KEYS: Final = ACK_KEYS | {"announced"}


def encode_ack(
    gateway: str, seq: int, unknown_schemas: Iterable[bytes] = (), *, announced: bool = False
) -> bytes:
    check_name(gateway, "gateway")
    if check_int(seq, "ack seq") < 0:
        raise SchemaError(f"ack seq must not be negative, not {seq}")
    body: dict[str, object] = {"v": PROTOCOL_VERSION, "gateway": gateway, "seq": seq}
    refs = sorted(ref.hex() for ref in unknown_schemas)
    if refs:
        body["unknown_schemas"] = refs
    elif announced:
        body["announced"] = True
    return dump_json(body, "ack")


def decode_ack(payload: bytes, gateway: str | None = None) -> Ack:
    """Parse an ack (or a request for schemas); if `gateway` is given, one for another gateway
    is refused."""
    where = "ack" if gateway is None else f"ack for {gateway}"
    body = load_json(payload, where)
    check_version(body, where)
    check_keys(body, ack_keys(body), where)
    if body.get("announced", True) is not True:
        raise SchemaError(f"{where}: announced must be true when present")
    ack = Ack(
        check_name(body["gateway"], f"{where}: gateway"),
        check_int(body["seq"], where),
        schema_refs(body.get("unknown_schemas", []), where),
        "announced" in body,
    )
    if ack.seq < 0:
        raise SchemaError(f"{where}: seq must not be negative, not {ack.seq}")
    if gateway is not None and ack.gateway != gateway:
        raise SchemaError(f"{where}: is for gateway {ack.gateway!r}", "gateway_mismatch")
    return ack


def ack_keys(body: Mapping[str, object]) -> frozenset[str]:
    if "unknown_schemas" in body:
        return SCHEMA_REQUEST_KEYS
    return ANNOUNCEMENT_KEYS if "announced" in body else ACK_KEYS


def schema_refs(value: object, where: str) -> frozenset[bytes]:
    """unknown_schemas: a list of 8-byte references as 16 hex digits."""
    if not isinstance(value, list) or not all(
        isinstance(ref, str) and len(ref) == 2 * SCHEMA_REF_BYTES for ref in value
    ):
        raise SchemaError(f"{where}: unknown_schemas must be a list of 16-hex-digit references")
    try:
        return frozenset(bytes.fromhex(ref) for ref in value)
    except ValueError:
        raise SchemaError(f"{where}: unknown_schemas holds a reference that is not hex") from None


ONLINE: Final = "online"


OFFLINE: Final = "offline"


STATUS_RESERVED: Final = frozenset({"v", "gateway", "state"})


@dataclass(frozen=True, slots=True)
class Status:
    """A gateway's retained status: `state` (online, offline, ...) plus free-form fields."""

    gateway: str
    state: str
    fields: Mapping[str, object] = field(default_factory=dict)


def encode_status(gateway: str, state: str, **fields: object) -> bytes:
    """`fields` must be JSON values (no NaN); v, gateway and state are reserved."""
    check_name(gateway, "gateway")
    check_name(state, "status state")
    reserved = sorted(STATUS_RESERVED & fields.keys())
    if reserved:
        raise SchemaError(f"status of {gateway}: field(s) {', '.join(reserved)} are reserved")
    body = {"v": PROTOCOL_VERSION, "gateway": gateway, "state": state, **fields}
    return dump_json(body, f"status of {gateway}")


def decode_status(payload: bytes) -> Status:
    body = load_json(payload, "status")
    check_version(body, "status")
    gateway = check_name(body.get("gateway"), "status: gateway")
    state = check_name(body.get("state"), f"status of {gateway}: state")
    fields = {key: value for key, value in body.items() if key not in STATUS_RESERVED}
    return Status(gateway, state, fields)
