"""FrameDecoder on streams: chunking, garbage, bad frames between good ones, oversize runs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.codec import (
    DecoderCounters,
    Frame,
    FrameDecoder,
    HelloFrame,
    SampleFormat,
    SamplesFrame,
    encode_hello,
    encode_samples,
)
from firmware_bridge.vectors import Vector, is_error, load_vectors, wire

BAD = [v for v in load_vectors() if is_error(v)]
ERROR_COUNTERS = {"crc": "crc_errors", "malformed": "malformed", "oversize": "oversize"}


def samples_wire(seq: int) -> bytes:
    counts = np.arange(96).reshape(32, 3) * (seq + 1) - 1000
    return encode_samples(seq, seq * 32_000, 1000, [0, 1, 2], counts, 3.9e-6, SampleFormat.INT32)


def feed_bytewise(decoder: FrameDecoder, data: bytes) -> list[Frame]:
    frames: list[Frame] = []
    for index in range(len(data)):
        frames += decoder.feed(data[index : index + 1])
    return frames


def seqs(frames: list[Frame]) -> list[int]:
    return [frame.seq for frame in frames]


def test_partial_frames_carry_across_feeds_byte_at_a_time() -> None:
    stream = encode_hello(0, 10, 1, "fw") + b"".join(samples_wire(seq) for seq in range(1, 6))
    whole = FrameDecoder().feed(stream)
    decoder = FrameDecoder()
    assert feed_bytewise(decoder, stream) == whole
    assert seqs(whole) == [0, 1, 2, 3, 4, 5]
    assert decoder.counters == DecoderCounters(frames=6)


def test_idle_delimiters_are_ignored() -> None:
    decoder = FrameDecoder()
    frames = decoder.feed(b"\x00\x00" + samples_wire(1) + b"\x00\x00\x00" + samples_wire(2))
    assert seqs(frames) == [1, 2]
    assert decoder.counters == DecoderCounters(frames=2)


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("vector", BAD, ids=[v["name"] for v in BAD])
def test_bad_frame_between_good_ones_is_counted_once(vector: Vector, bytewise: bool) -> None:
    bad = wire(vector)
    stream = samples_wire(1) + bad + samples_wire(2)
    decoder = FrameDecoder()
    frames = feed_bytewise(decoder, stream) if bytewise else decoder.feed(stream)
    assert seqs(frames) == [1, 2]
    expected = DecoderCounters(frames=2, garbage_bytes=len(bad) - 1)
    setattr(expected, ERROR_COUNTERS[vector["expect"]["error"]], 1)
    assert decoder.counters == expected


def test_garbage_between_frames_is_one_bad_frame() -> None:
    garbage = bytes(range(1, 200))
    decoder = FrameDecoder()
    frames = decoder.feed(samples_wire(1) + garbage + b"\x00" + samples_wire(2))
    assert seqs(frames) == [1, 2]
    counters = decoder.counters
    assert counters.crc_errors + counters.malformed == 1
    assert counters.garbage_bytes == len(garbage)


def test_joining_mid_frame_costs_only_that_frame() -> None:
    first = samples_wire(1)
    decoder = FrameDecoder()
    frames = decoder.feed(first[len(first) // 2 :] + samples_wire(2))
    assert seqs(frames) == [2]
    assert decoder.counters.crc_errors + decoder.counters.malformed == 1


def test_frame_that_lost_its_delimiter_takes_the_next_frame_with_it() -> None:
    lost_tail = samples_wire(2)[:100]
    decoder = FrameDecoder()
    frames = decoder.feed(samples_wire(1) + lost_tail + samples_wire(3) + samples_wire(4))
    assert seqs(frames) == [1, 4]
    assert decoder.counters.crc_errors + decoder.counters.malformed == 1


@pytest.mark.parametrize("chunk", [1, 7, 4096, 100_000])
def test_long_run_without_delimiter_is_one_oversize(chunk: int) -> None:
    run = bytes([0x42]) * 10_000
    stream = samples_wire(1) + run + b"\x00" + samples_wire(2)
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for start in range(0, len(stream), chunk):
        frames += decoder.feed(stream[start : start + chunk])
    assert seqs(frames) == [1, 2]
    assert decoder.counters == DecoderCounters(frames=2, oversize=1, garbage_bytes=len(run))


def test_max_payload_is_configurable() -> None:
    decoder = FrameDecoder(max_payload=100)
    frames = decoder.feed(encode_hello(0, 0, 0, "fw") + samples_wire(1) + encode_hello(1, 0, 0, ""))
    assert seqs(frames) == [0, 1]
    assert decoder.counters.oversize == 1


# --- properties -------------------------------------------------------------------------------


@st.composite
def samples_frames(draw: st.DrawFn) -> tuple[bytes, SamplesFrame]:
    fmt = draw(st.sampled_from(SampleFormat))
    limit = 2**15 if fmt is SampleFormat.INT16 else 2**31
    ids = draw(st.lists(st.integers(0, 255), min_size=1, max_size=32, unique=True))
    n_samples = draw(st.integers(1, 8))
    values = st.integers(-limit, limit - 1)
    counts = draw(
        st.lists(
            st.lists(values, min_size=len(ids), max_size=len(ids)),
            min_size=n_samples,
            max_size=n_samples,
        )
    )
    seq = draw(st.integers(0, 2**32 - 1))
    time_us = draw(st.integers(0, 2**64 - 1))
    rate = draw(st.integers(1, 2**32 - 1))
    scale = draw(st.floats(width=32, allow_nan=False, allow_infinity=False))
    wire = encode_samples(seq, time_us, rate, ids, counts, scale, fmt)
    array = np.array(counts, dtype=np.int32)
    return wire, SamplesFrame(seq, time_us, rate, tuple(ids), scale, array)


@st.composite
def hello_frames(draw: st.DrawFn) -> tuple[bytes, HelloFrame]:
    seq = draw(st.integers(0, 2**32 - 1))
    time_us = draw(st.integers(0, 2**64 - 1))
    cause = draw(st.integers(0, 255))
    firmware = draw(st.text(st.characters(max_codepoint=127), max_size=255))
    return encode_hello(seq, time_us, cause, firmware), HelloFrame(seq, time_us, cause, firmware)


any_frame = st.one_of(samples_frames(), hello_frames())


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 10_000), max_size=20))
def test_feed_never_raises_and_counts_consistently(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(max_payload=512)
    frames: list[Frame] = []
    for chunk in chunked(data, cuts):
        frames += decoder.feed(chunk)
    assert decoder.counters.frames == len(frames)
    assert decoder.counters.garbage_bytes <= len(data)


@settings(deadline=None)
@given(st.binary(max_size=600), any_frame, st.lists(st.integers(0, 10_000), max_size=10))
def test_valid_frame_after_garbage_and_delimiter_decodes(
    garbage: bytes, frame: tuple[bytes, Frame], cuts: list[int]
) -> None:
    frame_wire, expected = frame
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for chunk in chunked(garbage + b"\x00" + frame_wire, cuts):
        frames += decoder.feed(chunk)
    assert frames[-1] == expected


@settings(deadline=None)
@given(st.lists(any_frame, min_size=1, max_size=5))
def test_any_sequence_of_encoded_frames_round_trips(frames: list[tuple[bytes, Frame]]) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"".join(w for w, _ in frames)) == [f for _, f in frames]
    assert decoder.counters == DecoderCounters(frames=len(frames))
