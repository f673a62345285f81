"""Each asset's state in words, the gateway's overview and the page's JSON built from them, on
hand-built boards (no event loop, no page): what the header, the sorted asset cards and the JSON
API say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.capture.serial_link import SerialStats
from appliance.detect.routing import AlertRouter
from appliance.records import Alert, FeatureVector, Score
from appliance.status import AssetStatus, StatusBoard, UplinkStatus
from appliance.status_snapshot import asset_state, overview, snapshot
from appliance.status_snapshot.states import NO_DATA_AFTER_S
from appliance.store import StoreStats
from appliance.web.snapshot import WebState

T0 = 1_700_000_000.0
FEATURES = ("vib.mean", "vib.rms", "vib.peak", "vib.crest_factor", "temp.mean", "temp.slope")


def fresh(name: str, **changes: object) -> AssetStatus:
    """An asset scoring normally, its newest window ending at T0."""
    asset = AssetStatus(name, samples={"vib": 5000, "temp": 5}, units={"vib": "g", "temp": "degC"})
    asset.model = "scoring with m-1"
    asset.latest = FeatureVector(name, T0, FEATURES, np.array([0.0, 0.51, 1.6, 3.1, 41.26, 0.01]))
    asset.latest_score = Score(name, T0, "m-1", 0.2, 0.5, False)
    for key, value in changes.items():
        setattr(asset, key, value)
    return asset


@pytest.mark.parametrize(
    ("changes", "condition", "reason"),
    [
        ({}, "ok", "score 0.200 under threshold 0.500"),
        ({"latest_score": None}, "ok", "not scored yet"),
        (
            {"alarm": "critical", "latest_score": Score("a", T0, "m-1", 9.1, 0.5, True)},
            "alarm",
            "score 9.10 over threshold 0.500",
        ),
        (
            {"alarm": "critical", "sensor_faults": {"vib": ["flatline"]}},
            "alarm",
            "score 0.200, threshold 0.500: not cleared yet while vib flatline: check those "
            "sensors first",
        ),
        (
            {"sensor_faults": {"vib": ["impossible_value", "drift"], "temp": ["dropout"]}},
            "sensor_fault",
            "temp dropout, vib impossible value",
        ),
        ({"alarm": "warning"}, "warning", "score 0.200, threshold 0.500: not cleared yet"),
        ({"sensor_faults": {"temp": ["drift"]}}, "warning", "temp drift"),
        (
            {"model": "model refused: signature: unsigned"},
            "warning",
            "not scored: model refused: signature: unsigned",
        ),
        ({"latest": None, "samples": {"vib": 0}}, "no_data", "no samples yet"),
        ({"latest": None}, "no_data", "no feature window yet"),
        (
            {"model": "commissioning (learning): 12 windows since 2023-11-14 22:00 UTC"},
            "commissioning",
            "commissioning (learning): 12 windows since 2023-11-14 22:00 UTC",
        ),
    ],
)
def test_asset_state(changes: dict[str, object], condition: str, reason: str) -> None:
    state = asset_state(fresh("pump-1", **changes), T0 + 1)
    assert (state.condition, state.reason) == (condition, reason)


def test_an_asset_whose_windows_stopped_has_no_data() -> None:
    asset = fresh("pump-1", model="commissioning (learning): 12 windows")
    assert asset_state(asset, T0 + NO_DATA_AFTER_S).condition == "commissioning"
    stale = asset_state(asset, T0 + 125)
    assert (stale.condition, stale.words, stale.reason) == (
        "no_data",
        "no data",
        "no new window for 2 min",
    )
    assert asset_state(fresh("pump-1", alarm="critical"), T0 + 3600).condition == "alarm"


def board_with(*assets: AssetStatus) -> StatusBoard:
    board = StatusBoard("gw-1", started_utc=T0 - 7500)
    board.assets.update({a.name: a for a in assets})
    return board


def test_overview_counts_and_names_the_machines_in_alarm_and_with_sensor_faults() -> None:
    board = board_with(
        fresh("fan-1"),
        fresh("pump-1", alarm="critical"),
        fresh("press-2", sensor_faults={"temp": ["flatline"]}),
        fresh("pump-4", alarm="critical"),
        fresh("mill-5", model="commissioning (learning)"),
    )
    view = overview(snapshot(board, T0 + 1))
    assert (view.condition, view.words) == ("alarm", "alarm")
    assert view.headline == (
        "2 machines in alarm: pump-1, pump-4; 1 machine with a sensor fault: press-2"
    )
    assert view.assets["ok"] == ("fan-1",) and view.assets["commissioning"] == ("mill-5",)
    assert view.newest_alert is None and view.problems == ()


def test_overview_of_a_healthy_gateway_and_of_a_gateway_with_problems() -> None:
    healthy = board_with(fresh("fan-1"), fresh("mill-5", model="commissioning (learning)"))
    view = overview(snapshot(healthy, T0 + 1))
    assert (view.condition, view.headline) == ("commissioning", "1 machine ok, 1 commissioning")
    assert overview(snapshot(board_with(fresh("fan-1")), T0 + 1)).headline == "all 1 machine ok"

    healthy.serial["mcu0"] = SerialStats(connected=False)
    healthy.store = StoreStats(write_errors=2)
    healthy.uplink = UplinkStatus("mqtts://b:8883", "receiver", state="waiting 30 s to retry")
    healthy.uplink.last_error = "connection refused"
    view = overview(snapshot(healthy, T0 + 1))
    assert view.condition == "warning"
    assert view.problems == (
        "serial mcu0 disconnected",
        "uplink waiting 30 s to retry",
        "store: 2 write errors",
    )


def test_many_names_are_cut_short_in_the_headline() -> None:
    board = board_with(*(fresh(f"m-{i}", alarm="critical") for i in range(5)))
    assert overview(snapshot(board, T0 + 1)).headline == (
        "5 machines in alarm: m-0, m-1, m-2 +2 more"
    )


def test_newest_alert_is_the_newest_open_else_the_newest_closed() -> None:
    board = board_with(fresh("pump-1"))
    router = AlertRouter("gw-1", ["pump-1/vib"], ["pump-1"])
    board.alerts = router
    raised = Alert("pump-1", T0 - 60, "critical", "anomaly_raised", "high")
    spike = Alert("pump-1", T0 - 30, "warning", "spike_raised", "spikes", channel="vib")
    router.route(T0 - 30, [raised, spike])
    view = overview(snapshot(board, T0))
    assert (view.newest_alert, view.newest_alert_open) == (spike, True)

    cleared = [
        Alert("pump-1", T0 - 5, "warning", "spike_cleared", "calm", channel="vib"),
        Alert("pump-1", T0 - 2, "critical", "anomaly_cleared", "normal"),
    ]
    router.route(T0, cleared)
    view = overview(snapshot(board, T0))
    assert (view.newest_alert, view.newest_alert_open) == (cleared[1], False)


def test_page_json_sorts_alarmed_machines_first_and_writes_numbers_for_people(
    tmp_path: Path,
) -> None:
    board = board_with(
        fresh("fan-1"),
        fresh("press-2", sensor_faults={"temp": ["flatline"]}),
        fresh("pump-3", alarm="critical"),
    )
    state = WebState(board, tmp_path, token_set=True, clock=lambda: T0 + 1)
    state.rates[("pump-3", "temp")] = 1.0  # 1 Hz: not "0/s" or "1/s"
    state.rates[("pump-3", "vib")] = 999.6

    page = state.snapshot()

    assert [a["name"] for a in page["assets"]] == ["pump-3", "press-2", "fan-1"]
    pump = page["assets"][0]
    assert pump["state"] == {
        "condition": "alarm",
        "words": "alarm",
        "reason": "score 0.200, threshold 0.500: not cleared yet",
    }
    assert page["overview"]["headline"] == (
        "1 machine in alarm: pump-3; 1 machine with a sensor fault: press-2"
    )
    assert {r["label"]: r["text"] for r in pump["readings"]} == {
        "vib RMS": "0.510 g",
        "vib peak": "1.60 g",
        "vib crest factor": "3.10",
        "temp mean": "41.3 °C",
    }
    assert pump["channels"]["temp"] == {
        "samples": 5,
        "rate_hz": 1.0,
        "rate_text": "1.0/s",
        "unit": "°C",
    }
    assert pump["channels"]["vib"]["rate_text"] == "1000/s"
    assert pump["units"] == {"vib": "g", "temp": "°C"}
    assert page["uptime_text"] == "2 h 5 min"
    assert page["process"]["disk_free_text"].endswith(" GB free")


def test_a_1_hz_sensor_reads_one_per_second(tmp_path: Path) -> None:
    """Its count moves by 0, 1 or 2 between two samples a second apart; over the rate window
    it is 1.0/s."""
    board = board_with(fresh("pump-1"))
    state = WebState(board, tmp_path, token_set=False, clock=lambda: T0 + 1)
    temp = board.assets["pump-1"].samples
    for second, count in enumerate([5, 5, 7, 8, 8, 10, 11, 12, 12, 14, 15, 15, 17, 18]):
        temp["temp"] = count
        state.sample(now=100.0 + second + 0.01 * (second % 3))
    channel = state.snapshot()["assets"][0]["channels"]["temp"]
    assert channel["rate_text"] == "1.0/s"
    assert channel["rate_hz"] == pytest.approx(1.0, abs=0.05)
