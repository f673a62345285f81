"""Slow drift in a daily series: daily robust aggregates, a trend test robust to outliers and
gaps, and whether the trend is material (pure: arrays in, numbers out; docs/DRIFT.md).

A series is one aggregate (median or p95) of one feature, one value per UTC day; days without
data are simply absent. The test:

  * the onset: the day where a flat level turning into a straight line fits best (least absolute
    residuals), so "since when" is the first day of the trend, not the window's start;
  * Mann-Kendall (Kendall's tau of value against day) over the trailing window, or from the
    onset on (Bonferroni over the onsets searched): significant at `alpha`, with at least
    `min_days` days with data in the window;
  * the Theil-Sen slope from the onset (the median of pairwise slopes: one bad day moves it
    little);
  * material: at least `min_rate_per_week` of the early level per week, and a total change of at
    least `min_change_spreads` day-to-day spreads (the robust spread of the residuals), so noise
    and the daily load cycle (averaged inside each day) do not count;
  * still going: the last `recent_days` days do not rule out the trend's slope (the upper end of
    their Theil-Sen 99 % interval, for a rise, reaches it); otherwise the trend has stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import kendalltau, norm, rankdata, theilslopes

from receiver.drift.settings import TrendParams

FloatArray = npt.NDArray[np.float64]
MAD_TO_SD = 1.4826
QUANTILE = 95.0
MIN_AFTER_ONSET = 5
"""Days with data from the onset on, at least: fewer give no slope worth the name."""
MIN_BEFORE_ONSET = 3
"""Days with data before an onset inside the window, at least: the flat level is their median."""
MIN_RECENT = 4
NEAR_ZERO_SPREADS = 3.0
"""A series whose level lies within this many spreads of zero has no meaningful % change."""
MEAN_TO_MEDIAN_AD = 1.2533 / 1.4826
SIGNIFICANT_Z = 1.96
"""An autocorrelation of the ranks counts in the variance correction where beyond z / sqrt(n)."""
STOPPED_CONFIDENCE = 0.99
"""The recent days rule the slope out when it lies beyond this confidence interval of theirs."""


@dataclass(frozen=True)
class Trend:
    """A significant, material trend of one daily series."""

    slope_per_day: float
    rate_per_week: float
    """Relative to the early level: 0.04 is +4 % a week."""
    onset_day: int
    last_day: int
    level: float
    """The series' level at the onset (the early-window level)."""
    spread: float
    """Robust day-to-day spread (1.4826 x MAD of the residuals of the fit)."""
    tau: float
    p_value: float
    days_with_data: int

    @property
    def change_spreads(self) -> float:
        return abs(self.slope_per_day) * (self.last_day - self.onset_day) / self.spread


@dataclass(frozen=True)
class DailyAggregate:
    """Per column: median, p95 and the number of finite values of one day's rows."""

    median: FloatArray
    p95: FloatArray
    count: npt.NDArray[np.int64]


def daily_aggregate(rows: FloatArray) -> DailyAggregate:
    """Median and p95 of each column of a day's rows (rows x columns), ignoring NaN and
    infinities; NaN where a column has no finite value."""
    values = np.where(np.isfinite(rows), rows, np.nan)
    count = np.sum(np.isfinite(values), axis=0).astype(np.int64)
    median = np.full(values.shape[1], np.nan)
    p95 = np.full(values.shape[1], np.nan)
    some = count > 0
    if np.any(some):
        median[some] = np.nanmedian(values[:, some], axis=0)
        p95[some] = np.nanpercentile(values[:, some], QUANTILE, axis=0)
    return DailyAggregate(median, p95, count)


@dataclass(frozen=True)
class Assessment:
    """How far one series is from a finding: each test's margin, >= 1 where it passes."""

    trend: Trend | None
    """The fitted trend (None where the series has too few days or no direction)."""
    significance: float = 0.0
    """log(p) / log(alpha per series): 1 at the threshold, 2 at its square."""
    rate: float = 0.0
    """|rate| / min_rate_per_week."""
    change: float = 0.0
    """Change since the onset in spreads / min_change_spreads."""
    clear_of_zero: bool = False
    stopped: bool = False

    @property
    def strength(self) -> float:
        """The weakest margin: a finding where >= 1 (0 when the level is near zero or the
        trend stopped)."""
        if self.trend is None or not self.clear_of_zero or self.stopped:
            return 0.0
        return min(self.significance, self.rate, self.change)


def find_trend(
    days: npt.ArrayLike, values: npt.ArrayLike, params: TrendParams, tests: int = 1
) -> Trend | None:
    """The series' trend if it is significant, material and still going; else None. `tests`:
    how many series of the asset are tested at once (alpha is shared among them)."""
    assessment = assess(days, values, params, tests)
    return assessment.trend if assessment.strength >= 1.0 else None


def assess(
    days: npt.ArrayLike, values: npt.ArrayLike, params: TrendParams, tests: int = 1
) -> Assessment:
    """The series' candidate trend and its margins on every test (find_trend's verdict)."""
    x_days = np.asarray(days, dtype=np.int64)
    y_all = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(y_all)
    x_days, y = x_days[finite], y_all[finite]
    if len(y) < params.min_days or np.ptp(y) == 0.0:
        return Assessment(None)
    x = (x_days - x_days[0]).astype(np.float64)
    line = theilslopes(y, x)
    direction = 1.0 if line.slope > 0 else -1.0
    if line.slope == 0:
        return Assessment(None)
    onset = find_onset(x, y, direction)
    after = x >= onset
    fit = theilslopes(y[after], x[after])
    slope = float(fit.slope)
    if slope * direction <= 0:
        return Assessment(None)
    level = float(fit.intercept + slope * onset)
    residuals = y - hinge(x, onset, level, slope)
    p_window = mann_kendall_p(x, y, direction, residuals)
    searched = max(len(y) - MIN_BEFORE_ONSET - MIN_AFTER_ONSET + 1, 1)
    p_value = p_window
    if onset > 0:  # Bonferroni: the onset was chosen to fit a trend best
        p_after = mann_kendall_p(x[after], y[after], direction, residuals[after])
        p_value = min(p_window, (searched + 1) * p_after)
    spread = residual_spread(residuals, level)
    trend = Trend(
        slope_per_day=slope,
        rate_per_week=slope * 7.0 / abs(level) if abs(level) > 0 else math.inf,
        onset_day=int(x_days[0] + onset),
        last_day=int(x_days[-1]),
        level=level,
        spread=spread,
        tau=kendall_tau(x, y),
        p_value=float(p_value),
        days_with_data=len(y),
    )
    alpha = params.alpha / max(tests, 1)
    return Assessment(
        trend,
        significance=math.log(max(p_value, 1e-300)) / math.log(alpha),
        rate=abs(trend.rate_per_week) / params.min_rate_per_week,
        change=trend.change_spreads / params.min_change_spreads,
        clear_of_zero=abs(level) >= NEAR_ZERO_SPREADS * spread,
        stopped=has_stopped(x, y, slope, params.recent_days),
    )


def kendall_tau(x: FloatArray, y: FloatArray) -> float:
    tau = kendalltau(x, y).statistic
    return float(tau) if np.isfinite(tau) else 0.0


def mann_kendall_p(x: FloatArray, y: FloatArray, direction: float, residuals: FloatArray) -> float:
    """Two-sided p of the Mann-Kendall test (1 where S points against `direction`), its variance
    corrected for the autocorrelation of the residuals' ranks (Hamed and Rao 1998): days that
    follow each other's wander are fewer independent days than they look. Days are in order; a
    gap counts as one step (the correction's lags are in observations)."""
    n = len(y)
    if n < 3:
        return 1.0
    order = np.argsort(x, kind="stable")
    y = y[order]
    signs = np.sign(y[None, :] - y[:, None])
    s = float(np.sum(np.triu(signs, k=1)))
    _, ties = np.unique(y, return_counts=True)
    variance = (n * (n - 1) * (2 * n + 5) - float(np.sum(ties * (ties - 1) * (2 * ties + 5)))) / 18
    variance *= autocorrelation_factor(residuals[order])
    if variance <= 0:
        return 1.0
    if s * direction <= 0:
        return 1.0
    z = (abs(s) - 1.0) / math.sqrt(variance)  # continuity correction
    return float(2.0 * norm.sf(z))


def autocorrelation_factor(residuals: FloatArray) -> float:
    """Hamed and Rao's n / n*: 1 + 2 / (n (n-1) (n-2)) x sum over lags k of (n-k) (n-k-1) (n-k-2)
    rho_k, rho_k the autocorrelation of the residuals' ranks at lag k where significant at 5 %;
    never below 1 (a negative correlation by chance must not make the test bolder)."""
    n = len(residuals)
    ranks = rankdata(residuals)
    centred = ranks - ranks.mean()
    denominator = float(np.sum(centred**2))
    if n < 4 or denominator == 0:
        return 1.0
    bound = SIGNIFICANT_Z / math.sqrt(n)
    total = 0.0
    for lag in range(1, n - 2):
        rho = float(np.sum(centred[:-lag] * centred[lag:])) / denominator
        if abs(rho) > bound:
            total += (n - lag) * (n - lag - 1) * (n - lag - 2) * rho
    return max(1.0, 1.0 + 2.0 * total / (n * (n - 1) * (n - 2)))


def find_onset(x: FloatArray, y: FloatArray, direction: float) -> float:
    """The day (offset from the first) where a flat level turning into a line in `direction`
    fits the series best by least absolute residuals; the first day when a line fits best."""
    candidates = x[MIN_BEFORE_ONSET:]
    candidates = candidates[[np.count_nonzero(x >= k) >= MIN_AFTER_ONSET for k in candidates]]
    best, best_cost = float(x[0]), line_cost(x, y)
    for k in candidates:
        level = float(np.median(y[x < k]))
        rising = x > k
        slope = float(np.median((y[rising] - level) / (x[rising] - k)))
        if slope * direction <= 0:
            continue
        cost = float(np.sum(np.abs(y - hinge(x, k, level, slope))))
        if cost < best_cost:
            best, best_cost = float(k), cost
    return best


def line_cost(x: FloatArray, y: FloatArray) -> float:
    fit = theilslopes(y, x)
    return float(np.sum(np.abs(y - (fit.intercept + fit.slope * x))))


def hinge(x: FloatArray, onset: float, level: float, slope: float) -> FloatArray:
    """Flat at `level` until `onset`, then a line of `slope`."""
    return level + slope * np.maximum(x - onset, 0.0)


def residual_spread(residuals: FloatArray, level: float) -> float:
    """The robust day-to-day spread of the residuals around the fit; never zero."""
    around_fit = MAD_TO_SD * mad(residuals)
    # From one day to the next (a trend adds little to it): the larger of the two keeps a
    # residual MAD that came out small by chance from calling noise material.
    day_to_day = MAD_TO_SD * mad(np.diff(residuals)) / np.sqrt(2.0)
    floor = 1e-9 * max(abs(level), 1.0)
    return float(max(around_fit, day_to_day, floor))


def mad(values: FloatArray) -> float:
    """Median absolute deviation from the median; for values so coarsely quantised that it is 0
    (a median of MCU counts), the mean absolute deviation scaled to match (1.2533 / 1.4826)."""
    deviations = np.abs(values - np.median(values))
    median = float(np.median(deviations))
    return median if median > 0 else float(np.mean(deviations)) * MEAN_TO_MEDIAN_AD


def has_stopped(x: FloatArray, y: FloatArray, slope: float, recent_days: int) -> bool:
    """The last `recent_days` days rule the slope out (their 99 % interval excludes it)."""
    recent = x > x[-1] - recent_days
    if np.count_nonzero(recent) < MIN_RECENT:
        return False
    fit = theilslopes(y[recent], x[recent], alpha=STOPPED_CONFIDENCE)
    if slope > 0:
        return bool(fit.high_slope < slope)
    return bool(fit.low_slope > slope)
