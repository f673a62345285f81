"""The alert router: systemic collapse across channels and assets, sensor-fault notes, open list."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.detect.routing import AlertRouter, run_alert_stage
from appliance.errors import StoreError
from appliance.records import Alert
from appliance.store import StoredRecord

CHANNELS = ["pump-1/accel_x", "pump-1/accel_y", "pump-1/accel_z", "pump-1/bearing_temp"]


def sensor(kind: str, channel: str, t: float = 10.0, asset: str = "pump-1") -> Alert:
    return Alert(asset, t, "critical", kind, f"{asset}: {channel} {kind}", channel=channel)


def anomaly(kind: str, asset: str = "pump-1", t: float = 10.0) -> Alert:
    return Alert(asset, t, "warning", kind, f"{asset}: {kind}")


def router() -> AlertRouter:
    return AlertRouter("gw-1", CHANNELS, ["pump-1", "fan-2", "press-3", "mill-4"])


def test_one_channel_fault_passes_and_stays_open_until_cleared() -> None:
    r = router()
    out = r.route(10.0, [sensor("flatline_raised", "accel_x")])
    assert [a.kind for a in out] == ["flatline_raised"]
    assert list(r.open) == [("pump-1", "accel_x", "flatline")]
    r.route(20.0, [sensor("flatline_cleared", "accel_x", t=20.0)])
    assert r.open == {}
    assert [a.kind for a in r.recent] == ["flatline_raised", "flatline_cleared"]


def test_most_channels_failing_at_once_become_one_systemic_alert() -> None:
    r = router()
    unplugged = [sensor("dropout_raised", f"accel_{axis}") for axis in "xyz"]
    out = r.route(10.0, unplugged)
    assert [(a.asset, a.kind) for a in out] == [("gw-1 sensors", "systemic_raised")]
    assert "3 of 4" in out[0].message
    back = [sensor("dropout_cleared", f"accel_{axis}", t=30.0) for axis in "xyz"]
    out = r.route(30.0, back)
    assert [a.kind for a in out] == ["systemic_cleared"]
    assert r.open == {}


def test_most_assets_alarming_at_once_become_one_systemic_alert() -> None:
    r = router()
    out = r.route(10.0, [anomaly("anomaly_raised", a) for a in ("pump-1", "fan-2", "press-3")])
    assert [a.kind for a in out] == ["systemic_raised"]


def test_an_anomaly_on_an_asset_with_a_sensor_fault_says_check_the_sensor() -> None:
    r = router()
    r.route(10.0, [sensor("flatline_raised", "accel_y")])
    out = r.route(11.0, [anomaly("anomaly_raised", t=11.0)])
    assert "accel_y flatline" in out[0].message
    assert "check those sensors" in out[0].message
    other = r.route(12.0, [anomaly("anomaly_raised", asset="fan-2", t=12.0)])
    assert "sensor" not in other[0].message


async def test_the_stage_hands_on_every_routed_alert() -> None:
    r = router()
    alerts_in: asyncio.Queue[Alert] = asyncio.Queue()
    out: asyncio.Queue[StoredRecord] = asyncio.Queue()
    for alert in [sensor("spike_raised", "accel_x"), anomaly("anomaly_raised", asset="fan-2")]:
        alerts_in.put_nowait(alert)
    task = asyncio.create_task(run_alert_stage(r, alerts_in, out))
    await alerts_in.join()
    task.cancel()
    kinds = [out.get_nowait().kind for _ in range(out.qsize())]
    assert kinds == ["spike_raised", "anomaly_raised"]
    assert r.counts == {"spike_raised": 1, "anomaly_raised": 1}


# --- state kept across a restart ------------------------------------------------------------


def test_the_state_brings_back_open_held_back_and_recent_alerts() -> None:
    r = router()
    r.route(10.0, [sensor("flatline_raised", "accel_x")])
    r.route(11.0, [anomaly("anomaly_raised", asset="fan-2", t=11.0)])
    r.route(12.0, [anomaly("anomaly_raised", a, t=12.0) for a in ("pump-1", "press-3")])
    restarted = router()

    restarted.restore(json.loads(json.dumps(r.to_state())))

    assert restarted.open == r.open and restarted.held_open() == r.held_open()
    assert list(restarted.recent) == list(r.recent)
    assert restarted.to_state() == r.to_state()
    # The systemic alarm goes on: its members' clears stay silent, then the systemic clear.
    out = restarted.route(20.0, [anomaly("anomaly_cleared", a, t=20.0) for a in ("pump-1",)])
    assert [a.kind for a in out] == ["systemic_cleared"]


def test_a_state_that_does_not_fit_is_refused_naming_the_field_and_changes_nothing() -> None:
    r = router()
    r.route(10.0, [sensor("flatline_raised", "accel_x")])
    before = r.to_state()
    state = r.to_state()
    bad_open = cast(list[dict[str, object]], state["open"])
    bad_open[0]["t"] = float("nan")

    with pytest.raises(ValueError, match=r"open\[0\]\.t"):
        r.restore(state)

    assert r.to_state() == before


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
FIELDS = ("open", "held_open", "recent", "systemic")


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(FIELDS), value=JSON_VALUES, index=st.integers(0, 5))
def test_any_damage_to_a_saved_state_is_refused_or_restores_a_valid_router(
    field: str, value: object, index: int
) -> None:
    """A field replaced by arbitrary JSON, or one alert's field replaced: refused with a
    ValueError naming the field (the router unchanged), or restored to alerts that are valid."""
    r = router()
    r.route(10.0, [sensor("flatline_raised", "accel_x"), anomaly("anomaly_raised", t=10.0)])
    before = r.to_state()
    state = json.loads(json.dumps(before))
    alerts = state["open"]
    if field != "systemic" and index < len(alerts) * 6:
        alert = alerts[index // 6]
        alert[sorted(alert)[index % 6]] = value
        named = "open["
    else:
        state[field] = value
        named = field
    try:
        r.restore(state)
    except ValueError as exc:
        assert named in str(exc)
        assert r.to_state() == before
    else:
        for a in r.open.values():
            assert isinstance(a.asset, str) and a.severity in ("warning", "critical")
            assert math.isfinite(a.t)


async def test_the_stage_stores_each_batch_with_its_state_or_else_queues_it_for_the_writer() -> (
    None
):
    r = router()
    alerts_in: asyncio.Queue[Alert] = asyncio.Queue()
    out: asyncio.Queue[StoredRecord] = asyncio.Queue()
    stored: list[tuple[list[str], int]] = []

    async def store_routed(alerts: Sequence[Alert]) -> None:
        if not stored:
            stored.append(([], -1))
            raise StoreError("store x.db: disk I/O error")
        stored.append(([a.kind for a in alerts], len(cast(list[object], r.to_state()["open"]))))

    task = asyncio.create_task(run_alert_stage(r, alerts_in, out, store_routed=store_routed))
    alerts_in.put_nowait(anomaly("anomaly_raised", t=10.0))
    await alerts_in.join()
    alerts_in.put_nowait(anomaly("anomaly_cleared", t=20.0))
    await alerts_in.join()
    task.cancel()

    assert [out.get_nowait().kind for _ in range(out.qsize())] == ["anomaly_raised"]
    assert stored[1:] == [(["anomaly_cleared"], 0)]
