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
from receiver.drift.trend import Trend, autocorrelation_factor, daily_aggregate, find_trend

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
    assert cause_of("accel_y.spectral_energy") == "accel.vibration_level"
    assert cause_of("accel_x.band_100_200hz") == "accel.vibration_level"  # the sensor's axes
    assert cause_of("de_accel_z.rms") == "de_accel.vibration_level"
    assert cause_of("nde_accel_z.rms") == "nde_accel.vibration_level"  # another place
    assert cause_of("accel.rms") == "accel.vibration_level"
    assert cause_of("accel_y.excess_kurtosis") == "accel.impacts"
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
    assert [d.cause for d in detections] == ["accel.vibration_level"]
    assert detections[0].features == ("accel_y.rms", "accel_y.spectral_energy")

    opened = reconcile([], detections)
    assert [(c.action, c.finding_id) for c in opened] == [("opened", None)]
    finding = OpenFinding(5, "accel.vibration_level", detections[0].rate_pct_per_week,
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
        ("bearing_temp.mean", "p95"): (days, values * 41),
    }
    assert [d.cause for d in detect(series, PARAMS)] == ["bearing_temp.mean"]


def ar1(rng: np.random.Generator, days: int, phi: float) -> np.ndarray:
    """Unit-variance AR(1) noise: one day's wander carries into the next."""
    values = np.empty(days)
    values[0] = rng.standard_normal()
    for day in range(1, days):
        values[day] = phi * values[day - 1] + np.sqrt(1 - phi**2) * rng.standard_normal()
    return values


def healthy_asset(seed: int, series: int = 40) -> dict[tuple[str, str], tuple[np.ndarray, ...]]:
    """An asset's daily series on a healthy machine: the medians of days with a +-30 % load cycle
    (which the day averages out), 2 % autocorrelated day-to-day noise, a wild day, 4 days
    missing; a tenth of the series at a 10x lower level, as a noise-floor band is."""
    rng = np.random.default_rng(seed)
    keep = np.ones(21, dtype=bool)
    keep[[2, 8, 9, 15]] = False
    result = {}
    for index in range(series):
        hours = np.arange(21 * 24)
        load = 1.0 + 0.3 * np.sin(2 * np.pi * hours / 24)
        windows = (load * (1 + 0.05 * rng.standard_normal(len(hours)))).reshape(21, 24)
        medians = np.median(windows, axis=1) * (1 + 0.02 * ar1(rng, 21, 0.5))
        medians[rng.integers(21)] *= 1.6
        medians *= 0.1 if index % 10 == 0 else 1.0
        result[(f"ch{index // 10}.band_{index % 10}", "median")] = (
            np.arange(20_000, 20_021)[keep],
            medians[keep],
        )
    return result


@pytest.mark.parametrize("seed", range(3))
def test_a_healthy_asset_raises_nothing(seed: int) -> None:
    """Seed 2 has one series crossing the line by chance: not enough to open a finding."""
    assert [d.cause for d in detect(healthy_asset(seed), PARAMS) if d.corroborated] == []


def test_one_series_alone_is_no_finding_two_of_a_cause_are() -> None:
    """A cause needs two of its series trending the same way: among the ~100 series an asset
    has, one crosses the line by chance now and then (the 30-day scenario's false finding)."""
    series = healthy_asset(0, series=10)
    series[("ch0.rms", "median")] = rising(3)
    alone = detect(series, PARAMS)
    assert [(d.cause, d.corroborated) for d in alone] == [("ch0.vibration_level", False)]
    assert reconcile([], alone) == []
    # ... but it keeps a finding open: one series of the p95 and the median dipping for a day
    # must not close and reopen it
    finding = OpenFinding(3, "ch0.vibration_level", 4.0, ("ch0.rms",), 20_000)
    assert [c.action for c in reconcile([finding], alone)] == ["updated"]

    series[("ch0.rms", "p95")] = rising(4)
    series[("ch1.temp", "median")] = rising(5)
    detections = [d for d in detect(series, PARAMS) if d.corroborated]
    assert [(d.cause, d.features) for d in detections] == [("ch0.vibration_level", ("ch0.rms",))]
    assert 3.0 <= detections[0].rate_pct_per_week <= 5.0
    assert [c.action for c in reconcile([], detections)] == ["opened"]


def test_a_band_rising_on_two_axes_of_one_sensor_corroborates_not_on_two_sensors() -> None:
    """One series per axis: the 30-day scenario's defect first rose in one band of accel_x and
    one of accel_y, each alone (the old per-channel causes found it 3 days later)."""
    series = healthy_asset(0, series=10)
    series[("accel_x.band_400_500hz", "median")] = rising(3)
    series[("accel_y.band_300_400hz", "median")] = rising(4)
    detections = detect(series, PARAMS)
    assert [(d.cause, d.corroborated, d.features) for d in detections] == [
        ("accel.vibration_level", True, ("accel_x.band_400_500hz", "accel_y.band_300_400hz"))
    ]
    apart = {("de_" + name, stat): days_values for (name, stat), days_values in series.items()}
    apart[("nde_accel_y.band_300_400hz", "median")] = apart.pop(
        ("de_accel_y.band_300_400hz", "median")
    )
    assert [d.corroborated for d in detect(apart, PARAMS)] == [False, False]


@pytest.mark.parametrize("seed", range(10))
def test_a_healthy_triaxial_sensor_raises_nothing(seed: int) -> None:
    """Three axes' 30 series in one cause: more chances for two chance trends to meet."""
    series = healthy_asset(seed, series=30)
    named = {(f"accel_{'xyz'[int(name[2])]}.{name.partition('.')[2]}", stat): values
             for (name, stat), values in series.items()}  # fmt: skip
    assert len({cause_of(name) for name, _ in named}) == 1
    assert [d.cause for d in detect(named, PARAMS) if d.corroborated] == []


@pytest.mark.parametrize("seed", SEEDS)
def test_autocorrelated_noise_is_not_a_trend(seed: int) -> None:
    """Days that follow each other's wander (AR(1), 0.5 of yesterday's deviation)."""
    rng = np.random.default_rng(seed)
    values = 1.0 + 0.02 * ar1(rng, 21, 0.5)
    assert find_trend(np.arange(21), values, PARAMS) is None


def test_the_variance_correction_counts_autocorrelated_days_as_fewer() -> None:
    rng = np.random.default_rng(0)
    wandering = np.cumsum(rng.standard_normal(21))
    assert autocorrelation_factor(wandering) > 2.0
    assert autocorrelation_factor(rng.standard_normal(21)) < 1.5
    assert autocorrelation_factor(-np.arange(21.0) % 2) == 1.0  # negative: never bolder
