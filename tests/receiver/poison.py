"""Poison messages of issue 12, as (topic, payload) a gateway login may publish on its own topics.

Each either has a valid header for the range (10, 20] (the receiver dead-letters it and accounts
its part, so a gateway's ack moves past it) or not (dead-lettered only)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import msgpack
import numpy as np
from receiver_helpers import NAMES, PREFIX, outbox_rows

from appliance.uplink.schema import encode_part, record_kind, split_range

BIG = int("9" * 400)


@dataclass(frozen=True)
class Poison:
    name: str
    topic: str
    payload: bytes
    reason: str
    accounted: bool
    """The header is valid: the part counts (refused) in the range (10, 20]."""


def body_of(kind: str, gateway: str) -> dict[str, Any]:
    """A valid one-part range (10, 20] of `kind` for pump-1 (or a gap)."""
    rows = [row for row in outbox_rows(10, 20) if record_kind(row[1]) == kind]
    (part,) = split_range(gateway, 10, 20, [] if kind == "gap" else rows)
    return {**json.loads(encode_part(part)), "parts": 1, "part": 0}


def poison(
    name: str,
    kind: str,
    change: Callable[[dict[str, Any]], None],
    reason: str,
    accounted: bool,
    raw: str = "",
    gateway: str = "gw-a",
) -> Poison:
    """The valid body changed by `change`; "@RAW@" in it becomes the JSON text `raw`."""
    body = body_of(kind, gateway)
    change(body)
    asset = "_" if kind == "gap" else "pump-1"
    payload = json.dumps(body).replace('"@RAW@"', raw).encode()
    return Poison(name, f"{PREFIX}/{gateway}/{kind}/{asset}", payload, reason, accounted)


def record(field: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda body: body["records"][0].update({field: value})


def issue_12_poisons(gateway: str = "gw-a") -> list[Poison]:
    brackets = b"[" * 100_000 + b"]" * 100_000
    return [
        Poison(
            "200 KB of brackets", f"{PREFIX}/{gateway}/scores/pump-1", brackets, "too_deep", False
        ),
        poison(
            "a deep value inside an object",
            "features",
            record("values", "@RAW@"),
            "too_deep",
            False,
            "[" * 50_000 + "]" * 50_000,
            gateway,
        ),
        poison(
            "hi = 2**63",
            "scores",
            lambda b: b.update(hi=2**63),
            "implausible",
            False,
            gateway=gateway,
        ),
        poison("seq = 2**63", "scores", record("seq", 2**63), "invalid", True, gateway=gateway),
        poison(
            "t as a 400-digit integer", "alerts", record("t", BIG), "invalid", True, gateway=gateway
        ),
        poison(
            "error as a 400-digit integer",
            "scores",
            record("error", BIG),
            "invalid",
            True,
            gateway=gateway,
        ),
        poison(
            "values as a 400-digit integer",
            "features",
            lambda b: b["records"][0]["values"].__setitem__(0, BIG),
            "invalid",
            True,
            gateway=gateway,
        ),
        poison(
            "a lone surrogate in an alert message",
            "alerts",
            record("message", "@RAW@"),
            "bad_text",
            True,
            '"x\\udc80"',
            gateway,
        ),
        poison(
            "a lone surrogate in a feature name",
            "features",
            lambda b: b["schemas"][0].__setitem__(0, "@RAW@"),
            "bad_text",
            True,
            '"\\ud800"',
            gateway,
        ),
        poison(
            "the range (0, 2**62]",
            "gap",
            lambda b: b.update(lo=0, hi=2**62),
            "implausible",
            False,
            gateway=gateway,
        ),
        poison(
            "the range (0, 2**41]",
            "gap",
            lambda b: b.update(lo=0, hi=2**41),
            "implausible",
            False,
            gateway=gateway,
        ),
    ]


# --- binary payloads (PROTOCOL.md, "Wire formats") ----------------------------------------


def binary_body_of(kind: str, gateway: str) -> dict[str, Any]:
    """The valid one-part range (10, 20] of `kind` as the map inside a binary payload."""
    rows = [row for row in outbox_rows(10, 20) if record_kind(row[1]) == kind]
    (part,) = split_range(gateway, 10, 20, rows)
    payload = encode_part(replace(part, part=0, parts=1), "binary")
    packed = zlib.decompress(payload[2:]) if payload[1] == 1 else payload[2:]
    body: dict[str, Any] = msgpack.unpackb(packed, raw=False)
    return body


def binary_payload(body: dict[str, Any]) -> bytes:
    return b"\xb1\x01" + zlib.compress(msgpack.packb(body, use_bin_type=True))


def binary_poison(
    name: str, kind: str, change: Callable[[dict[str, Any]], None], reason: str, accounted: bool
) -> Poison:
    body = binary_body_of(kind, "gw-a")
    change(body)
    return Poison(name, f"{PREFIX}/gw-a/{kind}/pump-1", binary_payload(body), reason, accounted)


def deflate_bomb(inflated_mib: int) -> bytes:
    """Zeros inflating to `inflated_mib` MiB behind the binary prefix, built chunk by chunk."""
    deflater = zlib.compressobj(9)
    chunk = bytes(1024 * 1024)
    return b"\xb1\x01" + b"".join(deflater.compress(chunk) for _ in range(inflated_mib)) + (
        deflater.flush()
    )  # fmt: skip


def binary_poisons() -> list[Poison]:
    infinite = np.float32([np.inf, *[1.0] * (len(NAMES) * 5 - 1)]).tobytes()
    nan_time = np.array([np.nan] * 5, dtype="<f8").view("<u8")
    return [
        Poison(
            "a deflate bomb", f"{PREFIX}/gw-a/scores/pump-1", deflate_bomb(64), "too_large", False
        ),
        Poison(
            "binary layout 0xb7",
            f"{PREFIX}/gw-a/scores/pump-1",
            b"\xb7\x01xyz",
            "bad_version",
            False,
        ),
        Poison(
            "a truncated binary part",
            f"{PREFIX}/gw-a/scores/pump-1",
            binary_payload(binary_body_of("scores", "gw-a"))[:30],
            "bad_binary",
            False,
        ),
        binary_poison(
            "an infinite feature value",
            "features",
            lambda b: b.update(values=infinite),
            "invalid",
            True,
        ),
        binary_poison(
            "seqs as a list", "scores", lambda b: b.update(seq=[11, 12]), "invalid", True
        ),
        binary_poison(
            "NaN times",
            "features",
            lambda b: b.update(t=np.diff(nan_time, prepend=np.uint64(0)).tobytes()),
            "invalid",
            True,
        ),
    ]
