"""Binary bodies (PROTOCOL.md, "Wire formats"): a two-byte prefix, then a msgpack map,
deflated when that makes it smaller. Bytes to a map for any bytes an outsider may send (a
decompression bomb is stopped at the size limit, not inflated in full), a map to bytes."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Final

import msgpack

from appliance.uplink.errors import SchemaError

LAYOUT_1: Final = 0xB1
"""The first byte of a binary part of layout 1. No JSON text starts with it (it is not even a
UTF-8 lead byte), so a receiver tells the formats apart by the first byte. A layout an old
receiver could misread gets another magic byte from BINARY_LAYOUTS."""
LAYOUT_2: Final = 0xB2
"""Layout 2 (what the gateway writes): layout 1, plus a features part may name a schema by
reference instead of its names, and its values block is byte-shuffled (PROTOCOL.md)."""
READ_LAYOUTS: Final = frozenset({LAYOUT_1, LAYOUT_2})
BINARY_LAYOUTS: Final = range(0xB0, 0xC0)
"""First bytes kept for binary layouts: one of these that this release does not read is
refused as "bad_version" rather than "bad_binary"."""
RAW: Final = 0
DEFLATE: Final = 1
"""The second byte: how the msgpack map after it is stored (zlib's format, RFC 1950)."""
DEFLATE_LEVEL: Final = 6
PREFIX_BYTES: Final = 2


def is_binary(payload: bytes) -> bool:
    """The payload claims a binary layout (its first byte is one of BINARY_LAYOUTS)."""
    return bool(payload) and payload[0] in BINARY_LAYOUTS


def dump_binary(body: Mapping[str, Any], where: str, layout: int = LAYOUT_2) -> bytes:
    """The prefix and the msgpack map, deflated unless that would not be smaller."""
    try:
        packed: bytes = msgpack.packb(body, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:  # lone surrogates: a ValueError
        raise SchemaError(f"{where}: cannot be encoded as msgpack: {exc}") from exc
    deflated = zlib.compress(packed, DEFLATE_LEVEL)
    if len(deflated) < len(packed):
        return bytes((layout, DEFLATE)) + deflated
    return bytes((layout, RAW)) + packed


def load_binary(payload: bytes, where: str, *, max_bytes: int) -> tuple[int, dict[str, Any]]:
    """The layout (first byte) and map of a binary part, for any bytes: refused with SchemaError
    ("too_large" for more than `max_bytes` sent or inflated, "bad_version" for a layout this
    release does not read, "bad_binary") and never another exception."""
    if len(payload) > max_bytes:
        raise SchemaError(f"{where}: {len(payload)} bytes, more than {max_bytes}", "too_large")
    if not payload or payload[0] not in READ_LAYOUTS:
        layout = f"0x{payload[0]:02x}" if payload else "none"
        raise SchemaError(
            f"{where}: binary layout {layout}; this release reads 0x{LAYOUT_1:02x} and "
            f"0x{LAYOUT_2:02x}",
            "bad_version",
        )
    if len(payload) < PREFIX_BYTES:
        raise SchemaError(f"{where}: ends after its first byte", "bad_binary")
    packed = unpacked_bytes(payload[PREFIX_BYTES:], payload[1], where, max_bytes)
    try:
        body = msgpack.unpackb(packed, raw=False, strict_map_key=True)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise SchemaError(f"{where}: not msgpack: {exc}", "bad_binary") from None
    if not isinstance(body, dict):
        raise SchemaError(f"{where}: not a msgpack map", "bad_binary")
    if not all(type(key) is str for key in body):
        raise SchemaError(f"{where}: a msgpack map key is not a string", "bad_binary")
    return payload[0], body


def unpacked_bytes(stored: bytes, compression: int, where: str, max_bytes: int) -> bytes:
    """The msgpack bytes: as stored, or inflated up to `max_bytes` and no further."""
    if compression == RAW:
        return stored
    if compression != DEFLATE:
        raise SchemaError(f"{where}: compression {compression} is not 0 or 1", "bad_binary")
    inflater = zlib.decompressobj()
    try:
        packed = inflater.decompress(stored, max_bytes + 1)
    except zlib.error as exc:
        raise SchemaError(f"{where}: not deflate data: {exc}", "bad_binary") from None
    if len(packed) > max_bytes or inflater.unconsumed_tail:
        raise SchemaError(
            f"{where}: inflates to more than {max_bytes} bytes ({len(stored)} sent)", "too_large"
        )
    if not inflater.eof or inflater.unused_data:
        state = "ends early" if not inflater.eof else "has bytes after its end"
        raise SchemaError(f"{where}: the deflate data {state}", "bad_binary")
    return packed
