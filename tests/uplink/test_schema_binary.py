"""The binary wire format (PROTOCOL.md, "Wire formats"): every part survives it, feature
values as float32 (float64 when one is beyond float32's range), and whatever bytes arrive after
its magic byte, decode_part returns a valid Part or refuses them with a reason: truncated, another
layout, a deflate bomb, wrong types, NaN or infinities where they are not allowed. Pure."""

from __future__ import annotations

import hashlib
import json
import math
import tracemalloc
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_schema import NAMES, assert_same_record, merged, ranges, vector
from test_schema_poison import (
    HEADER,
    assert_refused_or_valid,
    good_body,
    json_values,
    paths,
    put,
    refused,
    topic,
)

from appliance.records import FeatureVector
from appliance.uplink.schema import (
    MAX_PART_BYTES,
    Part,
    RecordsError,
    SchemaBook,
    SchemaError,
    SeqRecord,
    UnknownSchemas,
    UplinkRecord,
    decode_part,
    encode_part,
    names_text,
    schema_ref,
    split_range,
)
from appliance.uplink.schema.encode_binary import shuffled

PREFIX = "appliance"
F32_MAX = float(np.finfo(np.float32).max)


def as_float32(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    with np.errstate(over="ignore"):
        return values.astype(np.float32).astype(np.float64)


def assert_same_over_binary(got: UplinkRecord, want: UplinkRecord, wide: bool) -> None:
    """As assert_same_record, feature values rounded to float32 unless the part went as float64."""
    if isinstance(want, FeatureVector) and not wide:
        want = FeatureVector(want.asset, want.window_end, want.names, as_float32(want.values))
    assert_same_record(got, want)


def is_wide(rows: Sequence[SeqRecord]) -> bool:
    """A finite feature value beyond float32's range: the part goes as float64."""
    values = [r.values for _, r in rows if isinstance(r, FeatureVector)]
    every = np.concatenate(values) if values else np.array([])
    return bool((np.abs(every[np.isfinite(every)]) > F32_MAX).any())


@settings(max_examples=150, deadline=None)
@given(ranges())
def test_any_range_survives_the_binary_format(case: tuple[int, int, list[SeqRecord]]) -> None:
    lo, hi, rows = case
    parts = split_range("gw-1", lo, hi, rows)
    decoded = [decode_part(encode_part(part, "binary"), part.topic(PREFIX)) for part in parts]

    wide = {(p.kind, p.asset): is_wide(p.records) for p in parts}
    got = merged(decoded)
    assert [seq for seq, _ in got] == [seq for seq, _ in rows]
    kinds = {seq: (p.kind, p.asset) for p in parts for seq, _ in p.records}
    for (seq, got_record), (_, want_record) in zip(got, rows, strict=True):
        assert_same_over_binary(got_record, want_record, wide[kinds[seq]])
    assert [(p.lo, p.hi, p.part, p.parts, p.kind, p.asset) for p in decoded] == [
        (p.lo, p.hi, p.part, p.parts, p.kind, p.asset) for p in parts
    ]


def test_times_and_seqs_arrive_exactly_and_values_as_float32() -> None:
    t = 1_767_225_600.896
    rows: list[SeqRecord] = [(seq, vector(t + (seq % 97) * 0.1, values=(0.1, 1e-3, 7.0))) for seq in
                             (3, 4, 9, 2**40)]  # fmt: skip
    (part,) = split_range("gw-1", 2, 2**40 + 5, rows)
    decoded = decode_part(encode_part(part, "binary"), part.topic(PREFIX))

    assert [seq for seq, _ in decoded.records] == [3, 4, 9, 2**40]
    assert [r.window_end for _, r in decoded.records] == [r.window_end for _, r in rows]  # type: ignore[union-attr]
    got = decoded.records[0][1]
    assert isinstance(got, FeatureVector) and got.values.dtype == np.float64
    np.testing.assert_array_equal(got.values, np.float32([0.1, 1e-3, 7.0]).astype(np.float64))


def test_a_value_beyond_float32_sends_the_part_as_float64_exactly() -> None:
    (part,) = split_range("gw-1", 0, 2, [(1, vector(1.0, values=(1e300, 0.1))), (2, vector(2.0))])
    decoded = decode_part(encode_part(part, "binary"), part.topic(PREFIX))

    first = decoded.records[0][1]
    assert isinstance(first, FeatureVector)
    np.testing.assert_array_equal(first.values, [1e300, 0.1])


def test_binary_is_far_smaller_than_json_for_a_part_of_many_vectors() -> None:
    rng = np.random.default_rng(0)
    rows: list[SeqRecord] = [(seq, vector(1e9 + seq, values=tuple(rng.random(3))))
                             for seq in range(1, 101)]  # fmt: skip
    (part,) = split_range("gw-1", 0, 100, rows)

    assert len(encode_part(part, "binary")) * 3 < len(encode_part(part, "json"))


# --- refusals ---------------------------------------------------------------------------------


def binary_body(kind: str) -> dict[str, Any]:
    """The good part of test_schema_poison as the map inside a binary payload."""
    part = decode_part(json.dumps(good_body(kind)).encode(), topic(kind))
    payload = encode_part(part, "binary")
    packed = zlib.decompress(payload[2:]) if payload[1] == 1 else payload[2:]
    body: dict[str, Any] = msgpack.unpackb(packed, raw=False)
    return body


def packed(body: object, compression: int = 1) -> bytes:
    """As the gateway writes it: layout 2."""
    raw = msgpack.packb(body, use_bin_type=True)
    return bytes((0xB2, compression)) + (zlib.compress(raw) if compression else raw)


def change(kind: str, mutate: Callable[[dict[str, Any]], None]) -> bytes:
    body = binary_body(kind)
    mutate(body)
    return packed(body)


def u64(*numbers: int) -> bytes:
    return np.array(numbers, dtype="<u8").tobytes()


def time_bits(*times: float) -> bytes:
    bits = np.array(times, dtype="<f8").view("<u8")
    return np.diff(bits, prepend=np.uint64(0)).tobytes()


Case = tuple[str, str, Callable[[dict[str, Any]], None], str, str]
RECORD_CASES: list[Case] = [
    ("seq as a list", "features", lambda b: b.update(seq=[1, 2]), "invalid", "seq must be bytes"),
    ("seq block cut", "features", lambda b: b.update(seq=b["seq"][:-1]), "invalid", "seq has 15"),
    ("seqs not rising", "features", lambda b: b.update(seq=u64(1, 0)), "invalid", "not above"),
    ("seq beyond hi", "scores", lambda b: b.update(seq=u64(9)), "invalid", "at most 8"),
    ("t for fewer records", "features", lambda b: b.update(t=b["t"][:8]), "invalid", "t has 8"),
    ("NaN time", "scores", lambda b: b.update(t=time_bits(math.nan)), "invalid", "finite"),
    ("infinite time", "alerts", lambda b: b.update(t=time_bits(math.inf)), "invalid", "finite"),
    ("time in 2200", "scores", lambda b: b.update(t=time_bits(7.3e9)), "implausible", "2100"),
    ("values as a list", "features", lambda b: b.update(values=[1.0]), "invalid", "values must"),
    ("values block short", "features", lambda b: b.update(values=b["values"][:-4]), "invalid",
     "values has 12"),
    ("infinite value", "features",
     lambda b: b.update(values=shuffled(np.float32([1, 2, np.inf, 4]))), "invalid",
     "records[1]: values[0] must be a finite number or NaN"),
    ("dtype f2", "features", lambda b: b.update(dtype="f2"), "invalid", "dtype must be f4"),
    ("schema index out of range", "features", lambda b: b.update(schema=np.uint32([0, 1])
     .tobytes()), "invalid", "records[1]: schema 1"),
    ("names not strings", "features", lambda b: b.update(schemas=[[1, 2]]), "invalid",
     "schemas[0] must be a list of strings"),
    ("infinite error", "scores", lambda b: b.update(error=np.float64([np.inf]).tobytes()),
     "invalid", "error[0] must be a finite number or NaN"),
    ("anomalous 2", "scores", lambda b: b.update(anomalous=b"\x02"), "invalid", "bytes 0 and 1"),
    ("contributors not lists", "scores", lambda b: b.update(contributors=["rms_x"]), "invalid",
     "contributors[0] must be a list"),
    ("model id a number", "scores", lambda b: b.update(model_id=[7]), "invalid",
     "model_id[0] must be a string"),
    ("severity info", "alerts", lambda b: b.update(severity=["info"]), "invalid", "severity"),
    ("channel a number", "alerts", lambda b: b.update(channel=[3]), "invalid", "channel[0]"),
    ("a gap with seqs", "gap", lambda b: b.update(seq=u64(5), t=time_bits(1.0)), "invalid",
     "no records"),
    ("features without records", "features", lambda b: b.update(seq=b"", t=b"", schema=b"",
     values=b""), "invalid", "has no records"),
    ("an unknown field", "scores", lambda b: b.update(extra=1), "unknown_field", "extra"),
    ("a missing field", "alerts", lambda b: b.pop("message"), "missing_field", "message"),
    ("JSON's records field", "scores", lambda b: b.update(records=[]), "unknown_field",
     "records"),
]  # fmt: skip


@pytest.mark.parametrize("case", RECORD_CASES, ids=[case[0] for case in RECORD_CASES])
def test_binary_records_that_break_a_rule_are_refused_with_the_header(case: Case) -> None:
    _, kind, mutate, reason, words = case
    error = refused(change(kind, mutate), kind)

    assert error.reason == reason and words in str(error), str(error)
    assert isinstance(error, RecordsError) and error.header == HEADER[kind]


HEADER_CASES = [
    ("another layout", b"\xb3\x01" + zlib.compress(b"\x80"), "bad_version", "layout 0xb3"),
    ("the magic byte alone", b"\xb1", "bad_binary", "ends after its first byte"),
    ("an unknown compression", packed({}, 0)[:1] + b"\x07" + b"\x80", "bad_binary",
     "compression 7"),
    ("deflate cut short", change("scores", lambda b: None)[:40], "bad_binary", "ends early"),
    ("bytes after the deflate data", change("scores", lambda b: None) + b"x", "bad_binary",
     "after its end"),
    ("not deflate", b"\xb1\x01not deflate", "bad_binary", "not deflate data"),
    ("not msgpack", b"\xb1\x00\xc1", "bad_binary", "not msgpack"),
    ("msgpack cut short", b"\xb1\x00\x82\xa1v", "bad_binary", "not msgpack"),
    ("a list, not a map", packed([1, 2]), "bad_binary", "not a msgpack map"),
    ("an integer key", packed({1: 2}, 0), "bad_binary", "map key"),
    ("a bytes key", packed({b"v": 1}, 0), "bad_binary", "key is not a string"),
    ("protocol version 2", change("scores", lambda b: b.update(v=2)), "bad_version", "v is 2"),
    ("another gateway", change("scores", lambda b: b.update(gateway="gw-9")),
     "gateway_mismatch", "gw-9"),
    ("hi beyond the highest seq", change("scores", lambda b: b.update(hi=2**60)),
     "implausible", "above the highest seq"),
]  # fmt: skip


@pytest.mark.parametrize("case", HEADER_CASES, ids=[case[0] for case in HEADER_CASES])
def test_binary_payloads_without_a_valid_header_are_refused_with_a_reason(
    case: tuple[str, bytes, str, str],
) -> None:
    _, payload, reason, words = case
    error = refused(payload, "scores")

    assert error.reason == reason and words in str(error), str(error)
    assert not isinstance(error, RecordsError)


def deflate_bomb(inflated_mib: int) -> bytes:
    """Zeros that inflate to `inflated_mib` MiB, deflated chunk by chunk (never all in memory)."""
    deflater = zlib.compressobj(9)
    chunk = bytes(1024 * 1024)
    body = b"".join(deflater.compress(chunk) for _ in range(inflated_mib))
    return b"\xb1\x01" + body + deflater.flush()


def test_a_deflate_bomb_is_refused_at_the_limit_without_inflating_it_all() -> None:
    bomb = deflate_bomb(256)  # 256 MiB inflated; at most the 16 MiB limit (+ buffers) is held
    assert len(bomb) < MAX_PART_BYTES // 16

    tracemalloc.start()
    try:
        error = refused(bomb, "scores")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert error.reason == "too_large" and "inflates to more than" in str(error)
    assert peak < 3 * MAX_PART_BYTES, f"{peak / 2**20:.0f} MiB held while refusing it"


def test_a_small_payload_inflating_beyond_the_receivers_limit_is_refused() -> None:
    payload = change("scores", lambda b: b.update(model_id=["x" * 50_000]))
    assert len(payload) < 4096

    with pytest.raises(SchemaError) as raised:
        decode_part(payload, topic("scores"), max_bytes=4096)
    assert raised.value.reason == "too_large"
    assert decode_part(payload, topic("scores")).records


# --- properties -------------------------------------------------------------------------------

binary_values = json_values | st.binary(max_size=24) | st.sampled_from(
    [math.nan, math.inf, -math.inf, 2**64 - 1, -(2**63), 2**53]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(["features", "scores", "alerts", "gap"]))
def test_any_value_anywhere_in_a_binary_part_is_refused_or_decodes_to_a_valid_part(
    data: st.DataObject, kind: str
) -> None:
    body = binary_body(kind)
    path = data.draw(st.sampled_from(paths(body)), label="path")
    put(body, path, data.draw(binary_values, label="value"))
    try:
        payload = packed(body)
    except OverflowError:  # an integer msgpack cannot carry: no sender can send it
        assume(False)

    header_fields = {"v", "gateway", "lo", "hi", "part", "parts", "kind", "asset"}
    assert_refused_or_valid(payload, kind, header_intact=path[0] not in header_fields)


@settings(max_examples=200, deadline=None)
@given(rest=st.binary(max_size=300), compression=st.sampled_from([0, 1, 2]))
def test_any_bytes_after_the_magic_byte_are_refused_with_a_reason(
    rest: bytes, compression: int
) -> None:
    assert_refused_or_valid(bytes((0xB1, compression)) + rest, "features", header_intact=False)


@settings(max_examples=200, deadline=None)
@given(
    cut=st.integers(0, 300),
    junk=st.binary(max_size=8),
    kind=st.sampled_from(["features", "scores", "alerts"]),
    compression=st.sampled_from([0, 1]),
)
def test_a_cut_or_spliced_binary_payload_is_refused_with_a_reason(
    cut: int, junk: bytes, kind: str, compression: int
) -> None:
    good = packed(binary_body(kind), compression)
    assert_refused_or_valid(good[:cut] + junk + good[cut + len(junk) :], kind, header_intact=False)


def test_the_formats_are_told_apart_by_the_first_byte() -> None:
    part: Part = decode_part(json.dumps(good_body("alerts")).encode(), topic("alerts"))
    as_json, as_binary = encode_part(part, "json"), encode_part(part, "binary")

    assert as_json[:1] == b"{" and as_binary[:1] == b"\xb2"
    assert decode_part(as_json, topic("alerts")).records == part.records
    assert decode_part(as_binary, topic("alerts")).records == part.records


# --- layout 2: schemas by reference, values byte-shuffled -------------------------------------

WIRE = Path(__file__).parent / "wire"


def features_part() -> Part:
    rows: list[SeqRecord] = [(seq, vector(1e9 + seq, values=(seq / 3, -seq * 1e-3)))
                             for seq in (3, 4, 7)]  # fmt: skip
    (part,) = split_range("gw-1", 2, 7, rows)
    return part


def test_a_known_schema_goes_by_an_8_byte_reference_the_receiver_resolves_from_its_book() -> None:
    part, book = features_part(), SchemaBook()
    ref = schema_ref(NAMES[:2])
    with_names = encode_part(part, "binary")
    by_ref = encode_part(part, "binary", known_schemas={ref})

    assert len(ref) == 8 and NAMES[1].encode() not in zlib.decompress(by_ref[2:])
    assert decode_part(with_names, part.topic(PREFIX), schemas=book).records  # learns it
    got = decode_part(by_ref, part.topic(PREFIX), schemas=book)
    for (seq, record), (want_seq, want) in zip(got.records, part.records, strict=True):
        assert seq == want_seq
        assert_same_over_binary(record, want, wide=False)


def test_an_unknown_reference_is_refused_with_its_header_but_not_as_a_records_error() -> None:
    part = features_part()
    ref = schema_ref(NAMES[:2])

    with pytest.raises(UnknownSchemas) as caught:
        decode_part(encode_part(part, "binary", known_schemas={ref}), part.topic(PREFIX),
                    schemas=SchemaBook())  # fmt: skip

    assert not isinstance(caught.value, RecordsError)  # a RecordsError would be accounted
    assert caught.value.reason == "unknown_schema" and caught.value.refs == {ref}
    assert caught.value.header is not None and caught.value.header.hi == 7
    assert ref.hex() in str(caught.value)


def test_the_reference_is_the_head_of_the_receivers_sha256_key_of_the_names() -> None:
    names = ("accel_x.rms", "température", "z")
    key = hashlib.sha256(json.dumps(list(names), ensure_ascii=False,
                                    separators=(",", ":")).encode()).hexdigest()  # fmt: skip
    assert names_text(names) == '["accel_x.rms","température","z"]'
    assert key.startswith(schema_ref(names).hex())


@pytest.mark.parametrize("item", [b"short", b"x" * 9, 7, None, {"a": 1}])
def test_a_schema_that_is_neither_names_nor_a_reference_is_refused(item: object) -> None:
    body = binary_body("features")
    body["schemas"] = [item]

    error = refused(packed(body), "features")

    assert isinstance(error, RecordsError) and "schemas" in str(error), str(error)


@pytest.mark.parametrize("kind", ["features", "scores", "alerts"])
def test_parts_of_binary_layout_1_written_by_the_previous_release_still_decode(kind: str) -> None:
    """tests/uplink/wire/layout1_*.bin were written by encode_part at fb53637 (layout 1:
    names in every part, values not shuffled)."""
    payload = (WIRE / f"layout1_{kind}.bin").read_bytes()
    assert payload[0] == 0xB1

    part = decode_part(payload, f"appliance/gw-1/{kind}/pump-1")

    assert (part.lo, part.hi, part.kind) == (10, 15, kind)
    first_seq, first = part.records[0]
    if kind == "features":
        assert isinstance(first, FeatureVector) and first_seq == 11
        assert first.names == ("accel_x.rms", "accel_x.kurtosis", "temp.mean")
        assert first.values[0] == 0.125 and math.isnan(first.values[1]) and first.values[2] == 41.5
    else:
        assert first_seq == (12 if kind == "scores" else 15)
