"""Slow channels: window statistics, NaN when empty, and emission of slow-only assets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from appliance.features import AssetFeatures, ChannelSpec, FeatureSettings
from appliance.records import FeatureVector, FloatArray, SampleBlock

from .signals import random_noise, split_into_blocks

T0 = 1_700_000_000.0
SETTINGS = FeatureSettings(slow_window_s=10.0)


def expected_slow_stats(times: FloatArray, values: FloatArray, end: float) -> list[float]:
    selected = (times >= end - SETTINGS.slow_window_s) & (times < end)
    t, v = times[selected] - T0, values[selected]
    if len(v) == 0:
        return [math.nan] * 5
    slope = float(np.polyfit(t, v, 1)[0]) if len(v) > 1 else math.nan
    return [float(v.mean()), float(v.std()), float(v.min()), float(v.max()), slope]


def slow_values(vector: FeatureVector, channel: str) -> list[float]:
    values = vector.as_dict()
    return [values[f"{channel}.{feature}"] for feature in ("mean", "std", "min", "max", "slope")]


def push_one_sample_at_a_time(
    engine: AssetFeatures, channel: str, times: FloatArray, values: FloatArray, rate: float
) -> list[FeatureVector]:
    vectors = []
    for t, value in zip(times, values, strict=True):
        vectors.extend(engine.push(SampleBlock("m", channel, float(t), rate, np.array([value]))))
    return vectors


def test_vibration_vectors_carry_slow_stats_over_the_slow_window() -> None:
    rate = 1000.0
    engine = AssetFeatures(
        "m", [ChannelSpec("accel", rate, True), ChannelSpec("temp", 1.0, False)], SETTINGS
    )
    # Temperature starts 8 s in: the first vectors have no temperature yet.
    temp_times = T0 + 8.0 + np.arange(20.0)
    temp_values: FloatArray = 40.0 + 0.05 * (temp_times - T0) + 0.3 * np.sin(np.arange(20.0))
    accel_blocks = split_into_blocks("m", "accel", random_noise(30_000, 1), rate, T0, (250,))
    vectors: list[FeatureVector] = []
    for block in accel_blocks:
        # Each temperature sample arrives once the vibration stream has passed its time.
        due = (temp_times >= block.t0) & (temp_times < block.t_end)
        vectors.extend(
            push_one_sample_at_a_time(engine, "temp", temp_times[due], temp_values[due], 1.0)
        )
        vectors.extend(engine.push(block))

    assert len(vectors) == 26
    assert all(math.isnan(value) for value in slow_values(vectors[0], "temp"))
    checked = 0
    for vector in vectors:
        expected = expected_slow_stats(temp_times, temp_values, vector.window_end)
        np.testing.assert_allclose(slow_values(vector, "temp"), expected, rtol=1e-9)
        checked += not math.isnan(expected[-1])
    assert checked > 15


def test_slope_is_in_units_per_second() -> None:
    engine = AssetFeatures("m", [ChannelSpec("temp", 4.0, False)], SETTINGS)
    times = T0 + np.arange(80) / 4.0
    values = 20.0 + 0.5 * (times - T0)

    vectors = push_one_sample_at_a_time(engine, "temp", times, values, 4.0)

    assert vectors[-1].as_dict()["temp.slope"] == pytest.approx(0.5, rel=1e-9)


def test_slow_only_asset_emits_every_stride_of_sample_time() -> None:
    engine = AssetFeatures(
        "m", [ChannelSpec("temp", 1.0, False), ChannelSpec("current", 2.0, False)], SETTINGS
    )
    temp_times, temp_values = T0 + np.arange(30.0), 30.0 + random_noise(30, 1)
    current_times, current_values = T0 + 0.25 + np.arange(60) / 2.0, 5.0 + random_noise(60, 2)
    vectors = []
    for second in range(30):
        vectors += push_one_sample_at_a_time(
            engine, "temp", temp_times[second : second + 1], temp_values[second : second + 1], 1.0
        )
        pair = slice(2 * second, 2 * second + 2)
        vectors += push_one_sample_at_a_time(
            engine, "current", current_times[pair], current_values[pair], 2.0
        )

    # Boundaries T0 + 1, T0 + 2, ..., each emitted once a sample at or after it arrived; the
    # last sample is at T0 + 29.75.
    assert [vector.window_end - T0 for vector in vectors] == list(range(1, 30))
    for vector in vectors:
        assert vector.names == engine.feature_names
        expected_temp = expected_slow_stats(temp_times, temp_values, vector.window_end)
        expected_current = expected_slow_stats(current_times, current_values, vector.window_end)
        np.testing.assert_allclose(slow_values(vector, "temp"), expected_temp, rtol=1e-9)
        np.testing.assert_allclose(slow_values(vector, "current"), expected_current, rtol=1e-9)


def test_a_block_of_many_slow_samples_emits_every_stride_it_covers() -> None:
    one_by_one = AssetFeatures("m", [ChannelSpec("temp", 1.0, False)], SETTINGS)
    at_once = AssetFeatures("m", [ChannelSpec("temp", 1.0, False)], SETTINGS)
    times, values = T0 + np.arange(50.0), random_noise(50, 3)

    expected = push_one_sample_at_a_time(one_by_one, "temp", times, values, 1.0)
    actual = at_once.push(SampleBlock("m", "temp", T0, 1.0, values))

    assert len(actual) == len(expected) == 49
    for a, b in zip(actual, expected, strict=True):
        assert a.window_end == b.window_end
        np.testing.assert_allclose(a.values, b.values, rtol=1e-12, equal_nan=True)


def test_a_gap_in_slow_time_skips_windows_without_samples() -> None:
    engine = AssetFeatures("m", [ChannelSpec("temp", 1.0, False)], SETTINGS)
    times = T0 + np.concatenate([np.arange(20.0), 500.0 + np.arange(5.0)])

    vectors = push_one_sample_at_a_time(engine, "temp", times, np.ones(len(times)), 1.0)

    ends = [vector.window_end - T0 for vector in vectors]
    # Windows ending up to 29 s still hold samples from before the gap; then none until 501 s.
    assert ends == [*range(1, 30), 501.0, 502.0, 503.0, 504.0]
    assert all(not np.all(np.isnan(vector.values)) for vector in vectors)


def test_a_slow_clock_that_jumps_back_restarts_the_windows() -> None:
    engine = AssetFeatures("m", [ChannelSpec("temp", 1.0, False)], SETTINGS)
    before = push_one_sample_at_a_time(engine, "temp", T0 + np.arange(30.0), np.ones(30), 1.0)
    after = push_one_sample_at_a_time(engine, "temp", T0 - 3600 + np.arange(5.0), np.zeros(5), 1.0)

    assert len(before) == 29
    assert [vector.window_end - T0 for vector in after] == [-3599.0, -3598.0, -3597.0, -3596.0]
    assert all(vector.as_dict()["temp.max"] == 0.0 for vector in after)
