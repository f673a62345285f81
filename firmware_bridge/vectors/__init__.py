"""The shared test vectors (frames.json): wire bytes and what a decoder must make of them.

Each vector is {"name", "wire_hex", "expect"}; "expect" holds either the frame's fields
(with "type" SAMPLES or HELLO, and "sample_format" for SAMPLES) or {"error": "crc" |
"malformed" | "oversize"}, naming the DecoderCounters field the frame must be counted in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from firmware_bridge.codec import Frame, HelloFrame, SamplesFrame

Vector = dict[str, Any]

VECTORS_JSON = Path(__file__).with_name("frames.json")


def load_vectors() -> list[Vector]:
    vectors: list[Vector] = json.loads(VECTORS_JSON.read_text())
    return vectors


def is_error(vector: Vector) -> bool:
    return "error" in vector["expect"]


def wire(vector: Vector) -> bytes:
    return bytes.fromhex(vector["wire_hex"])


def frame_from_expect(expect: dict[str, Any]) -> Frame:
    """The frame an encodable vector's "expect" describes."""
    if expect["type"] == "HELLO":
        return HelloFrame(
            expect["seq"], expect["mcu_time_us"], expect["reset_cause"], expect["firmware"]
        )
    counts = np.array(expect["counts"], dtype=np.int32)
    counts.flags.writeable = False
    return SamplesFrame(
        expect["seq"],
        expect["mcu_time_us"],
        expect["rate_hz"],
        tuple(expect["channel_ids"]),
        expect["scale"],
        counts,
    )
