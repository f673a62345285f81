"""Poison payloads (issue 12): whatever bytes arrive on a data topic, decode_part returns a valid
Part or raises SchemaError with a stable reason and a bounded message naming the field, never
another exception (the receiver crash-looped on RecursionError, OverflowError and
UnicodeEncodeError). Pure: no broker, no database."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.records import Alert, FeatureVector, Score
from appliance.uplink.schema import (
    MAX_SEQ,
    MAX_TIME,
    MIN_TIME,
    Part,
    PartHeader,
    RecordsError,
    SchemaError,
    UnknownSchemas,
    decode_part,
    encode_part,
    load_json,
    split_range,
)

GATEWAY = "gw-1"
T0 = 1_767_225_600.0
REASONS = {
    "bad_topic", "too_large", "too_deep", "bad_json", "bad_version", "gateway_mismatch",
    "topic_mismatch", "missing_field", "unknown_field", "invalid", "implausible", "bad_text",
    "bad_name", "bad_kind", "bad_binary", "unknown_schema",
}  # fmt: skip
MAX_MESSAGE_CHARS = 1500
BIG = int("9" * 400)


def topic(kind: str) -> str:
    return f"appliance/{GATEWAY}/{kind}/{'_' if kind == 'gap' else 'pump-1'}"


def good_body(kind: str) -> dict[str, Any]:
    """A valid part of (4, 8] of the given kind, as JSON values."""
    rows: dict[str, list[tuple[int, Any]]] = {
        "features": [
            (5, FeatureVector("pump-1", T0, ("rms_x", "peak_x"), np.array([1.0, 2.0]))),
            (7, FeatureVector("pump-1", T0 + 1, ("rms_x", "peak_x"), np.array([3.0, 4.0]))),
        ],
        "scores": [(5, Score("pump-1", T0, "ae@sha256:00", 0.5, 2.0, False, ("rms_x",)))],
        "alerts": [(6, Alert("pump-1", T0, "critical", "anomaly_raised", "pump-1 anomalous"))],
        "gap": [],
    }
    (part,) = split_range(GATEWAY, 4, 8, rows[kind])
    body: dict[str, Any] = json.loads(encode_part(part))
    return body


HEADER = {kind: PartHeader(GATEWAY, 4, 8, 0, 1, kind, "_" if kind == "gap" else "pump-1")
          for kind in ("features", "scores", "alerts", "gap")}  # fmt: skip


def refused(payload: bytes, kind: str = "features") -> SchemaError:
    with pytest.raises(SchemaError) as raised:
        decode_part(payload, topic(kind))
    error = raised.value
    assert error.reason in REASONS
    assert len(str(error)) < MAX_MESSAGE_CHARS
    assert topic(kind) in str(error)
    return error


def with_text(kind: str, change: Callable[[dict[str, Any]], None], raw: str = "") -> bytes:
    """The good body changed by `change`; the string "@RAW@" in it is replaced by `raw` (JSON
    text that Python's encoder would not write: deep nesting, 1e400, a lone surrogate escape)."""
    body = good_body(kind)
    change(body)
    return json.dumps(body).replace('"@RAW@"', raw).encode()


def set_record(field: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda body: body["records"][0].update({field: value})


# --- the reproductions of issue 12 ------------------------------------------------------------

POISON = [
    # (id, kind, payload, reason, words, header kept)
    ("200 KB of brackets", "scores", b"[" * 100_000 + b"]" * 100_000, "too_deep",
     "nested too deep to parse", False),
    ("a deep value inside an object", "features",
     with_text("features", set_record("values", "@RAW@"), "[" * 5000 + "]" * 5000),
     "too_deep", "nested too deep to parse", False),
    ("a value nested 50 deep", "features",
     with_text("features", lambda b: b.update(extra="@RAW@"), "[" * 50 + "]" * 50),
     "too_deep", "nested deeper than 4 levels", False),
    ("hi = 2**63", "features", with_text("features", lambda b: b.update(hi=2**63)),
     "implausible", "hi 9223372036854775808 is above the highest seq", False),
    ("the range (0, 2**62]", "gap", with_text("gap", lambda b: b.update(lo=0, hi=2**62)),
     "implausible", "hi 4611686018427387904 is above the highest seq", False),
    ("seq = 2**63", "scores", with_text("scores", set_record("seq", 2**63)),
     "invalid", "records[0]: seq 9223372036854775808 is not above", True),
    ("t as a 400-digit integer", "alerts", with_text("alerts", set_record("t", BIG)),
     "invalid", "records[0]: t must be a finite number, not an integer of 400 digits", True),
    ("error as a 400-digit integer", "scores", with_text("scores", set_record("error", BIG)),
     "invalid", "records[0]: error must be a finite number, not an integer of 400 digits", True),
    ("values as a 400-digit integer", "features",
     with_text("features", lambda b: b["records"][0]["values"].__setitem__(1, BIG)),
     "invalid", "records[0]: values[1] must be a finite number, not an integer of 400", True),
    ("a lone surrogate in an alert message", "alerts",
     with_text("alerts", set_record("message", "@RAW@"), '"pump \\ud800 anomalous"'),
     "bad_text", "records[0]: message has a lone surrogate '\\ud800' at character 5", True),
    ("a lone surrogate in a feature name", "features",
     with_text("features", lambda b: b["schemas"][0].__setitem__(1, "@RAW@"), '"\\udfff"'),
     "bad_text", "schemas[0][1] has a lone surrogate", True),
    ("t = 1e400", "features", with_text("features", set_record("t", "@RAW@"), "1e400"),
     "invalid", "records[0]: t must be a finite number, not inf", True),
    ("values 1e400", "features",
     with_text("features", lambda b: b["records"][1]["values"].__setitem__(0, "@RAW@"), "-1e400"),
     "invalid", "records[1]: values[0] must be a finite number, not -inf", True),
    ("threshold 1e400", "scores", with_text("scores", set_record("threshold", "@RAW@"), "1e999"),
     "invalid", "records[0]: threshold must be a finite number, not inf", True),
    ("t before 1970", "scores", with_text("scores", set_record("t", -1.0)),
     "implausible", "records[0]: t -1.0 is outside 1970-01-01..2100-01-01", True),
    ("t in 2150", "alerts", with_text("alerts", set_record("t", 5.7e9)),
     "implausible", "records[0]: t 5700000000.0 is outside", True),
    ("a million parts", "features", with_text("features", lambda b: b.update(parts=10**6)),
     "implausible", "parts 1000000 is above 4096", False),
    ("a megabyte-long unknown field name", "features",
     with_text("features", lambda b: b.update({"x" * 1_000_000: 1})),
     "unknown_field", "unknown field(s) 'xxxxxxxx", True),
    ("a megabyte-long version", "features",
     with_text("features", lambda b: b.update(v="v" * 10**6)), "bad_version", "v is 'vvvvv", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "payload", "reason", "words", "header_kept"),
    [case[1:] for case in POISON],
    ids=[case[0] for case in POISON],
)
def test_each_poison_payload_is_refused_with_a_reason_naming_the_field(
    kind: str, payload: bytes, reason: str, words: str, header_kept: bool
) -> None:
    error = refused(payload, kind)

    assert error.reason == reason
    assert words in str(error)
    if header_kept:
        assert isinstance(error, RecordsError) and error.header == HEADER[kind]
    else:
        assert not isinstance(error, RecordsError)


def test_a_payload_above_the_size_limit_is_refused_unread() -> None:
    payload = json.dumps(good_body("features")).encode()
    with pytest.raises(SchemaError, match=rf"{len(payload)} bytes, more than 100") as raised:
        decode_part(payload, topic("features"), max_bytes=100)
    assert raised.value.reason == "too_large"


def test_the_good_bodies_decode() -> None:
    for kind in ("features", "scores", "alerts", "gap"):
        part = decode_part(json.dumps(good_body(kind)).encode(), topic(kind))
        assert part.header == HEADER[kind]


# --- load_json, shared with the command topic -------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "max_depth", "reason", "words"),
    [
        (b"[" * 100_000 + b"]" * 100_000, 16, "too_deep", "nested too deep to parse"),
        (b'{"a": ' + b"[" * 17 + b"]" * 17 + b"}", 16, "too_deep", "deeper than 16 levels"),
        (b'{"a": {"b": {"c": 1}}}', 2, "too_deep", "deeper than 2 levels"),
        (b'{"n": ' + b"9" * 5000 + b"}", 16, "bad_json", "not UTF-8 JSON"),
        (b'{"a": "\xed\xa0\x80"}', 16, "bad_json", "not UTF-8 JSON"),
        (b"[]", 16, "bad_json", "not a JSON object"),
    ],
)
def test_load_json_refuses_what_could_end_a_process(
    payload: bytes, max_depth: int, reason: str, words: str
) -> None:
    with pytest.raises(SchemaError) as raised:
        load_json(payload, "command", max_depth=max_depth)
    assert (raised.value.reason, words in str(raised.value)) == (reason, True)
    assert str(raised.value).startswith("command: ")


def test_load_json_keeps_what_is_within_its_limits() -> None:
    body = {"a": [[{"b": [1, 2.5, None, "x", True]}]], "c": 10**30}
    assert load_json(json.dumps(body).encode(), "command", max_depth=5) == body


# --- properties -------------------------------------------------------------------------------


def assert_valid(part: Part, kind: str) -> None:
    """What a decoded part promises the receiver's database."""
    expected = HEADER[kind]
    assert (part.gateway, part.kind, part.asset) == (expected.gateway, kind, expected.asset)
    assert 0 <= part.lo < part.hi <= MAX_SEQ and 0 <= part.part < part.parts
    previous = part.lo
    for seq, record in part.records:
        assert previous < seq <= part.hi <= MAX_SEQ
        previous = seq
        t = record.window_end if isinstance(record, FeatureVector) else record.t
        assert MIN_TIME <= t < MAX_TIME
        if isinstance(record, FeatureVector):
            assert not np.isinf(record.values).any()
            "".join(record.names).encode("utf-8")
        elif isinstance(record, Score):
            assert not math.isinf(record.error) and not math.isinf(record.threshold)
            (record.model_id + "".join(record.contributors)).encode("utf-8")
        else:
            (record.kind + record.message + (record.channel or "")).encode("utf-8")


def assert_refused_or_valid(payload: bytes, kind: str, header_intact: bool) -> None:
    try:
        part = decode_part(payload, topic(kind))
    except SchemaError as error:
        assert error.reason in REASONS, error.reason
        assert topic(kind) in str(error) and len(str(error)) < MAX_MESSAGE_CHARS
        if isinstance(error, RecordsError | UnknownSchemas):  # a mutated 8-byte schema reference
            assert error.header == HEADER[kind]
        elif header_intact:  # a refusal after the header must carry it
            assert error.reason in {"too_deep", "too_large"}, error
        return
    assert_valid(part, kind)


surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
raw_values = st.one_of(
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(2**53, 10**400).map(str),
    st.integers(-(10**400), -1).map(str),
    st.sampled_from(["1e400", "-1e999", "1e-400", "-0.0", "4102444800", "-1"]),
    surrogates.map(lambda c: json.dumps(c)),  # "\udxxx": a lone surrogate escape
    st.text(max_size=5).map(json.dumps),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


def paths(body: Any) -> list[tuple[Any, ...]]:
    """Every place in a JSON value where a value can be put."""
    found: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), body)]
    while stack:
        path, value = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            found.append((*path, key))
            if isinstance(item, dict | list):
                stack.append(((*path, key), item))
    return found


def put(body: Any, path: tuple[Any, ...], value: object) -> None:
    for key in path[:-1]:
        body = body[key]
    body[path[-1]] = value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(["features", "scores", "alerts", "gap"]))
def test_any_value_anywhere_is_refused_with_a_reason_or_decodes_to_a_valid_part(
    data: st.DataObject, kind: str
) -> None:
    body = good_body(kind)
    path = data.draw(st.sampled_from(paths(body)), label="path")
    raw = data.draw(st.none() | raw_values, label="raw")
    value = "@RAW@" if raw is not None else data.draw(json_values, label="value")
    put(body, path, value)
    payload = json.dumps(body).replace('"@RAW@"', raw or '"@RAW@"').encode()

    assert_refused_or_valid(payload, kind, header_intact=path[0] in ("records", "schemas"))
    # nothing is left behind: the good part still decodes
    assert decode_part(json.dumps(good_body(kind)).encode(), topic(kind)).header == HEADER[kind]


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=300), kind=st.sampled_from(["features", "gap"]))
def test_any_bytes_are_refused_with_a_reason(payload: bytes, kind: str) -> None:
    assert_refused_or_valid(payload, kind, header_intact=False)


@settings(max_examples=200, deadline=None)
@given(
    cut=st.integers(0, 400),
    junk=st.binary(max_size=8),
    kind=st.sampled_from(["features", "scores", "alerts"]),
)
def test_a_cut_or_spliced_payload_is_refused_with_a_reason(
    cut: int, junk: bytes, kind: str
) -> None:
    good = json.dumps(good_body(kind)).encode()
    assert_refused_or_valid(good[:cut] + junk + good[cut + len(junk) :], kind, header_intact=False)
