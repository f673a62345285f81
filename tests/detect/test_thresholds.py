"""Fixed and adaptive thresholds: calibration, warm-up, gating, floor, causality, persistence."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.detect.alarms import AlarmDecision, AlarmSettings, AlarmState, decide
from appliance.detect.scorer import MEASURED_ADAPTIVE
from appliance.detect.thresholds import (
    AdaptiveSettings,
    AdaptiveThreshold,
    FixedThreshold,
    Statistic,
    Threshold,
    calibrate_fixed,
)

STATISTICS: tuple[Statistic, ...] = ("mean_std", "median_mad")


def run(
    errors: Sequence[float], threshold: Threshold, alarm: AlarmState | None = None
) -> list[AlarmDecision]:
    """Decisions on `errors` at times 0, 1, 2, ..."""
    alarm = alarm or AlarmState()
    return [decide(threshold, alarm, float(t), error) for t, error in enumerate(errors)]


def normal_errors(seed: int, count: int, level: float = 1.0, spread: float = 0.1) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(np.abs(rng.normal(level, spread, count)))


# --- fixed -------------------------------------------------------------------------------------


def test_calibrate_fixed_takes_the_quantile_times_the_margin() -> None:
    errors = np.arange(1, 1001, dtype=float)  # quantile q of 1..1000 is 1 + 999 q
    assert calibrate_fixed(errors, quantile=0.9).value == pytest.approx(900.1)
    assert calibrate_fixed(errors, quantile=0.9, margin=1.5).value == pytest.approx(1350.15)


@pytest.mark.parametrize(
    ("errors", "quantile", "margin", "field"),
    [
        ([], 0.99, 1.0, "errors"),
        ([1.0, float("nan")], 0.99, 1.0, "errors"),
        ([1.0], 0.0, 1.0, "quantile"),
        ([1.0], 0.99, 0.0, "margin"),
    ],
)
def test_calibrate_fixed_refuses_bad_input(
    errors: list[float], quantile: float, margin: float, field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        calibrate_fixed(errors, quantile, margin)


def test_fixed_threshold_never_moves() -> None:
    fixed = FixedThreshold(2.0)
    decisions = run([1.0, 5.0, 5.0, 1.0], fixed)
    assert [d.threshold for d in decisions] == [2.0] * 4
    assert [d.anomalous for d in decisions] == [False, True, True, True]


# --- warm-up -----------------------------------------------------------------------------------


def test_no_decision_during_warmup_even_for_a_huge_error() -> None:
    adaptive = AdaptiveThreshold(AdaptiveSettings(window=50, warmup=10))
    alarm = AlarmState()
    decisions = run([1.0] * 9 + [1000.0], adaptive, alarm)
    assert all(d.threshold is None and not d.anomalous for d in decisions)
    # The huge error was admitted (nothing to compare it with during warm-up)...
    assert adaptive.baseline()[-1] == 1000.0
    # ...and the 11th error gets a decision.
    assert decide(adaptive, alarm, 10.0, 1.0).threshold is not None


def test_a_commissioning_baseline_skips_warmup() -> None:
    seeded = AdaptiveThreshold(
        AdaptiveSettings(window=200, warmup=50), baseline=normal_errors(1, 60)
    )
    assert not seeded.warming_up
    decision = run([5.0], seeded)[0]
    assert decision.anomalous


def test_a_short_baseline_only_shortens_warmup() -> None:
    seeded = AdaptiveThreshold(
        AdaptiveSettings(window=200, warmup=50), baseline=normal_errors(1, 45)
    )
    decisions = run(normal_errors(2, 6), seeded)
    assert [d.threshold is None for d in decisions] == [True] * 5 + [False]


# --- the baseline learns only from normal windows ----------------------------------------------


def long_anomaly() -> list[float]:
    """500 normal errors, 3000 errors at twice the normal level, 100 normal again."""
    return normal_errors(3, 500) + normal_errors(4, 3000, level=2.0) + normal_errors(5, 100)


@pytest.mark.parametrize("statistic", STATISTICS)
def test_a_long_anomaly_stays_alarmed_and_then_clears(statistic: Statistic) -> None:
    settings = AdaptiveSettings(window=300, warmup=100, k=4.0, statistic=statistic)
    decisions = run(long_anomaly(), AdaptiveThreshold(settings))
    anomaly = decisions[500:3500]
    assert all(d.anomalous for d in anomaly)
    events = [d.event.kind for d in decisions if d.event is not None]
    assert events == ["raised", "cleared"]
    assert not decisions[-1].anomalous


@pytest.mark.parametrize("statistic", STATISTICS)
def test_the_seed_rule_learns_the_anomaly_and_clears_itself(statistic: Statistic) -> None:
    naive = AdaptiveSettings(
        window=300, warmup=100, k=4.0, statistic=statistic, gate_baseline=False
    )
    decisions = run(long_anomaly(), AdaptiveThreshold(naive))
    cleared_at = [i for i, d in enumerate(decisions) if d.event and d.event.kind == "cleared"]
    assert 500 < cleared_at[0] < 3500
    assert not any(d.anomalous for d in decisions[3000:3500])


def test_alarmed_windows_leave_the_baseline_untouched() -> None:
    adaptive = AdaptiveThreshold(AdaptiveSettings(window=300, warmup=100))
    errors = long_anomaly()
    alarm = AlarmState()
    run(errors[:500], adaptive, alarm)
    before = adaptive.baseline()
    threshold_before = adaptive.current()
    run(errors[500:3500], adaptive, alarm)
    np.testing.assert_array_equal(adaptive.baseline(), before)
    assert adaptive.current() == threshold_before


def test_windows_in_the_clearing_band_do_not_feed_the_baseline() -> None:
    """Below the threshold but still alarmed (hysteresis): refused, so it cannot creep up."""
    adaptive = AdaptiveThreshold(AdaptiveSettings(window=50, warmup=10), baseline=[1.0] * 20)
    assert not adaptive.observe(1.0, alarmed=True)
    assert adaptive.observe(1.0, alarmed=False)
    assert not adaptive.observe(float("nan"), alarmed=False)


# --- statistics, floor and ring ----------------------------------------------------------------


@pytest.mark.parametrize("statistic", STATISTICS)
def test_both_statistics_give_mean_plus_k_sigma_on_gaussian_errors(statistic: Statistic) -> None:
    errors = normal_errors(6, 5000, level=10.0, spread=1.0)
    adaptive = AdaptiveThreshold(
        AdaptiveSettings(window=5000, warmup=10, k=3.0, statistic=statistic), baseline=errors
    )
    assert adaptive.current() == pytest.approx(13.0, abs=0.15)


def test_the_robust_statistic_ignores_a_few_outliers_in_the_baseline() -> None:
    errors = normal_errors(7, 1000) + [50.0] * 10
    window = AdaptiveSettings(window=2000, warmup=10, k=3.0)
    robust = AdaptiveThreshold(window, baseline=errors).current()
    classic = AdaptiveThreshold(
        AdaptiveSettings(window=2000, warmup=10, k=3.0, statistic="mean_std"), baseline=errors
    ).current()
    assert robust is not None and classic is not None
    assert robust < 1.5 < classic


def test_the_floor_prevents_a_hair_trigger_on_a_quiet_baseline() -> None:
    quiet = [0.1] * 100
    settings = AdaptiveSettings(window=100, warmup=10, floor_ratio=0.8)
    unfloored = AdaptiveThreshold(settings, baseline=quiet)
    floored = AdaptiveThreshold(settings, reference=1.0, baseline=quiet)
    assert unfloored.current() == pytest.approx(0.1)
    assert floored.current() == pytest.approx(0.8)
    assert not run([0.5], floored)[0].anomalous


def test_the_ring_keeps_only_the_latest_window() -> None:
    adaptive = AdaptiveThreshold(AdaptiveSettings(window=100, warmup=10, k=3.0))
    for error in [5.0] * 100 + list(normal_errors(8, 100, level=4.0)):
        adaptive.observe(error, alarmed=False)
    assert len(adaptive.baseline()) == 100
    assert 5.0 not in adaptive.baseline()


# --- causality ---------------------------------------------------------------------------------

error_values = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)


@settings(deadline=None, max_examples=150)
@given(
    errors=st.lists(error_values, min_size=2, max_size=60),
    changed_at=st.integers(min_value=0, max_value=59),
    new_value=error_values,
    statistic=st.sampled_from(STATISTICS),
    on_count=st.integers(min_value=1, max_value=3),
)
def test_a_future_error_never_changes_a_past_decision(
    errors: list[float], changed_at: int, new_value: float, statistic: Statistic, on_count: int
) -> None:
    changed_at %= len(errors)
    changed = [*errors[:changed_at], new_value, *errors[changed_at + 1 :]]

    def decisions(stream: list[float]) -> list[AlarmDecision]:
        threshold = AdaptiveThreshold(
            AdaptiveSettings(window=8, warmup=3, statistic=statistic), reference=0.5
        )
        return run(stream, threshold, AlarmState(AlarmSettings(on_count=on_count)))

    original, altered = decisions(errors), decisions(changed)
    assert original[:changed_at] == altered[:changed_at]
    # The threshold the changed error is judged by comes from the errors before it.
    assert original[changed_at].threshold == altered[changed_at].threshold


# --- persistence -------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [5, 150, 400])
def test_a_restored_threshold_continues_like_an_uninterrupted_one(split: int) -> None:
    errors = normal_errors(9, 300) + normal_errors(10, 100, level=3.0) + normal_errors(11, 200)
    settings = AdaptiveSettings(window=120, warmup=50, statistic="mean_std")
    uninterrupted = run(errors, AdaptiveThreshold(settings, reference=0.9))

    threshold, alarm = AdaptiveThreshold(settings, reference=0.9), AlarmState()
    first = run(errors[:split], threshold, alarm)
    threshold_state = json.loads(json.dumps(threshold.to_state()))
    alarm_state = json.loads(json.dumps(alarm.to_state()))
    restored_threshold = AdaptiveThreshold.from_state(threshold_state)
    restored_alarm = AlarmState.from_state(alarm_state)
    rest = [
        decide(restored_threshold, restored_alarm, float(t), errors[t])
        for t in range(split, len(errors))
    ]
    assert first + rest == uninterrupted
    assert any(d.anomalous for d in uninterrupted)


def test_restoring_after_warmup_skips_warmup() -> None:
    adaptive = AdaptiveThreshold(AdaptiveSettings(window=100, warmup=50), baseline=[1.0] * 60)
    restored = AdaptiveThreshold.from_state(adaptive.to_state())
    assert not restored.warming_up
    assert restored.current() == adaptive.current()


def valid_state() -> dict[str, object]:
    return AdaptiveThreshold(AdaptiveSettings(window=4, warmup=2), 1.0, [1.0, 2.0]).to_state()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("version", 2, "version"),
        ("kind", "cusum", "kind"),
        ("reference", "high", "reference"),
        ("baseline", [1.0, 2.0, 3.0, 4.0, 5.0], "baseline"),
        ("baseline", [1.0, "x"], "baseline"),
        ("baseline", {"a": 1}, "baseline"),
        ("settings", [], "settings"),
    ],
)
def test_from_state_names_the_bad_field(field: str, value: object, message: str) -> None:
    state = valid_state()
    state[field] = value
    with pytest.raises(ValueError, match=message):
        AdaptiveThreshold.from_state(state)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("k", "3"),
        ("k", -1.0),
        ("window", 4.5),
        ("warmup", 10),
        ("statistic", "max"),
        ("gate_baseline", 1),
        ("rebaseline_share", "0.9"),
        ("rebaseline_share", True),
    ],
)
def test_from_state_names_the_bad_setting(key: str, value: object) -> None:
    state = valid_state()
    assert isinstance(state["settings"], dict)
    state["settings"][key] = value
    with pytest.raises(ValueError, match=f"settings.{key}"):
        AdaptiveThreshold.from_state(state)


def test_from_state_refuses_missing_settings() -> None:
    state = valid_state()
    assert isinstance(state["settings"], dict)
    del state["settings"]["k"]
    with pytest.raises(ValueError, match="settings"):
        AdaptiveThreshold.from_state(state)


# --- re-baselining after a lasting change of level ---------------------------------------------


def rebaselining(after: int) -> AdaptiveThreshold:
    settings = AdaptiveSettings(
        window=200, warmup=20, k=6.5, statistic="mean_std", rebaseline_after=after
    )
    return AdaptiveThreshold(settings, reference=1.0, baseline=normal_errors(1, 200))


def test_without_rebaselining_a_lasting_new_level_stays_alarmed() -> None:
    decisions = run(normal_errors(2, 500, level=3.0), rebaselining(0))

    assert all(d.anomalous for d in decisions)


def test_a_level_held_for_rebaseline_after_windows_becomes_the_baseline() -> None:
    threshold = rebaselining(100)
    new_level = normal_errors(2, 300, level=3.0)

    decisions = run(new_level, threshold)

    # Alarmed at once; windows 0..99 are refused, then they are the baseline (mean 3 + 6.5 sd):
    # the alarm clears after 10 windows below 0.9 x that threshold, and later ones are admitted.
    assert decisions[0].anomalous
    assert all(d.anomalous for d in decisions[:100])
    assert decisions[99].threshold == pytest.approx(decisions[0].threshold)
    assert decisions[100].threshold == pytest.approx(
        np.mean(new_level[:100]) + 6.5 * np.std(new_level[:100])
    )
    assert not any(d.anomalous for d in decisions[110:])
    assert threshold.refused_run() == []


def test_a_window_admitted_in_between_restarts_the_count() -> None:
    threshold = rebaselining(100)
    errors = [*normal_errors(2, 99, level=3.0), 1.0, *normal_errors(3, 99, level=3.0)]

    for error in errors:
        threshold.observe(error, alarmed=error > 2.0)

    assert len(threshold.refused_run()) == 99
    assert threshold.current() == pytest.approx(rebaselining(0).current(), rel=0.01)


def test_the_refused_run_survives_a_restart() -> None:
    threshold = rebaselining(100)
    for error in normal_errors(2, 60, level=3.0):
        threshold.observe(error, alarmed=True)

    restored = AdaptiveThreshold.from_state(json.loads(json.dumps(threshold.to_state())))
    for error in normal_errors(3, 40, level=3.0):
        threshold.observe(error, alarmed=True)
        restored.observe(error, alarmed=True)

    rebaselined = threshold.current()
    assert restored.current() == rebaselined
    assert rebaselined is not None and rebaselined > 3.0


def test_a_state_saved_before_rebaselining_existed_still_loads() -> None:
    state = valid_state()
    assert isinstance(state["settings"], dict)
    for key in ("rebaseline_after", "rebaseline_share"):
        del state["settings"][key]
    del state["span"]

    assert AdaptiveThreshold.from_state(state).settings.rebaseline_after == 0


def test_a_state_saved_with_only_the_refused_run_continues_its_count() -> None:
    # As saved before the share existed: the run of refused errors, no span.
    state = rebaselining(100).to_state()
    assert isinstance(state["settings"], dict)
    for key in ("rebaseline_share", "rebaseline_reset", "rebaseline_after_return"):
        del state["settings"][key]
    del state["span"], state["run"]
    state["refused"] = normal_errors(2, 99, level=3.0)

    restored = AdaptiveThreshold.from_state(state)
    assert restored.refused_run() == pytest.approx(state["refused"])
    restored.observe(3.0, alarmed=True)

    assert restored.refused_run() == []
    assert (restored.current() or 0.0) > 3.0


def rebaselining_with(
    *, share: float = 1.0, reset: int = 1, after_return: int = 0
) -> AdaptiveThreshold:
    settings = AdaptiveSettings(
        window=200,
        warmup=20,
        k=6.5,
        statistic="mean_std",
        rebaseline_after=100,
        rebaseline_share=share,
        rebaseline_reset=reset,
        rebaseline_after_return=after_return,
    )
    return AdaptiveThreshold(settings, reference=1.0, baseline=normal_errors(1, 200))


def offer(threshold: AdaptiveThreshold, errors: Sequence[float]) -> None:
    """Offer errors as the alarm would have judged them: alarmed when above 2."""
    for error in errors:
        threshold.observe(error, alarmed=error > 2.0)


@pytest.mark.parametrize(("share", "rebaselined"), [(1.0, False), (0.95, True)])
def test_with_a_share_a_few_windows_admitted_during_a_lasting_change_do_not_restart_it(
    share: float, rebaselined: bool
) -> None:
    # A new level for 113 windows with 3 back at the old one after 60 (the alarm let go briefly):
    # 97 of the last 100 were refused.
    threshold = rebaselining_with(share=share)
    level = normal_errors(2, 110, level=3.0)

    offer(threshold, [*level[:60], 1.0, 1.0, 1.0, *level[60:]])

    assert ((threshold.current() or 0.0) > 3.0) is rebaselined


def test_the_refused_share_counts_only_the_trailing_span() -> None:
    # 94 refused, 6 admitted, then 100 more refused: the first 94 have left the span by the time
    # the share is reached again, so re-baselining waits for 95 refused in the last 100.
    threshold = rebaselining_with(share=0.95)
    offer(threshold, [*normal_errors(2, 94, level=3.0), *[1.0] * 6, *normal_errors(3, 94, 3.0)])
    assert (threshold.current() or 0.0) < 2.0

    offer(threshold, normal_errors(4, 1, level=3.0))
    assert (threshold.current() or 0.0) > 3.0


def test_the_span_survives_a_restart() -> None:
    threshold = rebaselining_with(share=0.95)
    offer(threshold, [*normal_errors(2, 40, level=3.0), 1.0, 1.0, *normal_errors(3, 20, 3.0)])

    restored = AdaptiveThreshold.from_state(json.loads(json.dumps(threshold.to_state())))
    later = normal_errors(4, 60, level=3.0)
    offer(threshold, later)
    offer(restored, later)

    assert restored.current() == threshold.current()
    assert (restored.current() or 0.0) > 3.0


def brief_clear_inside(refused_before: int, admitted: int, refused_after: int) -> list[float]:
    """A new level the alarm lets go of briefly (`admitted` windows back at the old level)."""
    return [
        *normal_errors(2, refused_before, level=3.0),
        *[1.0] * admitted,
        *normal_errors(3, refused_after, level=3.0),
    ]


@pytest.mark.parametrize(("reset", "rebaselined"), [(1, False), (10, True)])
def test_a_brief_clear_inside_a_long_refused_run_does_not_restart_the_count(
    reset: int, rebaselined: bool
) -> None:
    # 60 refused, 9 admitted, 40 refused: 100 refused in the run only if 9 admitted in a row
    # do not end it.
    threshold = rebaselining_with(reset=reset)
    offer(threshold, brief_clear_inside(60, 9, 40))

    assert ((threshold.current() or 0.0) > 3.0) is rebaselined
    assert threshold.run.refused == (0 if rebaselined else 40)


@pytest.mark.parametrize(("reset", "rebaselined"), [(1, False), (60, True)])
def test_with_the_measured_defaults_a_brief_clear_does_not_restart_the_count(
    reset: int, rebaselined: bool
) -> None:
    # As on SKAB valve1/0: the alarm lets go for 30 windows inside a long anomaly; 300 + 200
    # refused around it reach the 425 a run with a return needs, not 550.
    measured = replace(MEASURED_ADAPTIVE, rebaseline_reset=reset)
    threshold = AdaptiveThreshold(measured, reference=1.0, baseline=normal_errors(1, 1000))
    offer(threshold, brief_clear_inside(300, 30, 200))

    assert ((threshold.current() or 0.0) > 3.0) is rebaselined


def test_as_many_admitted_in_a_row_as_the_reset_end_the_run() -> None:
    threshold = rebaselining_with(reset=10)
    offer(threshold, brief_clear_inside(60, 10, 40))

    assert (threshold.current() or 0.0) < 2.0
    assert threshold.run.refused == 40 and not threshold.run.returned


def test_a_run_with_a_return_re_baselines_after_the_shorter_count() -> None:
    threshold = rebaselining_with(reset=10, after_return=80)
    offer(threshold, brief_clear_inside(50, 5, 29))
    assert (threshold.current() or 0.0) < 2.0
    assert threshold.run.returned

    offer(threshold, normal_errors(4, 1, level=3.0))

    assert (threshold.current() or 0.0) > 3.0  # 80 refused, the 5 admitted among them too
    assert threshold.baseline()[-85:].min() == 1.0


def test_without_a_return_the_shorter_count_does_not_apply() -> None:
    threshold = rebaselining_with(reset=10, after_return=80)
    offer(threshold, normal_errors(2, 99, level=3.0))

    assert (threshold.current() or 0.0) < 2.0
    offer(threshold, normal_errors(3, 1, level=3.0))
    assert (threshold.current() or 0.0) > 3.0


def test_a_run_with_a_return_survives_a_restart() -> None:
    threshold = rebaselining_with(reset=10, after_return=80)
    offer(threshold, brief_clear_inside(50, 5, 10))

    restored = AdaptiveThreshold.from_state(json.loads(json.dumps(threshold.to_state())))
    assert restored.run == threshold.run
    later = normal_errors(4, 20, level=3.0)
    offer(threshold, later)
    offer(restored, later)

    assert restored.current() == threshold.current()
    assert (restored.current() or 0.0) > 3.0


@pytest.mark.parametrize(
    "run",
    [[], {"refused": 1}, {"refused": -1, "length": 0, "admitted_in_a_row": 0, "returned": False},
     {"refused": 1, "length": 1, "admitted_in_a_row": 0, "returned": 1}],
)  # fmt: skip
def test_from_state_refuses_a_bad_run(run: object) -> None:
    state = rebaselining_with(reset=10).to_state()
    state["run"] = run
    with pytest.raises(ValueError, match="run"):
        AdaptiveThreshold.from_state(state)


@pytest.mark.parametrize(
    ("span", "message"),
    [
        ([[1.0]], "span"),
        ([[1.0, "yes"]], "span"),
        ([[float("nan"), True]], "span"),
        ({"errors": []}, "span"),
        ([[1.0, True]] * 101, "span"),
    ],
)
def test_from_state_refuses_a_bad_span(span: object, message: str) -> None:
    state = rebaselining_with(share=0.9).to_state()
    state["span"] = span
    with pytest.raises(ValueError, match=message):
        AdaptiveThreshold.from_state(state)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rebaseline_share", 0.0),
        ("rebaseline_share", 1.5),
        ("rebaseline_share", float("nan")),
        ("rebaseline_reset", 0),
        ("rebaseline_after_return", 19),
        ("rebaseline_after_return", 101),
    ],
)
def test_rebaseline_share_is_checked(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        AdaptiveSettings(window=200, warmup=20, rebaseline_after=100, **{field: value})


@pytest.mark.parametrize("after", [1, 19, 201])
def test_rebaseline_after_must_be_between_warmup_and_window(after: int) -> None:
    with pytest.raises(ValueError, match="rebaseline_after"):
        AdaptiveSettings(window=200, warmup=20, rebaseline_after=after)
