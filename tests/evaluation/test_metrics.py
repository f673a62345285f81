"""SKAB leaderboard metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from appliance.evaluation.metrics import (
    NAB_LOW_FN,
    NAB_LOW_FP,
    NAB_PROFILES,
    NAB_STANDARD,
    BoolArray,
    ChangepointWindow,
    NabProfile,
    NabTally,
    OutlierCounts,
    changepoint_windows,
    nab_tally,
    outlier_counts,
    outlier_scores,
    predicted_changepoints,
    sum_counts,
    true_positive_weight,
)
from appliance.records import FloatArray

SECONDS = np.arange(300.0)
"""Rows one second apart; the NAB cases below put changepoints at t = 100 (and 200)."""


def bools(values: list[int]) -> BoolArray:
    return np.array(values, dtype=np.bool_)


def changepoints_at(times: FloatArray, *moments: float) -> BoolArray:
    return np.isin(times, moments)


def alarm_between(times: FloatArray, *spans: tuple[float, float]) -> BoolArray:
    """1 for start <= t < end of each span: a rising edge at start and a falling edge at end."""
    alarm = np.zeros(len(times), dtype=np.bool_)
    for start, end in spans:
        alarm |= (times >= start) & (times < end)
    return alarm


def normalised(
    predictions: BoolArray, changepoints: BoolArray, profile: NabProfile = NAB_STANDARD
) -> float:
    return nab_tally(SECONDS, changepoints, predictions, profile).normalised


# Outlier problem


def test_counts_and_scores_match_the_hand_computation() -> None:
    labels = bools([1, 1, 1, 0, 0, 0, 0, 0])
    predictions = bools([1, 0, 1, 1, 0, 0, 0, 0])

    counts = outlier_counts(labels, predictions)
    scores = outlier_scores(counts)

    assert counts == OutlierCounts(tp=2, fp=1, tn=4, fn=1)
    assert scores.f1 == pytest.approx(2 / 3)  # 2 / (2 + (1 + 1) / 2)
    assert scores.far == pytest.approx(20.0)  # 100 * 1 / (1 + 4)
    assert scores.mar == pytest.approx(100 / 3)  # 100 * 1 / (1 + 2)


def test_counts_are_summed_over_files_before_the_ratios() -> None:
    first = OutlierCounts(tp=9, fp=0, tn=0, fn=1)
    second = OutlierCounts(tp=0, fp=1, tn=9, fn=9)

    scores = outlier_scores(sum_counts([first, second]))

    assert sum_counts([first, second]) == OutlierCounts(tp=9, fp=1, tn=9, fn=10)
    assert scores.f1 == pytest.approx(9 / (9 + 11 / 2))
    assert scores.far == pytest.approx(10.0)
    assert scores.mar == pytest.approx(100 * 10 / 19)


def test_undefined_ratios_are_nan_not_zero() -> None:
    scores = outlier_scores(OutlierCounts(tp=0, fp=0, tn=5, fn=0))

    assert math.isnan(scores.f1)
    assert scores.far == 0.0
    assert math.isnan(scores.mar)


def test_series_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="one length"):
        outlier_counts(bools([1, 0]), bools([1]))


# Changepoints and windows


@pytest.mark.parametrize(
    ("predictions", "edges"),
    [
        ([0, 0, 1, 1, 0, 0], [0, 0, 1, 0, 1, 0]),
        ([1, 1, 0, 0, 1], [1, 0, 1, 0, 1]),
        ([0, 0, 0], [0, 0, 0]),
        ([], []),
    ],
)
def test_predicted_changepoints_are_rising_and_falling_edges(
    predictions: list[int], edges: list[int]
) -> None:
    assert predicted_changepoints(bools(predictions)).tolist() == [bool(e) for e in edges]


def test_an_overlapping_window_starts_where_the_previous_one_ends() -> None:
    windows = changepoint_windows(np.array([100.0, 130.0, 300.0]), window_s=60.0)

    # SKAB keeps the first window whole and shortens the next one from the left.
    assert [(w.start, w.end) for w in windows] == [(100.0, 160.0), (160.0, 190.0), (300.0, 360.0)]


# SKAB's weight at step i of 1000: (A_tp - A_fp) / 2 * (1 - tanh(x_i) / tanh(pi/2)) + A_fp with
# x_i = -pi/2 + i * pi / 999. Half way (i = 500): x = 0.0015724, tanh(x) / tanh(pi/2) = 0.0017144,
# so 0.555 * 0.9982856 - 0.11 = 0.4440485 (Standard) and 0.61 * 0.9982856 - 0.22 = 0.3889542.
HALF_WAY_STANDARD = 0.44404850713138366
HALF_WAY_LOW_FP = 0.3889542150453045


def test_true_positive_weight_falls_from_a_tp_to_a_fp_across_the_window() -> None:
    window = ChangepointWindow(100.0, 160.0)

    assert true_positive_weight(100.0, window, NAB_STANDARD) == pytest.approx(1.0)
    assert true_positive_weight(130.0, window, NAB_STANDARD) == pytest.approx(HALF_WAY_STANDARD)
    assert true_positive_weight(130.0, window, NAB_LOW_FP) == pytest.approx(HALF_WAY_LOW_FP)
    assert true_positive_weight(160.0, window, NAB_STANDARD) == pytest.approx(-0.11)
    assert true_positive_weight(160.0, window, NAB_LOW_FP) == pytest.approx(-0.22)


# NAB scores


@pytest.mark.parametrize("profile", NAB_PROFILES, ids=lambda p: p.name)
def test_perfect_detector_scores_100_and_null_detector_0(profile: NabProfile) -> None:
    changepoints = changepoints_at(SECONDS, 100.0, 200.0)
    perfect = alarm_between(SECONDS, (100.0, 200.0))  # edges exactly at both changepoints
    null = np.zeros(len(SECONDS), dtype=np.bool_)

    assert normalised(perfect, changepoints, profile) == pytest.approx(100.0)
    assert normalised(null, changepoints, profile) == pytest.approx(0.0)


def test_detection_at_window_start_scores_higher_than_later_in_the_window() -> None:
    changepoints = changepoints_at(SECONDS, 100.0)
    scores = [
        normalised(alarm_between(SECONDS, (start, 1000.0)), changepoints)
        for start in (100.0, 130.0, 160.0)
    ]

    # Raw scores 1, 0.4440 and A_fp = -0.11 (the window's end) against null -1 and perfect 1.
    assert scores == pytest.approx([100.0, 100 * (1 + HALF_WAY_STANDARD) / 2, 100 * 0.89 / 2])


def test_only_the_first_detection_in_a_window_counts() -> None:
    changepoints = changepoints_at(SECONDS, 100.0)
    flickering = alarm_between(SECONDS, (100.0, 110.0), (120.0, 125.0))  # 4 edges in the window

    assert normalised(flickering, changepoints) == pytest.approx(100.0)


def test_a_detection_at_the_second_changepoint_is_still_in_the_first_window() -> None:
    changepoints = changepoints_at(SECONDS, 100.0, 130.0)
    # Windows [100, 160] and [160, 190]: the falling edge at 130 is a later detection in the
    # first window (worth nothing), and the second window is missed: raw 1 - 1 of null -2.
    edges_at_both_changepoints = alarm_between(SECONDS, (100.0, 130.0))

    assert normalised(edges_at_both_changepoints, changepoints) == pytest.approx(50.0)


def test_a_detection_on_a_shared_window_boundary_counts_for_both_windows() -> None:
    changepoints = changepoints_at(SECONDS, 100.0, 130.0)
    # 160 ends [100, 160] (worth A_fp) and starts [160, 190] (worth A_tp): raw 0.89 of null -2.
    detected_at_boundary = alarm_between(SECONDS, (160.0, 1000.0))

    assert normalised(detected_at_boundary, changepoints) == pytest.approx(100 * 2.89 / 4)


@pytest.mark.parametrize(
    ("profile", "expected"),
    [(NAB_STANDARD, 94.5), (NAB_LOW_FP, 89.0), (NAB_LOW_FN, 100 * (1.78 + 4) / 6)],
    ids=lambda value: getattr(value, "name", ""),
)
def test_false_positives_cost_more_under_low_fp(profile: NabProfile, expected: float) -> None:
    changepoints = changepoints_at(SECONDS, 100.0, 200.0)
    # A pulse at 20..21 is two false detections (rising and falling edge).
    caught_with_two_fps = alarm_between(SECONDS, (20.0, 21.0), (100.0, 200.0))

    assert normalised(caught_with_two_fps, changepoints, profile) == pytest.approx(expected)


def test_misses_cost_more_under_low_fn() -> None:
    changepoints = changepoints_at(SECONDS, 100.0, 200.0)
    second_missed = alarm_between(SECONDS, (100.0, 1000.0))

    standard = nab_tally(SECONDS, changepoints, second_missed, NAB_STANDARD)
    low_fn = nab_tally(SECONDS, changepoints, second_missed, NAB_LOW_FN)

    assert standard == NabTally(score=1.0 - 1.0, null=-2.0, perfect=2.0)
    assert low_fn == NabTally(score=1.0 - 2.0, null=-4.0, perfect=2.0)
    # Catching the second window at the price of two false positives gains more under LowFN.
    caught = alarm_between(SECONDS, (20.0, 21.0), (100.0, 200.0))
    gain = {
        profile.name: normalised(caught, changepoints, profile)
        - normalised(second_missed, changepoints, profile)
        for profile in (NAB_STANDARD, NAB_LOW_FN)
    }
    assert gain[NAB_LOW_FN.name] > gain[NAB_STANDARD.name]


def test_windows_are_measured_in_time_not_rows() -> None:
    times = np.concatenate([np.arange(100.0, 103.0), [170.0, 171.0]])  # a 67 s gap after 102
    changepoints = changepoints_at(times, 100.0)
    detected_after_gap = bools([0, 0, 0, 1, 1])

    tally = nab_tally(times, changepoints, detected_after_gap, NAB_STANDARD)

    assert tally == NabTally(score=-0.11 - 1.0, null=-1.0, perfect=1.0)


def test_files_are_summed_before_normalising() -> None:
    one_window_caught = nab_tally(
        SECONDS,
        changepoints_at(SECONDS, 100.0),
        alarm_between(SECONDS, (100.0, 1000.0)),
        NAB_STANDARD,
    )
    three_windows_missed = nab_tally(
        SECONDS,
        changepoints_at(SECONDS, 50.0, 150.0, 250.0),
        np.zeros(len(SECONDS), dtype=np.bool_),
        NAB_STANDARD,
    )

    total = one_window_caught + three_windows_missed

    assert total == NabTally(score=1.0 - 3.0, null=-4.0, perfect=4.0)
    assert total.normalised == pytest.approx(25.0)  # the mean of per-file scores would be 50


def test_a_file_without_changepoints_only_adds_its_false_positives() -> None:
    no_changepoints = np.zeros(len(SECONDS), dtype=np.bool_)

    tally = nab_tally(SECONDS, no_changepoints, alarm_between(SECONDS, (10.0, 20.0)), NAB_LOW_FP)

    assert tally == NabTally(score=2 * -0.22, null=0.0, perfect=0.0)
    assert math.isnan(tally.normalised)
