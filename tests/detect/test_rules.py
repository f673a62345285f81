"""Sensor-health rules and CUSUM drift on crafted signals: each a hit and a near miss."""

from __future__ import annotations

import json

import numpy as np
import pytest

from appliance.detect.alarms import AlarmState
from appliance.detect.cusum import Cusum, CusumSettings
from appliance.detect.rules import (
    ChannelSpec,
    Finding,
    RuleLimits,
    check_dropout,
    check_flatline,
    check_impossible,
    check_spikes,
    check_window,
    count_runs,
)
from appliance.detect.thresholds import FixedThreshold
from appliance.records import FloatArray

LIMITS = RuleLimits()
TEMP = ChannelSpec("bearing_temp", "°C", 1.0, (-40.0, 150.0), typical_std=0.05, resolution=0.0078)
VIB = ChannelSpec("vib_x", "g", 1000.0, (-16.0, 16.0))


def noise(seed: int, count: int, mean: float = 0.0, std: float = 1.0) -> FloatArray:
    return np.random.default_rng(seed).normal(mean, std, count)


# --- impossible values -------------------------------------------------------------------------


def test_a_reading_outside_the_valid_range_is_a_sensor_fault() -> None:
    samples = noise(1, 60, 40.0, 0.05)
    samples[17] = 327.67
    finding = check_impossible(TEMP, samples, LIMITS)
    assert finding is not None
    assert (finding.rule, finding.severity, finding.sensor_fault) == (
        "impossible_value",
        "warning",
        True,
    )
    assert finding.value == pytest.approx(1 / 60)
    assert finding.message.startswith("bearing_temp read 327.7 °C (1 of 60 samples outside")


def test_readings_on_the_range_limits_are_possible() -> None:
    samples = np.array([-40.0, 150.0, 40.0])
    assert check_impossible(TEMP, samples, LIMITS) is None


def test_mostly_impossible_or_nan_readings_are_critical() -> None:
    samples = np.array([np.nan, np.nan, 40.0, -273.0])
    finding = check_impossible(TEMP, samples, LIMITS)
    assert finding is not None and finding.severity == "critical" and "NaN" in finding.message


# --- flatline ----------------------------------------------------------------------------------


def test_a_constant_reading_is_a_stuck_sensor() -> None:
    finding = check_flatline(TEMP, np.full(60, 40.0), LIMITS)
    assert finding == Finding(
        "flatline",
        "bearing_temp",
        "warning",
        0.0,
        pytest.approx(0.0005),  # type: ignore[arg-type]
        "bearing_temp flat at 40.00 °C for 60 s - sensor stuck?",
    )


def test_quiet_but_living_readings_are_not_flat() -> None:
    """One-LSB jitter on a quiet temperature: std ~0.004, above 1 % of the typical 0.05."""
    samples = 40.0 + 0.0078 * np.random.default_rng(2).integers(0, 2, 60).astype(np.float64)
    assert check_flatline(TEMP, samples, LIMITS) is None


def test_without_a_typical_std_flat_means_an_absolute_epsilon() -> None:
    assert check_flatline(VIB, np.full(1000, 0.25), LIMITS) is not None
    assert check_flatline(VIB, 0.25 + noise(3, 1000, std=1e-6), LIMITS) is None


def test_impossible_samples_do_not_hide_a_flatline() -> None:
    samples = np.full(60, 40.0)
    samples[::10] = np.nan
    assert check_flatline(TEMP, samples, LIMITS) is not None


# --- spikes ------------------------------------------------------------------------------------


def test_isolated_spikes_are_counted() -> None:
    samples = noise(4, 1000, std=0.1)
    samples[[100, 101, 102]] = 5.0  # one spike three samples wide
    samples[700] = -4.0
    finding = check_spikes(VIB, samples, LIMITS)
    assert finding is not None and finding.rule == "spike"
    assert finding.message.startswith("vib_x: 2 spikes in 1 s")
    assert finding.value > 35


def test_an_excursion_below_the_limit_is_not_a_spike() -> None:
    samples = noise(5, 1000, std=0.1)
    samples[500] = 1.8  # about 18 robust sigmas, below the limit of 20
    assert check_spikes(VIB, samples, LIMITS) is None


def test_bearing_like_impacts_stay_below_the_spike_limit() -> None:
    """A periodic impact train at ~12 robust sigmas (CWRU outer race) is the model's job."""
    samples = noise(6, 1000, std=0.1)
    samples[::100] += 1.2
    assert check_spikes(VIB, samples, LIMITS) is None


def test_a_stuck_sensor_coming_back_within_the_window_is_not_a_spike() -> None:
    """Half the window flat, half noise: the MAD is tiny and most noise samples look huge, but
    that is a change of signal (the flatline rule's business), not spikes."""
    samples = noise(7, 1000, std=0.1)
    samples[:600] = 0.03
    assert check_spikes(VIB, samples, LIMITS) is None


def test_one_lsb_steps_on_a_constant_reading_are_not_spikes() -> None:
    samples = np.full(60, 40.0)
    samples[30] += TEMP.resolution
    assert check_spikes(TEMP, samples, LIMITS) is None
    samples[40] += 1.0
    finding = check_spikes(TEMP, samples, LIMITS)
    assert finding is not None and "1 spike in 60 s" in finding.message


def test_count_runs() -> None:
    assert count_runs(np.array([], dtype=bool)) == 0
    assert count_runs(np.array([True, True, False, True, False, False, True])) == 3


# --- dropout -----------------------------------------------------------------------------------


def test_dropout_above_the_limit_is_reported() -> None:
    finding = check_dropout(VIB, 1000, 900, LIMITS)
    assert finding is not None and finding.severity == "warning"
    assert finding.value == pytest.approx(0.1)
    assert finding.message.startswith("vib_x lost 10 % of its samples (900 of 1000 arrived in 1 s)")


def test_dropout_just_below_the_limit_is_not() -> None:
    assert check_dropout(VIB, 1000, 960, LIMITS) is None


def test_mostly_missing_samples_are_critical() -> None:
    finding = check_dropout(VIB, 1000, 300, LIMITS)
    assert finding is not None and finding.severity == "critical" and finding.limit == 0.5


def test_check_window_runs_every_rule() -> None:
    samples = np.full(50, 40.0)
    samples[0] = 999.0
    findings = check_window(TEMP, samples, expected=60)
    assert sorted(f.rule for f in findings) == ["dropout", "flatline", "impossible_value"]
    assert check_window(TEMP, noise(7, 60, 40.0, 0.05), expected=60) == []
    assert [f.rule for f in check_window(TEMP, np.array([]), expected=60)] == ["dropout"]


def test_channel_spec_refuses_an_empty_range() -> None:
    with pytest.raises(ValueError, match="valid_range"):
        ChannelSpec("t", "°C", 1.0, (5.0, 5.0))


# --- CUSUM drift -------------------------------------------------------------------------------

BASE_MEAN, BASE_STD = 40.0, 0.5


def learned_cusum() -> Cusum:
    return Cusum.learn("bearing_temp", "°C", noise(10, 600, BASE_MEAN, BASE_STD))


def slow_ramp() -> FloatArray:
    """400 values whose mean climbs by one baseline std (0.5 °C) in total."""
    return noise(12, 400, BASE_MEAN, BASE_STD) + np.linspace(0.0, BASE_STD, 400)


def test_cusum_finds_a_slow_ramp() -> None:
    cusum = learned_cusum()
    findings = [(i, cusum.update(v)) for i, v in enumerate(slow_ramp())]
    hits = [(i, f) for i, f in findings if f is not None]
    assert hits, "the ramp was not detected"
    first_at, first = hits[0]
    assert first.rule == "drift" and not first.sensor_fault
    assert first.message.startswith("bearing_temp drifting up: ")
    assert "against a baseline of 39.95 +/- 0.50 °C (CUSUM 1" in first.message
    assert first_at < 400


def test_a_per_window_threshold_misses_the_same_ramp() -> None:
    fixed = FixedThreshold(BASE_MEAN + 4 * BASE_STD)
    alarm = AlarmState()
    decisions = [alarm.update(float(i), v, fixed.current()) for i, v in enumerate(slow_ramp())]
    assert not any(d.anomalous for d in decisions)


def test_cusum_stays_quiet_on_stationary_noise() -> None:
    cusum = learned_cusum()
    assert [f for v in noise(14, 5000, BASE_MEAN, BASE_STD) if (f := cusum.update(v))] == []


def test_cusum_finds_a_downward_shift_and_restarts_after_it() -> None:
    cusum = learned_cusum()
    finding = None
    for value in noise(13, 100, BASE_MEAN - 2 * BASE_STD, BASE_STD):
        if (finding := cusum.update(value)) is not None:
            break
    assert finding is not None and "drifting down" in finding.message
    assert finding.value > finding.limit == 10.0
    assert (cusum.upper, cusum.lower) == (0.0, 0.0)


def test_cusum_ignores_non_finite_values() -> None:
    cusum = learned_cusum()
    cusum.update(42.0)
    before = (cusum.upper, cusum.lower)
    assert cusum.update(float("nan")) is None
    assert (cusum.upper, cusum.lower) == before


def test_cusum_round_trip_continues_identically() -> None:
    values = slow_ramp()
    uninterrupted = learned_cusum()
    expected = [uninterrupted.update(v) for v in values]
    first = learned_cusum()
    head = [first.update(v) for v in values[:200]]
    restored = Cusum.from_state(json.loads(json.dumps(first.to_state())))
    tail = [restored.update(v) for v in values[200:]]
    assert head + tail == expected
    assert any(f is not None for f in tail)


def test_cusum_learn_refuses_a_flat_baseline() -> None:
    with pytest.raises(ValueError, match="baseline"):
        Cusum.learn("bearing_temp", "°C", [40.0] * 100)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", 2),
        ("kind", "alarm_state"),
        ("channel", 3),
        ("std", 0.0),
        ("std", "0.5"),
        ("upper", -1.0),
        ("h", float("inf")),
    ],
)
def test_cusum_from_state_names_the_bad_field(field: str, value: object) -> None:
    state = learned_cusum().to_state()
    state[field] = value
    with pytest.raises(ValueError, match=field):
        Cusum.from_state(state)


def test_cusum_settings_refuse_a_zero_decision_interval() -> None:
    with pytest.raises(ValueError, match="h"):
        CusumSettings(h=0.0)
