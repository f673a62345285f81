"""The uplink schema: topics, parts, acks and status (pure, no event loop)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.records import Alert, FeatureVector, Score
from appliance.uplink.errors import SchemaError, UplinkError
from appliance.uplink.schema import (
    GAP_ASSET,
    Part,
    SeqRecord,
    UplinkRecord,
    ack_topic,
    data_topic,
    decode_ack,
    decode_part,
    decode_status,
    encode_ack,
    encode_part,
    encode_status,
    parse_data_topic,
    shared_subscription,
    split_range,
    status_topic,
)

PREFIX = "appliance"
NAMES = ("rms_x", "kurtosis_x", "peak_x")


def vector(t: float, asset: str = "pump-1", values: Sequence[float] = (1.0, 2.0, 3.0)) -> Any:
    return FeatureVector(asset, t, NAMES[: len(values)], np.array(values, dtype=np.float64))


def score(t: float, asset: str = "pump-1", error: float = 0.5) -> Score:
    return Score(asset, t, "ae@sha256:00", error, 2.0, error > 2.0, ("rms_x",))


def alert(t: float, asset: str = "pump-1", channel: str | None = None) -> Alert:
    return Alert(asset, t, "critical", "anomaly_raised", f"{asset} anomalous", channel)


def assert_same_record(got: UplinkRecord, want: UplinkRecord) -> None:
    """Equal, with NaN equal to NaN and non-finite feature values arriving as NaN."""
    assert type(got) is type(want)
    if isinstance(want, FeatureVector):
        assert isinstance(got, FeatureVector)
        assert (got.asset, got.window_end, got.names) == (want.asset, want.window_end, want.names)
        expected = np.where(np.isfinite(want.values), want.values, np.nan)
        np.testing.assert_array_equal(got.values, expected)
        assert got.values.dtype == np.float64
    elif isinstance(want, Score):
        assert isinstance(got, Score)
        for name in ("asset", "t", "model_id", "anomalous", "contributors"):
            assert getattr(got, name) == getattr(want, name)
        for name in ("error", "threshold"):
            wanted = getattr(want, name)
            expected = wanted if math.isfinite(wanted) else math.nan
            np.testing.assert_equal(getattr(got, name), expected)
    else:
        assert got == want


def assert_same_rows(got: Sequence[SeqRecord], want: Sequence[SeqRecord]) -> None:
    assert [seq for seq, _ in got] == [seq for seq, _ in want]
    for (_, got_record), (_, want_record) in zip(got, want, strict=True):
        assert_same_record(got_record, want_record)


def round_trip(parts: Sequence[Part]) -> list[Part]:
    return [decode_part(encode_part(part), part.topic(PREFIX)) for part in parts]


def merged(parts: Sequence[Part]) -> list[SeqRecord]:
    return sorted((row for part in parts for row in part.records), key=lambda row: row[0])


# --- topics -----------------------------------------------------------------------------------


def test_topics_follow_the_design() -> None:
    assert data_topic(PREFIX, "gw-1", "features", "pump-1") == "appliance/gw-1/features/pump-1"
    assert data_topic(PREFIX, "gw-1", "gap", GAP_ASSET) == "appliance/gw-1/gap/_"
    assert status_topic(PREFIX, "gw-1") == "appliance/gw-1/status"
    assert ack_topic(PREFIX, "gw-1") == "appliance/gw-1/ack"
    assert shared_subscription("rx", PREFIX) == "$share/rx/appliance/+/+/+"


def test_a_prefix_may_have_several_levels() -> None:
    topic = data_topic("plant-7/line-2", "gw-1", "scores", "fan")
    parsed = parse_data_topic(topic)
    assert (parsed.prefix, parsed.gateway, parsed.kind, parsed.asset) == (
        "plant-7/line-2",
        "gw-1",
        "scores",
        "fan",
    )


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#", "nul\x00"])
def test_names_that_cannot_be_one_topic_level_are_refused(bad: str) -> None:
    with pytest.raises(SchemaError, match="gateway"):
        data_topic(PREFIX, bad, "features", "pump-1")
    with pytest.raises(SchemaError, match="asset"):
        data_topic(PREFIX, "gw-1", "features", bad)
    with pytest.raises(SchemaError, match="group"):
        shared_subscription(bad, PREFIX)


@pytest.mark.parametrize("bad", ["", "$SYS", "a//b", "a/+", "a/#", "/a"])
def test_bad_prefixes_are_refused(bad: str) -> None:
    with pytest.raises(SchemaError, match="prefix"):
        status_topic(bad, "gw-1")


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(SchemaError, match="kind must be one of"):
        data_topic(PREFIX, "gw-1", "status", "pump-1")


@pytest.mark.parametrize(
    "topic", ["appliance/gw-1/status", "appliance/gw-1/ack/x", "gw/features/a", "a/gw//x"]
)
def test_topics_that_are_not_data_topics_are_refused(topic: str) -> None:
    with pytest.raises(SchemaError) as raised:
        parse_data_topic(topic)
    assert raised.value.reason == "bad_topic"
    assert topic in str(raised.value)


def test_schema_error_is_an_uplink_error() -> None:
    assert issubclass(SchemaError, UplinkError)


# --- split and round trip ---------------------------------------------------------------------


def test_a_range_is_split_into_one_part_per_kind_and_asset_in_a_fixed_order() -> None:
    rows: list[SeqRecord] = [
        (11, alert(1.0)),
        (12, vector(1.0, "pump-1")),
        (13, score(1.0, "pump-1")),
        (15, vector(2.0, "fan")),
        (16, vector(3.0, "pump-1")),
    ]
    parts = split_range("gw-1", 10, 20, rows)

    assert [(p.kind, p.asset, p.part, p.parts) for p in parts] == [
        ("features", "fan", 0, 4),
        ("features", "pump-1", 1, 4),
        ("scores", "pump-1", 2, 4),
        ("alerts", "pump-1", 3, 4),
    ]
    assert all((p.gateway, p.lo, p.hi) == ("gw-1", 10, 20) for p in parts)
    assert [seq for seq, _ in parts[1].records] == [12, 16]
    assert_same_rows(merged(round_trip(parts)), rows)


def test_the_same_groups_get_the_same_part_numbers_whatever_was_evicted() -> None:
    full = split_range("gw-1", 0, 9, [(1, vector(1.0)), (2, score(1.0)), (3, vector(2.0))])
    fewer = split_range("gw-1", 0, 9, [(2, score(1.0)), (3, vector(2.0))])
    assert [(p.kind, p.part) for p in full] == [(p.kind, p.part) for p in fewer]


def test_an_empty_range_is_one_gap_part() -> None:
    (gap,) = split_range("gw-1", 100, 250, [])
    assert (gap.kind, gap.asset, gap.part, gap.parts, gap.records) == ("gap", "_", 0, 1, [])
    assert gap.topic(PREFIX) == "appliance/gw-1/gap/_"
    (back,) = round_trip([gap])
    assert (back.lo, back.hi, back.kind, back.records) == (100, 250, "gap", [])


def test_the_header_and_records_are_plain_json() -> None:
    (part,) = split_range("gw-1", 0, 2, [(2, vector(5.5, values=(1.0, math.nan, math.inf)))])
    body = json.loads(encode_part(part))
    assert body == {
        "v": 1,
        "gateway": "gw-1",
        "lo": 0,
        "hi": 2,
        "part": 0,
        "parts": 1,
        "kind": "features",
        "asset": "pump-1",
        "schemas": [list(NAMES)],
        "records": [{"seq": 2, "t": 5.5, "schema": 0, "values": [1.0, None, None]}],
    }


def test_features_with_two_name_sets_share_a_part() -> None:
    rows: list[SeqRecord] = [(1, vector(1.0, values=(1.0, 2.0))), (2, vector(2.0))]
    (part,) = split_range("gw-1", 0, 2, rows)
    assert len(json.loads(encode_part(part))["schemas"]) == 2
    assert_same_rows(merged(round_trip([part])), rows)


names = st.text(st.characters(blacklist_characters="/+#\x00", codec="utf-8"), min_size=1)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
any_floats = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def records(draw: st.DrawFn) -> UplinkRecord:
    asset = draw(st.sampled_from(["pump-1", "fan", "ünïcode"]))
    t = draw(times)
    kind = draw(st.sampled_from(["features", "scores", "alerts"]))
    if kind == "features":
        width = draw(st.integers(1, 5))
        values = draw(st.lists(any_floats, min_size=width, max_size=width))
        return FeatureVector(asset, t, tuple(f"f{i}" for i in range(width)), np.array(values))
    if kind == "scores":
        contributors = tuple(draw(st.lists(names, max_size=3)))
        return Score(asset, t, draw(names), draw(any_floats), draw(any_floats), draw(st.booleans()),
                     contributors)  # fmt: skip
    severity = draw(st.sampled_from(["warning", "critical"]))
    return Alert(asset, t, severity, draw(names), draw(st.text()), draw(st.none() | names))


@st.composite
def ranges(draw: st.DrawFn) -> tuple[int, int, list[SeqRecord]]:
    lo = draw(st.integers(0, 10**12))
    seqs = sorted(draw(st.sets(st.integers(lo + 1, lo + 200), max_size=25)))
    hi = draw(st.integers(max([lo + 1, *seqs]), lo + 300))
    return lo, hi, [(seq, draw(records())) for seq in seqs]


@settings(max_examples=150, deadline=None)
@given(ranges())
def test_any_range_survives_split_encode_decode_and_merge(
    case: tuple[int, int, list[SeqRecord]],
) -> None:
    lo, hi, rows = case
    parts = split_range("gw-1", lo, hi, rows)
    decoded = round_trip(parts)

    assert_same_rows(merged(decoded), rows)
    assert {(p.lo, p.hi, p.parts) for p in decoded} == {(lo, hi, len(parts))}
    assert [p.part for p in decoded] == list(range(len(parts)))
    assert len({(p.kind, p.asset) for p in decoded}) == len(parts)


# --- refusals ---------------------------------------------------------------------------------


def encoded(kind: str = "features") -> dict[str, Any]:
    rows: dict[str, list[SeqRecord]] = {
        "features": [(5, vector(1.0)), (7, vector(2.0))],
        "scores": [(5, score(1.0))],
        "alerts": [(5, alert(1.0, channel="acc_x"))],
        "gap": [],
    }
    (part,) = split_range("gw-1", 4, 8, rows[kind])
    body: dict[str, Any] = json.loads(encode_part(part))
    return body


def refusal(body: dict[str, Any], topic: str = "appliance/gw-1/features/pump-1") -> SchemaError:
    with pytest.raises(SchemaError) as raised:
        decode_part(json.dumps(body).encode(), topic)
    return raised.value


def test_a_payload_whose_gateway_differs_from_its_topic_is_refused() -> None:
    error = refusal(encoded(), topic="appliance/gw-2/features/pump-1")
    assert error.reason == "gateway_mismatch"
    assert "'gw-1'" in str(error) and "'gw-2'" in str(error)


def test_a_payload_on_another_kind_or_asset_topic_is_refused() -> None:
    assert refusal(encoded(), topic="appliance/gw-1/scores/pump-1").reason == "topic_mismatch"
    assert refusal(encoded(), topic="appliance/gw-1/features/fan").reason == "topic_mismatch"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "bad_json"),
        (b"{", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (b'{"v": NaN}', "bad_json"),
    ],
)
def test_bytes_that_are_not_a_json_object_are_refused(payload: bytes, reason: str) -> None:
    with pytest.raises(SchemaError) as raised:
        decode_part(payload, "appliance/gw-1/features/pump-1")
    assert raised.value.reason == reason


def test_a_time_too_large_for_a_float_is_refused() -> None:
    payload = json.dumps(encoded()).replace('"t": 1.0', '"t": 1e400').encode()
    with pytest.raises(SchemaError, match=r"records\[0\]: t must be a finite number, not inf"):
        decode_part(payload, "appliance/gw-1/features/pump-1")


Mutation = Callable[[dict[str, Any]], object]


@pytest.mark.parametrize(
    ("mutate", "reason", "words"),
    [
        (lambda b: b.update(v=2), "bad_version", "v is 2"),
        (lambda b: b.update(v=True), "bad_version", "v is True"),
        (lambda b: b.update(extra=1), "unknown_field", "extra"),
        (lambda b: b.pop("schemas"), "missing_field", "schemas"),
        (lambda b: b["records"][0].pop("t"), "missing_field", "records[0]: missing field(s) t"),
        (lambda b: b.update(lo=True), "invalid", "lo must be an integer"),
        (lambda b: b.update(lo=8), "invalid", "0 <= lo < hi"),
        (lambda b: b.update(lo=-1), "invalid", "0 <= lo < hi"),
        (lambda b: b.update(part=1), "invalid", "part 1 of 1"),
        (lambda b: b.update(parts=0), "invalid", "part 0 of 0"),
        (lambda b: b["records"][1].update(seq=5), "invalid", "seq 5 is not above"),
        (lambda b: b["records"][1].update(seq=9), "invalid", "at most 8"),
        (lambda b: b["records"][0].update(seq=4), "invalid", "seq 4 is not above"),
        (lambda b: b["records"][0].update(seq=5.0), "invalid", "records[0]: seq must be"),
        (lambda b: b["records"][0].update(t=None), "invalid", "records[0]: t must be"),
        (lambda b: b["records"][0].update(schema=1), "invalid", "schema 1 is not an index"),
        (lambda b: b["records"][0]["values"].pop(), "invalid", "list of 3 numbers"),
        (lambda b: b["records"][0]["values"].__setitem__(1, "2"), "invalid", "values[1]"),
        (lambda b: b["records"][0]["values"].__setitem__(2, True), "invalid", "values[2]"),
        (lambda b: b.update(schemas=[[1, 2, 3]]), "invalid", "schemas[0]"),
        (lambda b: b.update(records=[]), "invalid", "has no records"),
        (lambda b: b.update(records={}), "invalid", "records must be a list"),
        (lambda b: b["records"].__setitem__(0, 5), "invalid", "records[0]: must be an object"),
    ],
)
def test_features_that_break_a_rule_are_refused_naming_the_field(
    mutate: Mutation, reason: str, words: str
) -> None:
    body = encoded("features")
    mutate(body)
    error = refusal(body)
    assert error.reason == reason
    assert words in str(error)
    assert "appliance/gw-1/features/pump-1" in str(error)


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda r: r.update(anomalous=1), "anomalous must be true or false"),
        (lambda r: r.update(error="high"), "error must be a number or null"),
        (lambda r: r.update(contributors="rms_x"), "contributors must be a list of strings"),
        (lambda r: r.update(model_id=None), "model_id must be a string"),
    ],
)
def test_bad_scores_are_refused(mutate: Mutation, words: str) -> None:
    body = encoded("scores")
    mutate(body["records"][0])
    assert words in str(refusal(body, topic="appliance/gw-1/scores/pump-1"))


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda r: r.update(severity="info"), "severity must be one of"),
        (lambda r: r.update(channel=3), "channel must be a string"),
        (lambda r: r.update(message=None), "message must be a string"),
    ],
)
def test_bad_alerts_are_refused(mutate: Mutation, words: str) -> None:
    body = encoded("alerts")
    mutate(body["records"][0])
    assert words in str(refusal(body, topic="appliance/gw-1/alerts/pump-1"))


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda b: b.update(records=[{"seq": 5}]), "a gap is the only part"),
        (lambda b: b.update(parts=2), "a gap is the only part"),
    ],
)
def test_gaps_carry_nothing_and_stand_alone(mutate: Mutation, words: str) -> None:
    body = encoded("gap")
    mutate(body)
    assert words in str(refusal(body, topic="appliance/gw-1/gap/_"))


def test_a_gap_on_a_named_asset_is_refused() -> None:
    body = encoded("gap")
    body["asset"] = "pump-1"
    assert "a gap is the only part" in str(refusal(body, topic="appliance/gw-1/gap/pump-1"))


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        ([(3, vector(1.0)), (2, vector(2.0))], "seq 2 is not above the previous seq 3"),
        ([(0, vector(1.0))], "seq 0 is not above the previous seq 0"),
        ([(11, vector(1.0))], "at most 10"),
        ([(1, vector(1.0, asset="a/b"))], "asset of the features record with seq 1"),
        ([(1, "not a record")], "a str is not a record"),
    ],
)
def test_split_range_refuses_rows_that_do_not_fit_the_range(
    rows: list[SeqRecord], words: str
) -> None:
    with pytest.raises(SchemaError, match=words):
        split_range("gw-1", 0, 10, rows)


def test_split_range_refuses_an_empty_or_inverted_range() -> None:
    with pytest.raises(SchemaError, match="0 <= lo < hi"):
        split_range("gw-1", 5, 5, [])


def test_encode_part_refuses_a_hand_built_part_that_breaks_the_rules() -> None:
    foreign = Part("gw-1", 0, 5, 0, 1, "features", "pump-1", [(1, vector(1.0, asset="fan"))])
    with pytest.raises(SchemaError, match="seq 1 is a features record of 'fan'"):
        encode_part(foreign)
    mixed = Part("gw-1", 0, 5, 0, 1, "scores", "pump-1", [(1, vector(1.0))])
    with pytest.raises(SchemaError, match="seq 1 is a features record"):
        encode_part(mixed)
    timeless = Part("gw-1", 0, 5, 0, 1, "alerts", "pump-1", [(1, alert(math.inf))])
    with pytest.raises(SchemaError, match="t must be finite"):
        encode_part(timeless)
    ragged = FeatureVector("pump-1", 1.0, NAMES, np.zeros(2))
    with pytest.raises(SchemaError, match="3 names but values of shape"):
        encode_part(Part("gw-1", 0, 5, 0, 1, "features", "pump-1", [(1, ragged)]))


# --- acks and status --------------------------------------------------------------------------


def test_acks_round_trip() -> None:
    payload = encode_ack("gw-1", 12345)
    assert json.loads(payload) == {"v": 1, "gateway": "gw-1", "seq": 12345}
    ack = decode_ack(payload, "gw-1")
    assert (ack.gateway, ack.seq, ack.announced) == ("gw-1", 12345, False)


def test_an_announcement_is_an_ack_that_says_so() -> None:
    payload = encode_ack("gw-1", 7, announced=True)
    assert json.loads(payload) == {"v": 1, "gateway": "gw-1", "seq": 7, "announced": True}
    ack = decode_ack(payload, "gw-1")
    assert (ack.seq, ack.announced, ack.unknown_schemas) == (7, True, frozenset())


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b'{"v":1,"gateway":"gw-1","seq":-1}', "must not be negative"),
        (b'{"v":1,"gateway":"gw-1","seq":"7"}', "must be an integer"),
        (b'{"v":1,"gateway":"gw-1"}', "missing field(s) seq"),
        (b'{"v":3,"gateway":"gw-1","seq":1}', "v is 3"),
        (b'{"v":1,"gateway":"gw-2","seq":1}', "is for gateway 'gw-2'"),
        (b'{"v":1,"gateway":"gw-1","seq":1,"announced":false}', "announced must be true"),
        (b'{"v":1,"gateway":"gw-1","seq":1,"announced":true,"x":1}', "unknown field(s) 'x'"),
    ],
)
def test_bad_acks_are_refused(payload: bytes, words: str) -> None:
    with pytest.raises(SchemaError) as raised:
        decode_ack(payload, "gw-1")
    assert words in str(raised.value)


def test_status_round_trips_with_free_fields() -> None:
    status = decode_status(encode_status("gw-1", "online", backlog=12, acked_seq=400))
    assert (status.gateway, status.state) == ("gw-1", "online")
    assert status.fields == {"backlog": 12, "acked_seq": 400}


def test_status_refuses_reserved_fields_and_values_json_cannot_say() -> None:
    with pytest.raises(SchemaError, match="reserved"):
        encode_status("gw-1", "online", v=2)
    with pytest.raises(SchemaError, match="cannot be encoded as JSON"):
        encode_status("gw-1", "online", lag=math.nan)
    with pytest.raises(SchemaError, match="state"):
        decode_status(b'{"v":1,"gateway":"gw-1","state":""}')
