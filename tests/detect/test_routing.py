"""The alert router: systemic collapse across channels and assets, sensor-fault notes, open list."""

from __future__ import annotations

import asyncio

from appliance.detect.routing import AlertRouter, run_alert_stage
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
