"""The `summary` uplink profile on the gateway (PROTOCOL.md, "Uplink profiles"), from a real
store: per-minute aggregates computed from the stored records, alarm windows (and the margin
before a raise) in full, windows promoted after an earlier range summarised them, and the
summary part's accounting, through both wire formats."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from broker import Broker
from uplink_helpers import FakeReceiver, running, settings_for, wait_for_value

from appliance.records import Alert, FeatureVector, Score
from appliance.store import Store, StoredRecord, StoreSettings
from appliance.uplink.publisher import Uplink
from appliance.uplink.schema import Part, RecordsError, SchemaBook, decode_part, encode_part
from appliance.uplink.schema.summary_part import SummaryBody
from appliance.uplink.summary import record_time, summary_parts

T0 = 1_767_225_600.0  # a minute's start (2026-01-01 00:00 UTC)
NAMES = ("accel_x.rms", "accel_x.peak")
MARGIN_S = 20.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(StoreSettings(tmp_path / "gateway.db")) as opened:
        yield opened


def window(asset: str, t: float, rng: np.random.Generator) -> list[StoredRecord]:
    values = rng.normal(1.0, 0.3, 2)
    if rng.random() < 0.2:
        values[1] = np.nan  # a missing value is left out of min/mean/max
    error = float(rng.uniform(0.1, 3.0))
    return [FeatureVector(asset, t, NAMES, values), Score(asset, t, "m1", error, 2.0, error > 2.0)]


async def stored_windows(store: Store, asset: str, start: float, seconds: int) -> None:
    rng = np.random.default_rng(int(start))
    for i in range(seconds):
        await store.recorder.add_records(window(asset, start + i, rng))


async def range_parts(store: Store, lo: int, hi: int) -> list[Part]:
    found = await store.delivery.outbox_range(lo, hi - lo, hi)
    assert found is not None
    inputs = await store.delivery.summary_inputs(found, MARGIN_S)
    return summary_parts("gw-1", found.lo, found.hi, found.records, inputs, MARGIN_S)


def through_the_wire(parts: list[Part], fmt: str) -> list[Part]:
    topic = "appliance/gw-1/{}/{}"
    return [
        decode_part(encode_part(part, fmt), topic.format(part.kind, part.asset))  # type: ignore[arg-type]
        for part in parts
    ]


def summary_of(parts: list[Part]) -> Part:
    (summary,) = [part for part in parts if part.kind == "summary"]
    return summary


@pytest.mark.parametrize("fmt", ["binary", "json"])
async def test_minute_aggregates_are_computed_from_the_stored_windows(
    store: Store, fmt: str
) -> None:
    await stored_windows(store, "pump-1", T0, 150)  # minutes 0 and 1 close, minute 2 does not
    last = await store.delivery.latest_seq()

    parts = through_the_wire(await range_parts(store, 0, last), fmt)

    summary = summary_of(parts).summary
    assert summary is not None
    assert [m.minute for m in summary.minutes] == [int(T0), int(T0) + 60]
    history = await store.history.features("pump-1", limit=1000)
    scores = await store.history.scores("pump-1", limit=1000)
    for minute in summary.minutes:
        values = np.array(
            [v.values for _, v in history if minute.minute <= v.window_end < minute.minute + 60]
        )
        errors = [s for _, s in scores if minute.minute <= s.t < minute.minute + 60]
        assert (minute.windows, minute.scores) == (60, 60)
        np.testing.assert_allclose(minute.minimum, np.nanmin(values, axis=0), rtol=1e-6)
        np.testing.assert_allclose(minute.mean, np.nanmean(values, axis=0), rtol=1e-6)
        np.testing.assert_allclose(minute.maximum, np.nanmax(values, axis=0), rtol=1e-6)
        top = max(errors, key=lambda s: s.error)
        assert (minute.max_error, minute.threshold) == (top.error, top.threshold)
        assert minute.anomalous == sum(s.anomalous for s in errors)
        assert minute.alarm == (minute.anomalous > 0)
        assert minute.names == NAMES
    assert summary.summarised == last and summary.absent == []
    assert [part.kind for part in parts] == ["summary"], "nothing in full without an alarm"


async def test_an_alarm_episode_and_the_margin_before_it_go_in_full_the_rest_summarised(
    store: Store,
) -> None:
    await stored_windows(store, "pump-1", T0, 40)
    await store.recorder.add_records([Alert("pump-1", T0 + 40, "critical", "anomaly_raised", "x")])
    await stored_windows(store, "pump-1", T0 + 40, 30)
    await store.recorder.add_records(
        [Alert("pump-1", T0 + 69.5, "warning", "anomaly_cleared", "x")]
    )
    await stored_windows(store, "pump-1", T0 + 70, 30)
    last = await store.delivery.latest_seq()

    parts = through_the_wire(await range_parts(store, 0, last), "binary")

    full_times = sorted({r.window_end for p in parts if p.kind == "features" for _, r in p.records})
    assert full_times == [T0 + s for s in range(20, 70)], "from the margin before to the clear"
    summary = summary_of(parts).summary
    assert summary is not None
    in_full = sum(len(p.records) for p in parts if p.kind != "summary")
    assert summary.summarised + in_full == last, "every seq in full or summarised"
    assert {p.kind for p in parts} == {"features", "scores", "alerts", "summary"}


async def test_windows_summarised_before_a_raise_are_promoted_exactly_once(store: Store) -> None:
    await stored_windows(store, "pump-1", T0, 50)
    first_hi = await store.delivery.latest_seq()
    first = await range_parts(store, 0, first_hi)  # sent before the alarm was known
    await store.recorder.add_records([Alert("pump-1", T0 + 50, "critical", "anomaly_raised", "x")])
    await stored_windows(store, "pump-1", T0 + 50, 10)
    last = await store.delivery.latest_seq()

    second = through_the_wire(await range_parts(store, first_hi, last), "json")

    summary = summary_of(second).summary
    assert summary is not None
    promoted = [seq for part in summary.promoted for seq, _ in part.records]
    in_full = [seq for parts in (first, second) for p in parts if p.kind in ("features", "scores")
               for seq, _ in p.records]  # fmt: skip
    delivered = sorted(promoted + in_full)
    assert len(delivered) == len(set(delivered)), "no window twice"
    history = await store.history.outbox(limit=1000)
    expected = [seq for seq, r in history if not isinstance(r, Alert) and record_time(r) >= T0 + 30]
    assert delivered == expected, "every window from the margin on, in full, once"
    assert all(seq <= first_hi for seq in promoted)


async def test_live_in_the_summary_profile_alarms_arrive_in_full_and_the_rest_is_accounted(
    broker: Broker, store: Store
) -> None:
    receiver = FakeReceiver(broker)
    settings = settings_for(broker, detail="summary", summary_margin_s=MARGIN_S, live_batch_s=0.0)
    uplink = Uplink(settings, store.delivery)
    raise_alert = Alert("pump-1", T0 + 50, "critical", "anomaly_raised", "x")
    clear_alert = Alert("pump-1", T0 + 60.5, "warning", "anomaly_cleared", "x")

    async with running(receiver.run()), running(uplink.run()):
        await stored_windows(store, "pump-1", T0, 50)
        await wait_for_value(store.delivery.acked_seq, 100, "the windows before the alarm")
        await store.recorder.add_records([raise_alert])
        await stored_windows(store, "pump-1", T0 + 50, 11)
        await store.recorder.add_records([clear_alert])
        await stored_windows(store, "pump-1", T0 + 61, 70)
        last = await store.delivery.latest_seq()
        await wait_for_value(store.delivery.acked_seq, last, "everything accounted")

    history = await store.history.outbox(limit=1000)
    in_alarm = {seq for seq, r in history if T0 + 30 <= record_time(r) <= T0 + 60.5}
    assert in_alarm <= receiver.records.keys(), "the margin and the episode in full"
    assert receiver.duplicates == 0
    assert receiver.records.keys() | receiver.summarised() == set(range(1, last + 1))
    assert not receiver.records.keys() & receiver.summarised()
    minutes = [m.minute for p in receiver.summaries if p.summary for m in p.summary.minutes]
    assert minutes == [int(T0), int(T0) + 60], "each closed minute once"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"extra": 1}, "unknown field(s) 'extra'"),
        ({"assets": ["pump-1"]}, "missing field(s)"),
        ({"absent": [[5, 9]]}, "absent[0]: (5, 9) is not a run above 10"),
        ({"summarised": 200}, "summarised and absent seqs exceed the range's"),
        ({"summarised": -1}, "summarised must not be negative"),
    ],
)
def test_a_broken_summary_part_is_refused_naming_the_field(
    change: dict[str, object], named: str
) -> None:
    part = Part("gw-1", 10, 110, 0, 1, "summary", "_", [], SummaryBody(summarised=100))
    body = json.loads(encode_part(part, "json")) | change

    with pytest.raises(RecordsError) as refused:
        decode_part(json.dumps(body).encode(), "appliance/gw-1/summary/_")

    assert named in str(refused.value) and refused.value.header.kind == "summary"


async def test_a_window_stored_in_a_known_episode_is_not_promoted_again(store: Store) -> None:
    await stored_windows(store, "pump-1", T0, 20)
    (raised,) = await store.recorder.add_records(
        [Alert("pump-1", T0 + 20, "critical", "anomaly_raised", "")]
    )
    await stored_windows(store, "pump-1", T0 + 20, 10)
    await store.recorder.add_records([Alert("pump-1", T0 + 30, "warning", "anomaly_cleared", "")])
    first_hi = await store.delivery.latest_seq()
    first = await range_parts(store, 0, first_hi)
    await store.recorder.add_records([Alert("pump-1", T0 + 35, "critical", "anomaly_raised", "")])
    await stored_windows(store, "pump-1", T0 + 35, 5)
    last = await store.delivery.latest_seq()

    second = await range_parts(store, first_hi, last)

    summary = summary_of(second).summary
    assert summary is not None
    promoted = {seq for part in summary.promoted for seq, _ in part.records}
    in_full = {seq for p in first if p.kind in ("features", "scores") for seq, _ in p.records}
    history = await store.history.outbox(limit=1000)
    windows = [(seq, r) for seq, r in history if not isinstance(r, Alert) and seq <= first_hi]
    margin = {seq for seq, r in windows if record_time(r) >= T0 + 15}
    assert margin <= promoted | in_full, "the new raise's margin in full"
    stored_in_episode = {seq for seq in in_full if seq > raised}
    assert stored_in_episode and not promoted & stored_in_episode, "not sent twice"
    assert promoted == margin - stored_in_episode, "the earlier margin's windows, to be sure"


async def test_minutes_name_their_features_by_reference_once_acknowledged_and_again_if_asked(
    broker: Broker, store: Store
) -> None:
    """PROTOCOL.md, "Schema references": the first minute carries the names; once the receiver
    acknowledged it, later minutes carry the reference; a receiver that lost them (a new
    database) asks and gets every minute anyway."""
    receiver = FakeReceiver(broker)
    settings = settings_for(broker, detail="summary", live_batch_s=0.0, ack_timeout_s=60.0)
    uplink = Uplink(settings, store.delivery)

    async with running(receiver.run()), running(uplink.run()):
        for batch in range(4):  # batch k closes minute k - 1 (a window at or after its + 65 s)
            if batch == 3:
                by_reference = receiver.by_reference
                receiver.schemas = SchemaBook()  # a receiver with a new database
            await stored_windows(store, "pump-1", T0 + 60 * batch + bool(batch) * 5, 60)
            last = await store.delivery.latest_seq()
            await wait_for_value(store.delivery.acked_seq, last, f"batch {batch} accounted")

    assert by_reference > 0, "a minute named its features by reference"
    assert receiver.schema_requests > 0, "the new database asked for the names"
    minutes = {m.minute for p in receiver.summaries if p.summary for m in p.summary.minutes}
    assert minutes == {int(T0) + 60 * i for i in range(3)}, "every minute arrived"
