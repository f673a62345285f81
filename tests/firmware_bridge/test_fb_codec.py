"""COBS, encoders and frame values, independent of the vectors file."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.codec import (
    FrameDecoder,
    HelloFrame,
    SampleFormat,
    SamplesFrame,
    cobs_decode,
    cobs_encode,
    encode_hello,
    encode_samples,
)

# Examples from the COBS paper / Wikipedia's article; the last four pin the 254-byte block rules.
COBS_EXAMPLES = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
    (bytes(range(255)), b"\x01\xff" + bytes(range(1, 255))),
    (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
]


@pytest.mark.parametrize(("data", "encoded"), COBS_EXAMPLES)
def test_cobs_matches_reference_examples(data: bytes, encoded: bytes) -> None:
    assert cobs_encode(data) == encoded
    assert cobs_decode(encoded) == data


def test_cobs_decode_accepts_trailing_one_after_full_block() -> None:
    assert cobs_decode(b"\xff" + bytes(range(1, 255)) + b"\x01") == bytes(range(1, 255))


@pytest.mark.parametrize("encoded", [b"\x05\x11\x22", b"\x02\x11\x00\x33", b"\x00"])
def test_cobs_decode_rejects_invalid_input(encoded: bytes) -> None:
    assert cobs_decode(encoded) is None


@given(st.binary(max_size=1200))
def test_cobs_round_trip_has_no_zero_and_bounded_overhead(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert b"\x00" not in encoded
    assert len(encoded) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(encoded) == data


def decode_one(wire: bytes) -> SamplesFrame | HelloFrame:
    decoder = FrameDecoder()
    frames = decoder.feed(wire)
    assert len(frames) == 1, decoder.counters
    return frames[0]


def test_samples_round_trip_int16() -> None:
    counts = np.array([[1, -2, 3], [-32768, 32767, 0]])
    wire = encode_samples(7, 123_456, 1000, [4, 5, 6], counts, 0.5)
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    frame = decode_one(wire)
    assert frame == SamplesFrame(7, 123_456, 1000, (4, 5, 6), 0.5, counts.astype(np.int32))
    assert isinstance(frame, SamplesFrame)
    assert frame.counts.dtype == np.int32 and frame.counts.shape == (2, 3)


def test_samples_round_trip_int32_keeps_full_range() -> None:
    counts = [[-(2**31)], [2**31 - 1], [0]]
    frame = decode_one(encode_samples(1, 2, 3, [9], counts, 1.0, SampleFormat.INT32))
    assert isinstance(frame, SamplesFrame)
    assert frame.counts[:, 0].tolist() == [-(2**31), 2**31 - 1, 0]


def test_physical_is_counts_times_float32_scale() -> None:
    wire = encode_samples(1, 0, 1000, [0, 1], [[256000, -256000]], 3.9e-6, SampleFormat.INT32)
    frame = decode_one(wire)
    assert isinstance(frame, SamplesFrame)
    assert frame.scale == float(np.float32(3.9e-6))
    np.testing.assert_allclose(frame.physical(), [[0.9984, -0.9984]], rtol=1e-6)
    assert frame.physical().dtype == np.float64


def test_decoded_counts_are_read_only() -> None:
    frame = decode_one(encode_samples(1, 0, 1000, [0], [[5]], 1.0))
    assert isinstance(frame, SamplesFrame)
    with pytest.raises(ValueError):
        frame.counts[0, 0] = 6


def test_samples_frames_with_different_counts_are_not_equal() -> None:
    one = SamplesFrame(1, 0, 1000, (0,), 1.0, np.array([[1], [2]], dtype=np.int32))
    other = SamplesFrame(1, 0, 1000, (0,), 1.0, np.array([[1], [3]], dtype=np.int32))
    assert one != other
    assert one == SamplesFrame(1, 0, 1000, (0,), 1.0, np.array([[1], [2]], dtype=np.int32))


def test_hello_round_trip() -> None:
    frame = decode_one(encode_hello(0, 99, 2, "fw 1.2"))
    assert frame == HelloFrame(0, 99, 2, "fw 1.2")


BAD_SAMPLES_ARGS = {
    "negative seq": dict(seq=-1),
    "seq over u32": dict(seq=2**32),
    "time over u64": dict(mcu_time_us=2**64),
    "zero rate": dict(rate_hz=0),
    "no channels": dict(channel_ids=[], counts=np.zeros((1, 0), dtype=int)),
    "33 channels": dict(channel_ids=list(range(33)), counts=np.zeros((1, 33), dtype=int)),
    "channel id 256": dict(channel_ids=[256]),
    "duplicate ids": dict(channel_ids=[1, 1], counts=[[0, 0]]),
    "channel count mismatch": dict(counts=[[1, 2]]),
    "1-D counts": dict(counts=[1, 2]),
    "no samples": dict(counts=np.zeros((0, 1), dtype=int)),
    "float counts": dict(counts=[[1.5]]),
    "int16 overflow": dict(counts=[[32768]]),
    "int16 underflow": dict(counts=[[-32769]]),
    "nan scale": dict(scale=float("nan")),
    "scale too big for f32": dict(scale=1e39),
    "payload over 4096": dict(channel_ids=list(range(32)), counts=np.zeros((64, 32), dtype=int)),
}


@pytest.mark.parametrize("bad", BAD_SAMPLES_ARGS.values(), ids=BAD_SAMPLES_ARGS.keys())
def test_encode_samples_refuses_what_the_protocol_cannot_carry(bad: dict[str, object]) -> None:
    args: dict[str, object] = dict(
        seq=1, mcu_time_us=0, rate_hz=1000, channel_ids=[0], counts=[[1]], scale=1.0
    )
    args.update(bad)
    with pytest.raises(ValueError):
        encode_samples(**args)  # type: ignore[arg-type]


def test_encode_samples_int32_overflow_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_samples(1, 0, 1000, [0], [[2**31]], 1.0, SampleFormat.INT32)


@pytest.mark.parametrize(
    ("reset_cause", "firmware"), [(256, "fw"), (-1, "fw"), (0, "fw\u00e9"), (0, "x" * 256)]
)
def test_encode_hello_refuses_bad_input(reset_cause: int, firmware: str) -> None:
    with pytest.raises(ValueError):
        encode_hello(0, 0, reset_cause, firmware)
