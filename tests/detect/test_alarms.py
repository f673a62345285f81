"""Alarm hysteresis and severity, contributors, alert text and the systemic check."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from appliance.detect.alarms import (
    AlarmDecision,
    AlarmEvent,
    AlarmSettings,
    AlarmState,
    Contributor,
    SystemicCheck,
    SystemicSettings,
    alert_from_event,
    describe_contributors,
    format_duration,
    is_systemic,
    top_contributors,
)
from appliance.records import Alert

THRESHOLD = 1.0


def feed(
    alarm: AlarmState, errors: list[float], threshold: float | None = THRESHOLD
) -> list[AlarmDecision]:
    return [alarm.update(float(t), e, threshold) for t, e in enumerate(errors)]


def event_kinds(decisions: list[AlarmDecision]) -> list[str]:
    return [d.event.kind for d in decisions if d.event is not None]


def hovering_errors() -> list[float]:
    """Quiet, then 300 windows hovering around the threshold, then quiet again."""
    rng = np.random.default_rng(42)
    return [0.3] * 20 + list(THRESHOLD + rng.normal(0.0, 0.08, 300)) + [0.3] * 20


# --- hysteresis --------------------------------------------------------------------------------


def test_an_error_hovering_around_the_threshold_gives_one_alarm() -> None:
    decisions = feed(
        AlarmState(AlarmSettings(on_count=1, off_count=3, clear_ratio=0.8)), hovering_errors()
    )
    assert event_kinds(decisions) == ["raised", "cleared"]
    assert all(d.anomalous for d in decisions[20:320])


def test_without_hysteresis_the_same_errors_give_many_alarms() -> None:
    no_hysteresis = AlarmSettings(on_count=1, off_count=1, clear_ratio=1.0)
    decisions = feed(AlarmState(no_hysteresis), hovering_errors())
    assert event_kinds(decisions).count("raised") > 50


def test_raising_needs_on_count_consecutive_windows_above() -> None:
    alarm = AlarmState(AlarmSettings(on_count=3))
    decisions = feed(alarm, [1.5, 1.5, 0.9, 1.5, 1.5, 0.9, 1.5, 1.5, 1.5])
    assert [d.anomalous for d in decisions] == [False] * 8 + [True]
    assert decisions[-1].event == AlarmEvent("raised", 8.0, "warning", 1.5, THRESHOLD, 8.0)


def test_the_clearing_band_keeps_the_alarm_and_resets_the_clear_count() -> None:
    alarm = AlarmState(AlarmSettings(off_count=2, clear_ratio=0.8))
    # 0.9 is below the threshold but above the clear level (0.8): no progress toward clearing.
    decisions = feed(alarm, [1.5, 0.5, 0.9, 0.5, 0.9, 0.5, 0.5])
    assert [d.anomalous for d in decisions] == [True] * 6 + [False]
    assert event_kinds(decisions) == ["raised", "cleared"]


def test_no_threshold_or_a_nan_error_is_no_evidence() -> None:
    alarm = AlarmState(AlarmSettings(on_count=2, off_count=2))
    assert not alarm.update(0.0, 1.5, THRESHOLD).anomalous
    assert alarm.update(1.0, 1.5, None) == AlarmDecision(False, None, None)
    assert not alarm.update(2.0, math.nan, THRESHOLD).anomalous
    assert alarm.update(3.0, 1.5, THRESHOLD).anomalous  # the run of two continued across the gaps
    assert alarm.update(4.0, 0.1, THRESHOLD).anomalous
    assert alarm.update(5.0, math.nan, THRESHOLD).anomalous
    assert not alarm.update(6.0, 0.1, THRESHOLD).anomalous


# --- severity ----------------------------------------------------------------------------------


def test_escalation_is_one_event_and_de_escalation_is_none() -> None:
    alarm = AlarmState(AlarmSettings(critical_factor=2.0, off_count=2))
    decisions = feed(alarm, [1.2, 2.5, 1.2, 2.5, 1.2, 0.1, 0.1])
    assert event_kinds(decisions) == ["raised", "escalated", "cleared"]
    assert [d.severity for d in decisions] == [
        "warning",
        "critical",
        "critical",
        "critical",
        "critical",
        "critical",
        None,
    ]
    cleared = decisions[-1].event
    assert cleared is not None and cleared.severity == "critical" and cleared.since == 0.0


def test_a_first_window_far_above_raises_critical_directly() -> None:
    decisions = feed(AlarmState(AlarmSettings(critical_factor=2.0)), [0.5, 3.0])
    assert event_kinds(decisions) == ["raised"]
    assert decisions[-1].severity == "critical"


def test_a_sustained_alarm_becomes_critical() -> None:
    alarm = AlarmState(AlarmSettings(critical_after=4, critical_factor=10.0))
    decisions = feed(alarm, [1.2] * 5)
    assert [d.severity for d in decisions] == ["warning"] * 3 + ["critical"] * 2
    assert event_kinds(decisions) == ["raised", "escalated"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("on_count", 0),
        ("off_count", 0),
        ("clear_ratio", 1.5),
        ("critical_factor", 0.5),
        ("critical_after", 0),
    ],
)
def test_settings_refuse_nonsense(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        AlarmSettings(**{field: value})  # type: ignore[arg-type]


# --- persistence -------------------------------------------------------------------------------


def test_alarm_state_round_trip_continues_the_episode() -> None:
    errors = [1.5, 1.5, 0.1, 2.5, 0.5, 0.1, 0.1, 0.1]
    settings = AlarmSettings(off_count=3)
    uninterrupted = feed(AlarmState(settings), errors)
    first = AlarmState(settings)
    head = [first.update(float(t), e, THRESHOLD) for t, e in enumerate(errors[:3])]
    restored = AlarmState.from_state(json.loads(json.dumps(first.to_state())), settings)
    tail = [restored.update(float(t), errors[t], THRESHOLD) for t in range(3, len(errors))]
    assert head + tail == uninterrupted
    assert event_kinds(uninterrupted) == ["raised", "escalated", "cleared"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", 0),
        ("kind", "cusum"),
        ("severity", "bad"),
        ("since", None),
        ("above_run", -1),
        ("clear_run", 1.5),
    ],
)
def test_alarm_from_state_names_the_bad_field(field: str, value: object) -> None:
    alarm = AlarmState()
    alarm.update(0.0, 1.5, THRESHOLD)
    state = alarm.to_state()
    state[field] = value
    with pytest.raises(ValueError, match=field):
        AlarmState.from_state(state)


# --- contributors and alert text ---------------------------------------------------------------


def test_top_contributors_are_ranked_by_share() -> None:
    names = ("rms", "peak", "band_0_100hz", "kurtosis")
    contributors = top_contributors(np.array([1.0, 6.0, 0.0, 3.0]), names, k=2)
    assert contributors == (Contributor("peak", 0.6), Contributor("kurtosis", 0.3))
    assert describe_contributors(contributors) == "peak 60 %, kurtosis 30 %"


def test_top_contributors_skip_nothing_and_nan() -> None:
    names = ("a", "b", "c")
    assert top_contributors(np.array([0.0, 0.0, 0.0]), names) == ()
    assert top_contributors(np.array([np.nan, 2.0, 0.0]), names) == (Contributor("b", 1.0),)
    with pytest.raises(ValueError, match="names"):
        top_contributors(np.array([1.0, 2.0]), names)


def test_alerts_from_events_say_what_happened() -> None:
    raised = AlarmEvent("raised", 100.0, "warning", 2.4, 1.2, 100.0)
    alert = alert_from_event("pump-1", raised, (Contributor("rms_x", 0.62),))
    assert alert == Alert(
        "pump-1",
        100.0,
        "warning",
        "anomaly_raised",
        "pump-1: anomaly: error 2.4 is 2.0x the threshold 1.2; top features: rms_x 62 %",
    )
    escalated = AlarmEvent("escalated", 160.0, "critical", 3.6, 1.2, 100.0)
    assert "now critical" in alert_from_event("pump-1", escalated).message
    assert "for 1 min 0 s" in alert_from_event("pump-1", escalated).message
    cleared = AlarmEvent("cleared", 4000.0, "critical", 0.1, 1.2, 100.0)
    cleared_alert = alert_from_event("pump-1", cleared)
    assert cleared_alert.kind == "anomaly_cleared"
    assert cleared_alert.message == "pump-1: anomaly cleared after 1 h 5 min (it reached critical)"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0 s"), (59, "59 s"), (61, "1 min 1 s"), (7260, "2 h 1 min")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# --- systemic ----------------------------------------------------------------------------------

MEMBERS = ("pump-1", "pump-2", "pump-3", "fan-1", "fan-2")


def raised(asset: str, t: float = 0.0) -> Alert:
    return Alert(asset, t, "warning", "anomaly_raised", f"{asset}: anomaly")


def cleared(asset: str, t: float = 0.0) -> Alert:
    return Alert(asset, t, "warning", "anomaly_cleared", f"{asset}: anomaly cleared")


@pytest.mark.parametrize(
    ("alarming", "monitored", "expected"),
    [(3, 5, True), (2, 5, False), (2, 2, False), (3, 6, False), (4, 6, True), (3, 3, True)],
)
def test_is_systemic_needs_most_and_at_least_three(
    alarming: int, monitored: int, expected: bool
) -> None:
    assert is_systemic(alarming, monitored, SystemicSettings()) is expected


def test_most_members_alarming_at_once_give_one_systemic_alert() -> None:
    check = SystemicCheck("gw-7")
    alarming = ["pump-1", "pump-2", "pump-3", "fan-1"]
    out = check.filter(10.0, alarming, MEMBERS, [raised(a, 10.0) for a in alarming])
    assert len(out) == 1
    assert out[0].kind == "systemic_raised" and out[0].asset == "gw-7"
    assert "4 of 5 alarming at once (fan-1, pump-1, pump-2, pump-3)" in out[0].message
    assert check.filter(11.0, alarming, MEMBERS, []) == []


def test_a_few_members_alarming_pass_through() -> None:
    check = SystemicCheck("gw-7")
    alerts = [raised("pump-1"), raised("fan-2")]
    assert check.filter(0.0, ["pump-1", "fan-2"], MEMBERS, alerts) == alerts


def test_after_a_systemic_alarm_silenced_members_stay_silent_until_they_clear() -> None:
    check = SystemicCheck("gw-7")
    check.filter(0.0, ["pump-1"], MEMBERS, [raised("pump-1")])  # alerted on its own
    check.filter(1.0, ["pump-1", "pump-2", "pump-3"], MEMBERS, [raised("pump-2"), raised("pump-3")])
    out = check.filter(2.0, ["pump-1", "pump-3"], MEMBERS, [cleared("pump-2")])
    assert [a.kind for a in out] == ["systemic_cleared"]
    assert out[0].message == "gw-7: systemic alarm over; still alarming: pump-1, pump-3"
    later = check.filter(3.0, [], MEMBERS, [cleared("pump-1"), cleared("pump-3")])
    assert later == [cleared("pump-1")]  # pump-3's raise was never sent, so neither is its clear


def test_alerts_of_non_members_are_never_held_back() -> None:
    check = SystemicCheck("gw-7")
    other = raised("compressor-9")
    out = check.filter(0.0, MEMBERS, MEMBERS, [raised(a) for a in MEMBERS] + [other])
    assert [a.kind for a in out] == ["systemic_raised", "anomaly_raised"]
    assert out[1] == other
