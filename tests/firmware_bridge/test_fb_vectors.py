"""The Python codec against the committed vectors, which the C host build is checked against too."""

from __future__ import annotations

import json

import pytest

from firmware_bridge.codec import (
    FrameDecoder,
    SampleFormat,
    cobs_decode,
    encode_hello,
    encode_samples,
)
from firmware_bridge.vectors import Vector, frame_from_expect, is_error, load_vectors, wire
from firmware_bridge.vectors.make_vectors import C_HEADER, all_vectors, c_header

VECTORS = load_vectors()
GOOD = [v for v in VECTORS if not is_error(v)]
BAD = [v for v in VECTORS if is_error(v)]
ERROR_COUNTERS = {"crc": "crc_errors", "malformed": "malformed", "oversize": "oversize"}


def names(vectors: list[Vector]) -> list[str]:
    return [v["name"] for v in vectors]


def test_vectors_cover_the_required_cases() -> None:
    required = {
        "samples_int16_3ch",
        "samples_int32_adxl355_32x3",
        "hello_power_on",
        "samples_seq_max",
        "samples_seq_wrapped",
        "samples_32ch_max_payload",
        "samples_final_block_full",
        "bad_crc",
        "bad_version",
        "truncated_payload",
        "oversize_payload",
    }
    assert required <= set(names(VECTORS))
    assert {v["expect"]["error"] for v in BAD} == set(ERROR_COUNTERS)


@pytest.mark.parametrize("vector", GOOD, ids=names(GOOD))
def test_good_vector_decodes_to_expected_frame(vector: Vector) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(wire(vector)) == [frame_from_expect(vector["expect"])]
    assert decoder.counters.frames == 1


@pytest.mark.parametrize("vector", GOOD, ids=names(GOOD))
def test_good_vector_is_what_the_encoder_produces(vector: Vector) -> None:
    expect = vector["expect"]
    if expect["type"] == "HELLO":
        encoded = encode_hello(
            expect["seq"], expect["mcu_time_us"], expect["reset_cause"], expect["firmware"]
        )
    else:
        encoded = encode_samples(
            expect["seq"],
            expect["mcu_time_us"],
            expect["rate_hz"],
            expect["channel_ids"],
            expect["counts"],
            expect["scale"],
            SampleFormat[expect["sample_format"]],
        )
    assert encoded.hex() == vector["wire_hex"]


@pytest.mark.parametrize("vector", BAD, ids=names(BAD))
def test_bad_vector_is_counted_in_its_counter(vector: Vector) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(wire(vector)) == []
    counters = vars(decoder.counters)
    counter = ERROR_COUNTERS[vector["expect"]["error"]]
    assert counters[counter] == 1
    assert sum(counters[name] for name in ERROR_COUNTERS.values()) == 1
    assert counters["garbage_bytes"] == len(wire(vector)) - 1


def test_final_block_vector_ends_without_trailing_one() -> None:
    (vector,) = [v for v in VECTORS if v["name"] == "samples_final_block_full"]
    payload = cobs_decode(wire(vector)[:-1])
    assert payload is not None and len(payload) - payload.rfind(b"\x00") - 1 == 254
    assert wire(vector)[-255 - 1] == 0xFF


def test_vectors_file_matches_the_generator() -> None:
    """Editing the generator without regenerating frames.json (or the reverse) fails here."""
    assert json.loads(json.dumps(all_vectors())) == VECTORS


def test_committed_c_header_matches_the_vectors() -> None:
    assert C_HEADER.read_text() == c_header(VECTORS)
