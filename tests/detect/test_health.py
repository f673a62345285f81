"""Sensor health on raw samples: windows on a time grid, latched rule alarms, CUSUM, restart."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.detect.cusum import CusumSettings
from appliance.detect.health import AssetHealth, ChannelWindows, HealthSettings
from appliance.detect.rules import ChannelSpec
from appliance.records import SampleBlock

RATE = 100.0
VIB = ChannelSpec("accel_x", "g", RATE, (-2.0, 2.0))
TEMP = ChannelSpec("bearing_temp", "degC", 1.0, (-40.0, 125.0))


def blocks(
    channel: str, t0: float, samples: np.ndarray, rate: float, size: int
) -> list[SampleBlock]:
    return [
        SampleBlock("pump-1", channel, t0 + i / rate, rate, samples[i : i + size])
        for i in range(0, len(samples), size)
    ]


def noise(n: int, seed: int = 1, scale: float = 0.1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, n)


def test_windows_hold_every_sample_of_a_continuous_stream() -> None:
    windows = ChannelWindows(VIB, 1.0)
    data = noise(1000)
    closed = [w for b in blocks("accel_x", 100.0, data, RATE, 37) for w in windows.push(b)]
    assert [w.end for w in closed] == [101.0 + i for i in range(9)]
    assert all(len(w.samples) == w.expected == 100 for w in closed)
    assert np.array_equal(np.concatenate([w.samples for w in closed]), data[:900])


def test_first_window_expects_only_what_falls_after_the_first_sample() -> None:
    windows = ChannelWindows(VIB, 1.0)
    closed = [w for b in blocks("accel_x", 100.5, noise(200), RATE, 10) for w in windows.push(b)]
    assert (closed[0].end, closed[0].expected, len(closed[0].samples)) == (101.0, 50, 50)


def test_a_gap_closes_the_windows_it_spans_as_empty() -> None:
    windows = ChannelWindows(VIB, 1.0)
    closed = windows.push(SampleBlock("pump-1", "accel_x", 100.0, RATE, noise(100)))
    closed += windows.push(SampleBlock("pump-1", "accel_x", 103.5, RATE, noise(100)))
    assert [(w.end, len(w.samples), w.expected) for w in closed] == [
        (101.0, 100, 100),
        (102.0, 0, 100),
        (103.0, 0, 100),
        (104.0, 50, 100),
    ]


def test_late_samples_are_counted_not_checked() -> None:
    windows = ChannelWindows(VIB, 1.0)
    windows.push(SampleBlock("pump-1", "accel_x", 100.0, RATE, noise(150)))
    windows.push(SampleBlock("pump-1", "accel_x", 100.2, RATE, noise(10)))
    assert windows.late_samples == 10


def test_a_silent_channel_still_closes_windows_after_the_grace() -> None:
    windows = ChannelWindows(VIB, 1.0)
    windows.push(SampleBlock("pump-1", "accel_x", 100.0, RATE, noise(50)))
    assert windows.close_overdue(now=101.5, grace_s=1.0) == []
    closed = windows.close_overdue(now=103.0, grace_s=1.0)
    assert [(w.end, len(w.samples)) for w in closed] == [(101.0, 50), (102.0, 0)]


def vibration_health(**settings: object) -> AssetHealth:
    return AssetHealth("pump-1", {"accel_x": (VIB, 1.0, False)}, HealthSettings(**settings))  # type: ignore[arg-type]


def feed(health: AssetHealth, data: np.ndarray, t0: float = 100.0) -> list[str]:
    for block in blocks("accel_x", t0, data, RATE, 25):
        health.push(block)
    return [alert.kind for alert in health.check(now=t0)]


def test_a_stuck_sensor_raises_one_flatline_alert_then_clears() -> None:
    health = vibration_health(clear_after=3)
    stuck = np.concatenate([noise(300), np.full(1000, 0.25), noise(600, seed=2)])
    kinds = feed(health, stuck)
    assert kinds == ["flatline_raised", "flatline_cleared"]
    assert health.active_faults() == {}


def test_impossible_values_are_critical_and_name_the_channel() -> None:
    health = vibration_health()
    data = noise(500)
    data[150:250] = 9.0
    for block in blocks("accel_x", 100.0, data, RATE, 25):
        health.push(block)
    alerts = health.check(now=100.0)
    raised = [a for a in alerts if a.kind == "impossible_value_raised"]
    assert len(raised) == 1
    assert raised[0].severity == "critical"
    assert raised[0].channel == "accel_x"
    assert "9" in raised[0].message and "sensor fault" in raised[0].message


def test_dropout_escalates_once_when_the_channel_goes_silent() -> None:
    health = vibration_health(grace_s=1.0)
    data = noise(300)
    data_with_holes = np.concatenate([data[:100], data[100:300]])
    for block in blocks("accel_x", 100.0, data_with_holes[:100], RATE, 25):
        health.push(block)
    # 40 % of the second second is missing: a warning.
    for block in blocks("accel_x", 101.0, data[100:160], RATE, 20):
        health.push(block)
    for block in blocks("accel_x", 102.0, data[200:300], RATE, 25):
        health.push(block)
    first = health.check(now=102.5)
    assert [(a.kind, a.severity) for a in first] == [("dropout_raised", "warning")]
    later = health.check(now=110.0)  # silent since 103.0: windows close empty
    assert [(a.kind, a.severity) for a in later] == [("dropout_escalated", "critical")]
    assert health.active_faults() == {"accel_x": ["dropout"]}


def test_cusum_learns_a_slow_channel_then_finds_drift_once() -> None:
    settings = HealthSettings(cusum_baseline_windows=20, cusum=CusumSettings(k=0.5, h=5.0))
    health = AssetHealth("pump-1", {"bearing_temp": (TEMP, 10.0, True)}, settings)
    rng = np.random.default_rng(3)
    steady = 40.0 + rng.normal(0.0, 0.05, 300)
    rising = 40.0 + np.linspace(0.0, 3.0, 300) + rng.normal(0.0, 0.05, 300)
    for i, value in enumerate(np.concatenate([steady, rising])):
        health.push(SampleBlock("pump-1", "bearing_temp", 1000.0 + i, 1.0, np.array([value])))
    kinds = [a.kind for a in health.check(now=1000.0)]
    assert "bearing_temp" in health.cusums
    assert kinds.count("drift_raised") == 1
    assert "drift_cleared" not in kinds


def test_restart_keeps_open_alarms_so_a_fault_is_not_alerted_twice() -> None:
    health = vibration_health()
    assert feed(health, np.full(300, 0.25)) == ["flatline_raised"]
    restarted = vibration_health()
    restarted.restore(health.to_state())
    assert restarted.active_faults() == {"accel_x": ["flatline"]}
    assert feed(restarted, np.full(300, 0.25), t0=200.0) == []
    assert feed(restarted, noise(400), t0=203.0) == ["flatline_cleared"]


def test_a_bad_state_is_refused_with_the_field_named() -> None:
    health = vibration_health()
    with pytest.raises(ValueError, match=r"alarms\.accel_x/flatline"):
        health.restore(
            {"version": 1, "kind": "health", "alarms": {"accel_x/flatline": "loud"}, "cusums": {}}
        )
    assert health.active_faults() == {}


def test_a_quantised_slow_signal_ticking_by_one_step_is_not_a_spike() -> None:
    lsb = 0.0078125
    health = AssetHealth("pump-1", {"bearing_temp": (TEMP, 60.0, True)})
    values = np.full(120, 40.0)
    values[[17, 80]] += lsb
    for i, value in enumerate(values):
        health.push(SampleBlock("pump-1", "bearing_temp", 6000.0 + i, 1.0, np.array([value])))
    assert health.check(now=6000.0) == []
    values[50] += 40 * lsb
    for i, value in enumerate(values):
        health.push(SampleBlock("pump-1", "bearing_temp", 6120.0 + i, 1.0, np.array([value])))
    assert [a.kind for a in health.check(now=6120.0)] == ["spike_raised"]


def test_a_few_equal_readings_of_a_slow_sensor_after_a_start_are_not_a_flatline() -> None:
    """The first window after a start may hold only seconds of a 60 s window: a quantised
    temperature repeating its reading that long is normal. A whole window of it is not."""
    health = AssetHealth("pump-1", {"bearing_temp": (TEMP, 60.0, True)})
    start = 6000.0 - 4.0  # 4 s before the grid's window boundary
    live = 40.0 + np.random.default_rng(5).normal(0.0, 0.05, 240)
    readings = np.concatenate([np.full(4, 40.0), live, np.full(70, 40.0)])
    for i, value in enumerate(readings):
        health.push(SampleBlock("pump-1", "bearing_temp", start + i, 1.0, np.array([value])))
    kinds = [a.kind for a in health.check(now=start + len(readings) + 1)]
    assert kinds == ["flatline_raised"]  # the stuck window after the live ones, not the first 4 s
    assert health.active_faults() == {"bearing_temp": ["flatline"]}
