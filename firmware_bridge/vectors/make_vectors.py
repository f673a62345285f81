"""Write frames.json (the shared test vectors) and the C header the firmware's host build reads.

    .venv/bin/python -m firmware_bridge.vectors.make_vectors

frames.json is committed and is the truth both codecs are checked against; rerun this only when
the vectors themselves change. The C header is generated from frames.json, never from the codec.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np

from firmware_bridge.codec import (
    FRAME_VERSION,
    FrameType,
    SampleFormat,
    cobs_decode,
    cobs_encode,
    encode_hello,
    encode_samples,
    wire_from_payload,
)
from firmware_bridge.vectors import VECTORS_JSON, Vector

C_HEADER = Path(__file__).parent.parent / "firmware" / "host_vectors.h"
ADXL355_SCALE = 3.9e-6


def _f32(value: float) -> float:
    """The value a float32 field carries, as JSON and the decoder will show it."""
    return float(np.float32(value))


def _samples(
    name: str,
    seq: int,
    mcu_time_us: int,
    rate_hz: int,
    channel_ids: list[int],
    counts: list[list[int]],
    scale: float,
    fmt: SampleFormat,
) -> Vector:
    wire = encode_samples(seq, mcu_time_us, rate_hz, channel_ids, counts, scale, fmt)
    expect = {
        "type": "SAMPLES",
        "seq": seq,
        "mcu_time_us": mcu_time_us,
        "rate_hz": rate_hz,
        "channel_ids": channel_ids,
        "scale": _f32(scale),
        "sample_format": fmt.name,
        "counts": counts,
    }
    return {"name": name, "wire_hex": wire.hex(), "expect": expect}


def _hello(name: str, seq: int, mcu_time_us: int, reset_cause: int, firmware: str) -> Vector:
    wire = encode_hello(seq, mcu_time_us, reset_cause, firmware)
    expect = {
        "type": "HELLO",
        "seq": seq,
        "mcu_time_us": mcu_time_us,
        "reset_cause": reset_cause,
        "firmware": firmware,
    }
    return {"name": name, "wire_hex": wire.hex(), "expect": expect}


def _error(name: str, wire: bytes, error: str) -> Vector:
    return {"name": name, "wire_hex": wire.hex(), "expect": {"error": error}}


def _raw_samples_payload(
    n_channels: int = 3,
    fmt: int = SampleFormat.INT16,
    n_samples: int = 2,
    rate_hz: int = 1000,
    scale: float = 1.0,
    channel_ids: bytes = b"\x00\x01\x02",
    samples: bytes = bytes(range(1, 13)),
    version: int = FRAME_VERSION,
    frame_type: int = FrameType.SAMPLES,
) -> bytes:
    """A SAMPLES payload without CRC, with any field value, valid or not."""
    header = struct.pack("<BBHIQ", version, frame_type, 0, 10, 5_000)
    body = struct.pack("<IBBHf", rate_hz, n_channels, fmt, n_samples, scale)
    return header + body + channel_ids + samples


def _adxl355_like_counts(n_samples: int) -> list[list[int]]:
    return [
        [(s * 40_503 + axis * 97_331) % (1 << 20) - (1 << 19) for axis in range(3)]
        for s in range(n_samples)
    ]


def encodable_vectors() -> list[Vector]:
    int16 = SampleFormat.INT16
    int32 = SampleFormat.INT32
    max_channel_ids = [255 - 8 * i for i in range(32)]
    max_channel_counts = [[(s * 32 + c) * 31 - 30_000 for c in range(32)] for s in range(63)]
    return [
        _samples(
            "samples_int16_3ch",
            1,
            1_000_000,
            1000,
            [0, 1, 2],
            [[1, -1, 256], [-256, 1000, -1000], [0, 12345, -12345], [7, 8, 9]],
            0.001,
            int16,
        ),
        _samples(
            "samples_int16_extremes",
            2,
            1_032_000,
            800,
            [7],
            [[-32768], [32767], [0], [-1]],
            1.0,
            int16,
        ),
        _samples(
            "samples_int32_adxl355_32x3",
            3,
            1_064_000,
            1000,
            [0, 1, 2],
            _adxl355_like_counts(32),
            ADXL355_SCALE,
            int32,
        ),
        _samples(
            "samples_int32_extremes",
            4,
            2_000_000,
            12_000,
            [200, 9],
            [[-(1 << 31), (1 << 31) - 1], [0, -1]],
            0.5,
            int32,
        ),
        _samples("samples_seq_max", 0xFFFF_FFFF, 1 << 40, 1000, [0], [[11], [12]], 0.25, int16),
        _samples("samples_seq_wrapped", 0, (1 << 40) + 2000, 1000, [0], [[13], [14]], 0.25, int16),
        _samples(
            "samples_32ch_max_payload",
            5,
            3_000_000,
            100,
            max_channel_ids,
            max_channel_counts,
            9.80665e-3,
            int16,
        ),
        _samples("samples_long_nonzero_run", 6, 4_000_000, 1000, [3], [[0x0101]] * 200, 2.0, int16),
        # The payload ends in exactly 254 bytes without a zero: canonical COBS adds no 0x01.
        _samples("samples_final_block_full", 7, 1, 1000, [3], [[0x0101]] * 124, 2.0, int16),
        _hello("hello_power_on", 0, 1_523, 1, "vibration-bridge 0.1.0 adxl355"),
        _hello("hello_watchdog_time_max", 0, (1 << 64) - 1, 2, "fw"),
        _hello("hello_empty_firmware_id", 0, 0, 0, ""),
    ]


def _truncated_cobs() -> bytes:
    """A frame that lost its tail in the middle of a COBS block (the delimiter got through)."""
    encoded = cobs_encode(_raw_samples_payload() + b"\x00\x00\x00\x00")
    cut = max(n for n in range(len(encoded)) if cobs_decode(encoded[:n]) is None)
    return encoded[:cut] + b"\x00"


def _flip_byte(wire_payload: bytes, offset: int) -> bytes:
    payload = bytearray(wire_payload)
    payload[offset] ^= 0x5A
    return cobs_encode(bytes(payload)) + b"\x00"


def error_vectors() -> list[Vector]:
    good = _raw_samples_payload()
    good_with_crc = good + struct.pack("<I", zlib.crc32(good))
    return [
        _error("bad_crc", _flip_byte(good_with_crc, len(good_with_crc) - 1), "crc"),
        _error("corrupted_sample_byte", _flip_byte(good_with_crc, 30), "crc"),
        _error("truncated_payload", cobs_encode(good_with_crc[:-7]) + b"\x00", "crc"),
        _error("truncated_cobs_block", _truncated_cobs(), "malformed"),
        _error("too_short", cobs_encode(good_with_crc[:12]) + b"\x00", "malformed"),
        _error("bad_version", wire_from_payload(_raw_samples_payload(version=2)), "malformed"),
        _error("unknown_type", wire_from_payload(_raw_samples_payload(frame_type=9)), "malformed"),
        _error(
            "samples_length_mismatch",
            wire_from_payload(_raw_samples_payload(n_samples=3)),
            "malformed",
        ),
        _error(
            "samples_zero_channels",
            wire_from_payload(_raw_samples_payload(n_channels=0, channel_ids=b"")),
            "malformed",
        ),
        _error(
            "samples_duplicate_channel_ids",
            wire_from_payload(_raw_samples_payload(channel_ids=b"\x01\x02\x01")),
            "malformed",
        ),
        _error(
            "samples_unknown_format", wire_from_payload(_raw_samples_payload(fmt=3)), "malformed"
        ),
        _error(
            "samples_zero_rate", wire_from_payload(_raw_samples_payload(rate_hz=0)), "malformed"
        ),
        _error(
            "samples_nan_scale",
            wire_from_payload(_raw_samples_payload(scale=float("nan"))),
            "malformed",
        ),
        _error("hello_non_ascii", wire_from_payload(_hello_payload(b"fw\xff")), "malformed"),
        _error("hello_length_mismatch", wire_from_payload(_hello_payload(b"fw", 3)), "malformed"),
        _error(
            "oversize_payload",
            wire_from_payload(
                _raw_samples_payload(
                    n_channels=32,
                    n_samples=64,
                    channel_ids=bytes(range(32)),
                    samples=b"\x01\x02" * 32 * 64,
                )
            ),
            "oversize",
        ),
    ]


def _hello_payload(firmware: bytes, length: int | None = None) -> bytes:
    header = struct.pack("<BBHIQ", FRAME_VERSION, FrameType.HELLO, 0, 0, 1)
    declared = len(firmware) if length is None else length
    return header + struct.pack("<BB", 3, declared) + firmware


def all_vectors() -> list[Vector]:
    return encodable_vectors() + error_vectors()


# --- C header ---------------------------------------------------------------------------------


def _c_int32(value: int) -> str:
    return "(-2147483647 - 1)" if value == -(1 << 31) else str(value)


def _c_array(c_type: str, name: str, values: list[str]) -> str:
    lines = [", ".join(values[i : i + 12]) for i in range(0, len(values), 12)]
    body = ",\n    ".join(lines)
    return f"static const {c_type} {name}[] = {{\n    {body}\n}};\n"


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _c_vector(index: int, vector: Vector) -> tuple[str, str]:
    """Return (array definitions, initializer) for one encodable vector."""
    expect = vector["expect"]
    name = _c_string(vector["name"])
    seq, time_us = f"{expect['seq']}u", f"{expect['mcu_time_us']}ull"
    if expect["type"] == "HELLO":
        initializer = (
            f"{{{name}, FRAME_TYPE_HELLO, {seq}, {time_us}, 0u, 0u, NULL, 0u, 0u, 0.0f, NULL, "
            f"{expect['reset_cause']}u, {_c_string(expect['firmware'])}}}"
        )
        return "", initializer
    ids_name, counts_name = f"vector{index}_channel_ids", f"vector{index}_counts"
    counts = [_c_int32(v) for row in expect["counts"] for v in row]
    arrays = _c_array("uint8_t", ids_name, [f"{i}u" for i in expect["channel_ids"]])
    arrays += _c_array("int32_t", counts_name, counts)
    fmt = f"FRAME_FORMAT_{expect['sample_format']}"
    initializer = (
        f"{{{name}, FRAME_TYPE_SAMPLES, {seq}, {time_us}, {expect['rate_hz']}u, "
        f"{len(expect['channel_ids'])}u, {ids_name}, {fmt}, {len(expect['counts'])}u, "
        f"{float(expect['scale']).hex()}f, {counts_name}, 0u, NULL}}"
    )
    return arrays, initializer


def c_header(vectors: list[Vector]) -> str:
    """The encodable vectors' inputs as C data for firmware/host_main.c."""
    arrays, initializers = [], []
    for index, vector in enumerate(v for v in vectors if "error" not in v["expect"]):
        vector_arrays, initializer = _c_vector(index, vector)
        arrays.append(vector_arrays)
        initializers.append(initializer)
    table = ",\n    ".join(initializers)
    return (
        "/* Generated from vectors/frames.json by vectors/make_vectors.py. Do not edit. */\n"
        "#ifndef HOST_VECTORS_H\n#define HOST_VECTORS_H\n\n"
        '#include <stddef.h>\n#include <stdint.h>\n\n#include "frame.h"\n\n'
        "typedef struct {\n"
        "    const char *name;\n    uint8_t type;\n    uint32_t seq;\n    uint64_t mcu_time_us;\n"
        "    uint32_t rate_hz;\n    uint8_t n_channels;\n    const uint8_t *channel_ids;\n"
        "    uint8_t sample_format;\n    uint16_t n_samples;\n    float scale;\n"
        "    const int32_t *counts;\n    uint8_t reset_cause;\n    const char *firmware;\n"
        "} host_vector_t;\n\n"
        + "\n".join(a for a in arrays if a)
        + f"\nstatic const host_vector_t HOST_VECTORS[] = {{\n    {table}\n}};\n\n"
        "#define HOST_VECTOR_COUNT (sizeof HOST_VECTORS / sizeof HOST_VECTORS[0])\n\n"
        "#endif\n"
    )


def main() -> None:
    vectors = all_vectors()
    one_per_line = ",\n".join(json.dumps(vector) for vector in vectors)
    VECTORS_JSON.write_text(f"[\n{one_per_line}\n]\n")
    C_HEADER.write_text(c_header(json.loads(VECTORS_JSON.read_text())))
    print(f"wrote {len(vectors)} vectors to {VECTORS_JSON} and {C_HEADER}")


if __name__ == "__main__":
    main()
