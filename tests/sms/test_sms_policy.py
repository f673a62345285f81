"""The alert policy (pure): which alerts become SMS, to whom, how often, and what they say."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from appliance.records import Alert, Severity
from appliance.sms.pdu import Encoding, count_parts, text_parts
from appliance.sms.policy import HOUR_S, PolicySettings, SmsPolicy, compose_text, gsm_friendly

ALICE, BOB = "+491701111111", "+491702222222"
T0 = datetime(2026, 11, 27, 13, 0, tzinfo=UTC).timestamp()
SETTINGS = PolicySettings(gateway_id="plant3-gw1", recipients=(ALICE,), timezone="Europe/Berlin")
RAISE_MESSAGE = "pump-1: anomaly: error 0.0123 is 3.2x the threshold 0.00385"


def alert(
    kind: str = "anomaly_raised",
    severity: Severity = "critical",
    t: float = T0,
    asset: str = "pump-1",
    message: str = RAISE_MESSAGE,
    channel: str | None = None,
) -> Alert:
    return Alert(asset, t, severity, kind, message, channel)


def texts(policy: SmsPolicy, *alerts: Alert, now: float = T0) -> list[str]:
    return [m.text for a in alerts for m in policy.decide(a, now)]


def test_one_sms_per_state_change_critical_raised_escalated_and_their_clear() -> None:
    policy = SmsPolicy(SETTINGS)
    sent = [
        texts(policy, alert("anomaly_raised", "warning")),  # warning: not by default
        texts(policy, alert("anomaly_escalated", "critical")),
        texts(policy, alert("anomaly_escalated", "critical")),  # a repeat: dropped
        texts(policy, alert("anomaly_cleared", "critical", message="pump-1: anomaly cleared")),
    ]
    assert [len(batch) for batch in sent] == [0, 1, 0, 1]
    assert sent[1][0].startswith("CRITICAL pump-1: anomaly: error 0.0123 is 3.2x")
    assert sent[3][0].startswith("CLEARED pump-1: anomaly cleared")
    assert (policy.counts.queued, policy.counts.not_eligible, policy.counts.repeated) == (2, 1, 1)


def test_a_warning_alarm_that_never_went_by_sms_clears_silently() -> None:
    policy = SmsPolicy(SETTINGS)
    assert texts(policy, alert("flatline_raised", "warning", channel="accel_x")) == []
    assert texts(policy, alert("flatline_cleared", "warning", channel="accel_x")) == []


def test_after_a_restart_a_clear_goes_if_the_alarm_reached_a_configured_severity() -> None:
    fresh = SmsPolicy(SETTINGS)  # did not see the raise (it went before the restart)
    assert len(texts(fresh, alert("anomaly_cleared", "critical"))) == 1
    assert texts(fresh, alert("spike_cleared", "warning", channel="accel_y")) == []


def test_a_raised_alarm_raised_again_without_a_clear_is_not_sent_twice() -> None:
    policy = SmsPolicy(SETTINGS)
    assert len(texts(policy, alert())) == 1
    assert texts(policy, alert(t=T0 + 1)) == []
    assert len(texts(policy, alert("anomaly_cleared"), alert(t=T0 + 2))) == 2


def test_severities_events_and_families_are_configurable() -> None:
    settings = dataclasses.replace(
        SETTINGS,
        severities=frozenset({"warning", "critical"}),
        events=frozenset({"raised"}),
        families=frozenset({"anomaly", "dropout"}),
    )
    policy = SmsPolicy(settings)
    assert len(texts(policy, alert("anomaly_raised", "warning"))) == 1
    assert texts(policy, alert("anomaly_escalated", "critical")) == []  # event not configured
    assert texts(policy, alert("anomaly_cleared", "critical")) == []
    assert texts(policy, alert("flatline_raised", "critical", channel="x")) == []  # family
    assert len(texts(policy, alert("dropout_raised", "critical", channel="x"))) == 1
    assert texts(policy, alert("sms_given_up", "critical")) == []  # never about SMS itself


def test_every_recipient_gets_its_own_message() -> None:
    policy = SmsPolicy(dataclasses.replace(SETTINGS, recipients=(ALICE, BOB)))
    messages = policy.decide(alert(), T0)
    assert [m.recipient for m in messages] == [ALICE, BOB]
    assert messages[0].text == messages[1].text


def test_hourly_limit_holds_back_and_the_next_sms_says_how_many() -> None:
    policy = SmsPolicy(dataclasses.replace(SETTINGS, max_per_hour=2, max_per_day=10))
    assets = [f"m{i}" for i in range(5)]
    sent = [
        texts(policy, alert(asset=a, message=f"{a}: x"), now=T0 + i) for i, a in enumerate(assets)
    ]
    assert [len(batch) for batch in sent] == [1, 1, 0, 0, 0]
    assert policy.counts.suppressed_hourly == 3
    assert policy.suppressed[ALICE].count == 3
    # an hour after the first, one slot is free again: the summary rides along
    later = texts(policy, alert(asset="m9", message="m9: x"), now=T0 + HOUR_S + 0.5)
    assert len(later) == 1
    assert later[0].endswith("+3 more alerts not sent since 14:00 (SMS limit)")
    assert count_parts(later[0]) == 1
    assert ALICE not in policy.suppressed  # summarised once


def test_daily_cap_over_a_rolling_24_hours() -> None:
    policy = SmsPolicy(dataclasses.replace(SETTINGS, max_per_hour=1, max_per_day=3))
    hours = [0, 1.1, 2.2, 3.3, 24.05]
    counts = [
        len(texts(policy, alert(asset=f"m{i}", message="x"), now=T0 + h * HOUR_S))
        for i, h in enumerate(hours)
    ]
    assert counts == [1, 1, 1, 0, 1]
    assert (policy.counts.suppressed_daily, policy.counts.suppressed_hourly) == (1, 0)


def test_rate_limits_continue_after_a_restart_from_the_queue_history() -> None:
    settings = dataclasses.replace(SETTINGS, max_per_hour=2)
    history = [(ALICE, T0 - 600), (ALICE, T0 - 300), (BOB, T0 - 100)]
    policy = SmsPolicy(settings, history)
    assert texts(policy, alert()) == []
    assert policy.counts.suppressed_hourly == 1


def test_text_is_short_actionable_and_in_local_time() -> None:
    text = compose_text(alert(), SETTINGS)
    assert text == (
        "CRITICAL pump-1: anomaly: error 0.0123 is 3.2x the threshold 0.00385 "
        "(14:00 CET, gw plant3-gw1)"
    )
    summer = datetime(2026, 7, 1, 6, 30, tzinfo=UTC).timestamp()
    assert "(08:30 CEST, gw plant3-gw1)" in compose_text(alert(t=summer), SETTINGS)


def test_a_long_alert_is_cut_to_one_gsm7_part_keeping_the_value_and_threshold() -> None:
    message = (
        "compressor-2: anomaly now critical: error 0.0123 is 3.2x the threshold 0.00385, "
        "alarmed for 12 min 5 s; top features: accel_x.rms 62 %, accel_y.band_100_200hz 21 %, "
        "accel_z.excess_kurtosis 9 % - while accel_y flatline: check those sensors before the "
        "machine"
    )
    long_gateway = dataclasses.replace(SETTINGS, gateway_id="plant3-north-hall-compressor-gw01")
    text = compose_text(
        alert("anomaly_escalated", asset="compressor-2", message=message), long_gateway
    )
    assert count_parts(text) == 1
    encoding, _ = text_parts(text)
    assert encoding is Encoding.GSM7
    assert text.startswith("CRITICAL compressor-2: anomaly now critical: error 0.0123 is 3.2x")
    assert text.endswith("(14:00 CET, gw plant3-north-hall-compressor-gw01)")
    assert "accel_z" not in text  # the top features went first


def test_an_alert_that_cannot_fit_is_truncated_with_dots() -> None:
    message = "pump-1: " + "bearing temperature rising " * 12
    text = compose_text(alert(message=message), SETTINGS)
    assert count_parts(text) == 1 and "... (14:00 CET" in text


def test_characters_outside_gsm7_are_replaced_so_the_text_stays_gsm7() -> None:
    message = "pump-1: bearing_temp 81.5 °C – above 75 °C… µ±×"
    text = compose_text(alert(message=message), SETTINGS)
    assert "81.5 degC - above 75 degC... u+/-x" in text
    assert text_parts(text)[0] is Encoding.GSM7
    assert gsm_friendly("plain") == "plain"


@pytest.mark.parametrize(
    "changes",
    [
        {"recipients": ()},
        {"max_per_hour": 0},
        {"max_per_hour": 5, "max_per_day": 4},
        {"events": frozenset({"opened"})},
    ],
)
def test_settings_refuse_nonsense(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(SETTINGS, **changes)  # type: ignore[arg-type]


def test_a_test_sms_goes_to_every_recipient_within_the_same_limits() -> None:
    policy = SmsPolicy(dataclasses.replace(SETTINGS, recipients=(ALICE, BOB), max_per_hour=2))
    first = policy.test_messages("anna", T0)
    assert [m.recipient for m in first] == [ALICE, BOB]
    assert first[0].text == (
        "TEST plant3-gw1: test message requested by anna; no action needed "
        "(14:00 CET, gw plant3-gw1)"
    )
    assert len(policy.test_messages("anna", T0 + 1)) == 2
    assert policy.test_messages("anna", T0 + 2) == []  # the hourly limit holds
    assert policy.test_messages("anna", T0 + HOUR_S + 3) != []
