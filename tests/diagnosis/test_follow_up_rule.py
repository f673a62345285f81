"""The follow-up rule (pure): news held for HOLD windows becomes one alert, at most the cap per
episode however the diagnosis flickers; the router and the SMS policy pass it on as a follow-up."""

from __future__ import annotations

from datetime import UTC

import pytest

from appliance.detect.routing import AlertRouter
from appliance.diagnosis.followup import FOLLOW_UP_KIND, FollowUps, Told, told_by
from appliance.records import Alert, Severity
from appliance.sms.pdu import count_parts
from appliance.sms.policy import PolicySettings, SmsPolicy
from appliance.uplink.schema import decode_part, encode_part, split_range

T0 = 1_796_619_000.0  # 2026-12-07 04:50 UTC
NO_FAULT = "no fault pattern, velocity 2.1 mm/s zone B"
IMBALANCE_C = (
    "imbalance likely (1x 30 Hz in the velocity spectrum, 59 dB above the floor, accel_y), "
    "velocity 4.0 mm/s zone C"
)
MISALIGNMENT_C = (
    "misalignment likely (1x 30 Hz + 1 line in the velocity spectrum, 53 dB above the floor, "
    "accel_x), velocity 4.5 mm/s zone C"
)
ANOMALY = "compressor-2: anomaly: error 0.02 is 2.1x the threshold 0.0095; top features: x 40 %"


def routed_alarm(words: str, names_fault: bool, t: float = T0) -> Alert:
    """The alarm as the router words it with the diagnosis `words` of its window."""
    router = AlertRouter("gw", [], ["compressor-2"])
    router.diagnosis = lambda asset: (words, names_fault)
    (alarm,) = router.route(t, [Alert("compressor-2", t, "critical", "anomaly_raised", ANOMALY)])
    return alarm


def run(rule: FollowUps, alarm: Alert | None, verdicts: list[tuple[str, str]]) -> list[Alert]:
    """The follow-ups of one diagnosis a second, (verdict, zone) each."""
    out = []
    for i, (verdict, zone) in enumerate(verdicts):
        text = IMBALANCE_C if verdict == "imbalance" else MISALIGNMENT_C
        alert = rule.observe(
            alarm, T0 + 1 + i, verdict, zone, text.replace("zone C", f"zone {zone}")
        )
        out += [alert] if alert is not None else []
    return out


def test_the_alarm_text_tells_its_fault_and_zone() -> None:
    assert told_by(routed_alarm(NO_FAULT, False).message, "compressor-2") == Told(None, "B")
    assert told_by(routed_alarm(IMBALANCE_C, True).message, "compressor-2") == Told(
        "imbalance", "C"
    )
    assert told_by(ANOMALY, "compressor-2") == Told(None, None)


def test_a_fault_named_after_the_alarm_is_told_once_after_it_held() -> None:
    alarm = routed_alarm(NO_FAULT, False)
    rule = FollowUps("compressor-2", UTC, hold=3)
    assert run(rule, None, [("imbalance", "C")] * 5) == []  # no alarm: no episode
    out = run(rule, alarm, [("none", "B"), ("imbalance", "C"), ("imbalance", "C")])
    assert out == []
    (follow_up,) = run(rule, alarm, [("imbalance", "C")] * 10)
    assert follow_up.kind == FOLLOW_UP_KIND and follow_up.severity == "critical"
    assert follow_up.message == f"compressor-2: {IMBALANCE_C} (alarm raised 04:50 UTC)"


def test_a_worse_zone_or_another_fault_is_news_the_same_fault_is_not() -> None:
    alarm = routed_alarm(IMBALANCE_C, True)
    rule = FollowUps("compressor-2", UTC, hold=2)
    assert run(rule, alarm, [("imbalance", "C"), ("imbalance", "B")] * 3) == []
    (worse,) = run(rule, alarm, [("imbalance", "D")] * 4)
    assert "zone D" in worse.message
    (other,) = run(rule, alarm, [("misalignment", "C")] * 4)
    assert other.message.startswith("compressor-2: misalignment likely")


def test_a_flickering_diagnosis_makes_no_more_than_the_cap() -> None:
    alarm = routed_alarm(NO_FAULT, False)
    every_other = FollowUps("compressor-2", UTC, hold=3, cap=3)
    assert run(every_other, alarm, [("imbalance", "C"), ("misalignment", "C")] * 50) == []
    in_threes = FollowUps("compressor-2", UTC, hold=3, cap=3)
    pattern = [("imbalance", "C")] * 3 + [("misalignment", "C")] * 3
    out = run(in_threes, alarm, pattern * 20)
    assert [a.message.split()[1] for a in out] == ["imbalance", "misalignment", "imbalance"]
    assert in_threes.held_back == 19  # the other misalignment runs (imbalance was told last)


def test_a_new_episode_starts_over_and_an_escalation_is_what_was_told() -> None:
    rule = FollowUps("compressor-2", UTC, hold=1, cap=1)
    first = routed_alarm(NO_FAULT, False)
    assert len(run(rule, first, [("imbalance", "C")] * 3)) == 1
    assert run(rule, None, [("imbalance", "C")]) == []  # cleared
    second = routed_alarm(NO_FAULT, False, T0 + 600)
    (again,) = run(rule, second, [("imbalance", "C")] * 3)
    assert again.message.endswith("(alarm raised 05:00 UTC)")
    worded = routed_alarm(MISALIGNMENT_C, True, T0 + 700).message
    escalated = Alert(second.asset, T0 + 700, "critical", "anomaly_escalated", worded)
    rule = FollowUps("compressor-2", UTC, hold=1, cap=2)
    assert len(run(rule, second, [("imbalance", "C")])) == 1
    assert run(rule, escalated, [("misalignment", "C")] * 3) == []


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="hold"):
        FollowUps("compressor-2", UTC, hold=0)


def test_the_router_keeps_the_alarm_open_and_the_follow_up_in_the_history() -> None:
    router = AlertRouter("gw", [], ["compressor-2"])
    router.diagnosis = lambda asset: (NO_FAULT, False)
    raised = Alert("compressor-2", T0, "critical", "anomaly_raised", ANOMALY)
    (alarm,) = router.route(T0, [raised])
    assert router.open_anomaly("compressor-2") == alarm
    follow_up = Alert("compressor-2", T0 + 9, "critical", FOLLOW_UP_KIND, "compressor-2: x")
    assert router.route(T0 + 9, [follow_up]) == [follow_up]
    assert router.open_anomaly("compressor-2") == alarm
    assert list(router.recent) == [alarm, follow_up]


@pytest.mark.parametrize("alarm_sent", [True, False])
def test_the_follow_up_goes_by_sms_as_the_alarm_did_in_one_part(alarm_sent: bool) -> None:
    settings = PolicySettings("demo-gw", ("+15555550100",))
    policy = SmsPolicy(settings)
    severity: Severity = "critical" if alarm_sent else "warning"
    alarm = Alert("compressor-2", T0, severity, "anomaly_raised", ANOMALY)
    assert len(policy.decide(alarm, T0)) == int(alarm_sent)
    rule = FollowUps("compressor-2", UTC, hold=1, cap=2)
    follow_ups = run(rule, alarm, [("imbalance", "C"), ("misalignment", "C")])
    sent = [m for alert in follow_ups for m in policy.decide(alert, alert.t)]
    assert len(sent) == (2 if alarm_sent else 0)  # a second follow-up is not a "repeat"
    for message in sent:
        assert count_parts(message.text) == 1, message.text
        assert "zone C" in message.text and "(alarm raised 04:50 UTC)" in message.text


def test_after_a_restart_the_severity_decides() -> None:
    policy = SmsPolicy(PolicySettings("demo-gw", ("+15555550100",)))
    cases: tuple[tuple[Severity, int], ...] = (("warning", 0), ("critical", 1))
    for severity, count in cases:
        alert = Alert("compressor-2", T0, severity, FOLLOW_UP_KIND, f"compressor-2: {IMBALANCE_C}")
        assert len(policy.decide(alert, T0)) == count


def test_the_uplink_carries_the_follow_up_in_both_wire_formats() -> None:
    (follow_up,) = run(
        FollowUps("compressor-2", UTC, hold=1), routed_alarm(NO_FAULT, False), [("imbalance", "C")]
    )
    (part,) = split_range("gw-1", 0, 1, [(1, follow_up)])
    for wire_format in ("json", "binary"):
        decoded = decode_part(encode_part(part, wire_format), part.topic("appliance"))
        ((_, got),) = decoded.records
        assert got == follow_up, wire_format
