"""The trend test on synthetic daily series (pure functions, no database): a 4 %/week rise with
gaps and wild days is found with its rate and start; flat series with noise are not; a trend
that stopped is not; findings are grouped by cause and reconciled with the open ones."""

from __future__ import annotations

import numpy as np
import pytest

from receiver.drift.findings import (
    Detection,
    OpenFinding,
    SeriesTrend,
    cause_of,
    detect,
    reconcile,
    summary,
)
from receiver.drift.settings import TrendParams
from receiver.drift.trend import Trend, daily_aggregate, find_trend

PARAMS = TrendParams()
SEEDS = range(20)


def rising(
    seed: int,
    days: int = 21,
    rise_from: int = 0,
    stop_at: int | None = None,
    wild: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Daily medians: 1.0, rising 4 % a week from `rise_from` (until `stop_at`), 1 % noise,
    4 days missing and two wild days (x1.5 and x0.6; by default a quarter and half way)."""
    rng = np.random.default_rng(seed)
    day = np.arange(days)
    end = day if stop_at is None else np.minimum(day, stop_at)
    values = 1.0 + 0.04 / 7 * np.maximum(end - rise_from, 0) + 0.01 * rng.standard_normal(days)
    high, low = wild or (days // 4, days // 2)
    values[high] *= 1.5
    values[low] *= 0.6
    keep = np.ones(days, dtype=bool)
    keep[[3, 4, 9, days - 6]] = False
    return day[keep] + 20_000, values[keep]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_rise_of_4_percent_a_week_with_gaps_and_wild_days_is_found(seed: int) -> None:
    days, values = rising(seed)
    trend = find_trend(days, values, PARAMS)
    assert trend is not None
    assert 0.03 <= trend.rate_per_week <= 0.05
    assert trend.onset_day <= 20_007  # within about a week of the start of a window it fills
    assert trend.days_with_data == 17


@pytest.mark.parametrize("seed", SEEDS)
def test_a_rise_that_starts_mid_window_is_dated(seed: int) -> None:
    # day 3 is missing anyway: one wild day (x0.6) in the rise
    days, values = rising(seed, days=29, rise_from=14, wild=(3, 25))
    in_window = days >= 20_008  # a week flat (less a gap), then two weeks and a day rising
    trend = find_trend(days[in_window], values[in_window], PARAMS)
    assert trend is not None
    assert abs(trend.onset_day - 20_014) <= 4  # the start is uncertain by a few days


@pytest.mark.parametrize("seed", SEEDS)
def test_flat_series_with_noise_and_a_daily_load_cycle_are_not_trends(seed: int) -> None:
    rng = np.random.default_rng(seed)
    hours = np.arange(21 * 24)
    load = 1.0 + 0.3 * np.sin(2 * np.pi * hours / 24)  # the day shift runs the machine harder
    windows = (load * (1 + 0.05 * rng.standard_normal(len(hours)))).reshape(21, 24)
    medians = np.array([daily_aggregate(day.reshape(-1, 1)).median[0] for day in windows])
    assert find_trend(np.arange(21), medians, PARAMS) is None
    assert find_trend(np.arange(21), 1.0 + 0.02 * rng.standard_normal(21), PARAMS) is None


@pytest.mark.parametrize("seed", SEEDS)
def test_a_trend_that_stopped_two_weeks_ago_is_not_reported(seed: int) -> None:
    days, values = rising(seed, days=35, stop_at=21)
    assert find_trend(days[-18:], values[-18:], PARAMS) is None


def test_too_few_days_with_data_is_no_trend() -> None:
    days, values = rising(0)
    assert find_trend(days[: PARAMS.min_days - 1], values[: PARAMS.min_days - 1], PARAMS) is None


def test_daily_aggregate_ignores_nan_and_empty_columns() -> None:
    rows = np.array([[1.0, np.nan, np.inf], [3.0, np.nan, 5.0], [2.0, np.nan, 7.0]])
    aggregate = daily_aggregate(rows)
    assert aggregate.median[0] == 2.0 and np.isnan(aggregate.median[1])
    assert aggregate.median[2] == 6.0
    assert aggregate.count.tolist() == [3, 0, 2]
    assert aggregate.p95[0] == pytest.approx(2.9)


def test_causes_group_related_features() -> None:
    assert cause_of("accel_y.spectral_energy") == "accel_y.vibration_level"
    assert cause_of("accel_y.band_100_200hz") == "accel_y.vibration_level"
    assert cause_of("accel_y.excess_kurtosis") == "accel_y.impacts"
    assert cause_of("temp.mean") == "temp.mean"
    assert cause_of("anomaly_score@ae@sha256:01.2") == "anomaly_score"


def trend(rate: float, onset: int = 20_000, last: int = 20_020) -> Trend:
    return Trend(rate / 7, rate, onset, last, 1.0, 0.01, 0.8, 1e-5, 21)


def test_one_finding_per_cause_opened_updated_and_closed() -> None:
    days, values = rising(1)
    series = {
        ("accel_y.spectral_energy", "median"): (days, values),
        ("accel_y.rms", "p95"): (days, values * 2),
        ("temp.mean", "median"): (days, np.full(len(days), 40.0) + 0.1 * np.sin(days)),
    }
    detections = detect(series, PARAMS)
    assert [d.cause for d in detections] == ["accel_y.vibration_level"]
    assert detections[0].features == ("accel_y.rms", "accel_y.spectral_energy")

    opened = reconcile([], detections)
    assert [(c.action, c.finding_id) for c in opened] == [("opened", None)]
    finding = OpenFinding(5, "accel_y.vibration_level", detections[0].rate_pct_per_week,
                          detections[0].features, 20_001)  # fmt: skip
    updated = reconcile([finding], detections)
    assert [(c.action, c.finding_id, c.notable) for c in updated] == [("updated", 5, False)]
    assert updated[0].detection is not None and updated[0].detection.since_day == 20_001
    closed = reconcile([finding], [])
    assert [(c.action, c.finding_id) for c in closed] == [("closed", 5)]


def test_an_update_is_announced_when_the_rate_or_the_features_change() -> None:
    detection = Detection("x.vibration_level", (SeriesTrend("x.rms", "median", trend(0.04)),))
    same = OpenFinding(1, "x.vibration_level", 4.0, ("x.rms",), 20_000)
    faster = OpenFinding(1, "x.vibration_level", 2.0, ("x.rms",), 20_000)
    more = OpenFinding(1, "x.vibration_level", 4.0, ("x.peak", "x.rms"), 20_000)
    assert [reconcile([f], [detection])[0].notable for f in (same, faster, more)] == [
        False,
        True,
        True,
    ]


def test_the_summary_reads_like_the_crew_would_write_it() -> None:
    detection = Detection(
        "accel_y.vibration_level",
        (SeriesTrend("accel_y.spectral_energy", "median", trend(0.04, 20_404, 20_424)),),
    )
    assert summary(detection) == (
        "accel_y.spectral_energy rose 4 % a week for 3 weeks since 2025-11-12: inspect the "
        "bearing, its lubrication and the mounting; plan work in the next shift"
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_a_quantised_series_around_zero_is_no_finding(seed: int) -> None:
    """A vibration channel's mean: daily medians of MCU counts, mostly 0, sometimes +-1 count;
    its median absolute deviation is 0 and a relative % of a zero level means nothing."""
    rng = np.random.default_rng(seed)
    values = np.round(0.4 * rng.standard_normal(21)) * 1e-5
    assert find_trend(np.arange(21), values, PARAMS) is None


def test_a_vibration_channels_mean_is_the_sensors_offset_not_a_finding() -> None:
    days, values = rising(2)
    series = {
        ("accel_x.mean", "p95"): (days, values),
        ("accel_x.spectral_energy", "median"): (days, np.full(len(days), 2.0)),
        ("bearing_temp.mean", "median"): (days, values * 40),
    }
    assert [d.cause for d in detect(series, PARAMS)] == ["bearing_temp.mean"]
