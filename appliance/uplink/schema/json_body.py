"""JSON bodies: UTF-8 bytes to an object for any bytes an outsider may send, an object to bytes,
and the checks of its version and keys."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from appliance.uplink.errors import SchemaError
from appliance.uplink.schema.values import PROTOCOL_VERSION, shown

CONTAINER_TYPES: Final = frozenset({list, dict})
MAX_JSON_DEPTH: Final = 16
"""load_json's default nesting limit (a part nests 4 deep: object, records, record, values)."""


def dump_json(body: Mapping[str, Any], where: str) -> bytes:
    try:
        text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError (lone surrogates) is a ValueError
        raise SchemaError(f"{where}: cannot be encoded as JSON: {exc}") from exc


def refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def load_json(
    payload: bytes,
    where: str,
    *,
    max_bytes: int | None = None,
    max_depth: int = MAX_JSON_DEPTH,
) -> dict[str, Any]:
    """A JSON object from UTF-8 bytes, for any bytes an outsider may send: refused with
    SchemaError ("too_large", "too_deep", "bad_json") and never another exception. NaN/Infinity
    literals are refused; a number too large for a float reads as an infinity or a big int, which
    the field checks refuse."""
    if max_bytes is not None and len(payload) > max_bytes:
        raise SchemaError(f"{where}: {len(payload)} bytes, more than {max_bytes}", "too_large")
    try:
        body = json.loads(payload.decode("utf-8"), parse_constant=refuse_constant)
    except RecursionError:
        raise SchemaError(
            f"{where}: JSON nested too deep to parse (at most {max_depth} levels)", "too_deep"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise SchemaError(f"{where}: not UTF-8 JSON: {exc}", "bad_json") from None
    if json_depth(body, max_depth) > max_depth:
        raise SchemaError(f"{where}: JSON nested deeper than {max_depth} levels", "too_deep")
    if not isinstance(body, dict):
        raise SchemaError(f"{where}: not a JSON object", "bad_json")
    return body


def json_depth(value: object, limit: int) -> int:
    """How deep a decoded JSON value nests (a scalar is 0, [] is 1), counted up to limit + 1.
    Level by level, without recursion; lists of scalars are skipped at C speed."""
    level: list[Any] = [value] if type(value) in CONTAINER_TYPES else []
    depth = 0
    while level and depth <= limit:
        depth += 1
        below: list[Any] = []
        for container in level:
            items: Iterable[Any] = container.values() if type(container) is dict else container
            if not CONTAINER_TYPES.isdisjoint(map(type, items)):
                below.extend(item for item in items if type(item) in CONTAINER_TYPES)
        level = below
    return depth


def check_keys(body: Mapping[str, Any], expected: frozenset[str], where: str) -> None:
    if body.keys() == expected:  # the common case, in one set comparison (a hot path)
        return
    missing = sorted(expected - body.keys())
    unknown = sorted(body.keys() - expected)
    if missing:
        raise SchemaError(f"{where}: missing field(s) {', '.join(missing)}", "missing_field")
    if unknown:
        listed = ", ".join(shown(key) for key in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise SchemaError(f"{where}: unknown field(s) {listed}{more}", "unknown_field")


def check_version(body: Mapping[str, Any], where: str) -> None:
    version = body.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise SchemaError(
            f"{where}: v is {shown(version)}; this release reads v {PROTOCOL_VERSION}",
            "bad_version",
        )
