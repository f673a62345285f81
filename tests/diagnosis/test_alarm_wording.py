"""An anomaly alarm names the diagnosis and zone, in the alert's text and within one SMS."""

from __future__ import annotations

import numpy as np

from appliance.detect.routing import AlertRouter
from appliance.diagnosis import CWRU_DRIVE_END
from appliance.diagnosis.asset import ChannelWindow, describe, diagnose_asset
from appliance.records import Alert
from appliance.rig.mcu import MachineSignal
from appliance.sms.pdu import count_parts
from appliance.sms.policy import PolicySettings, compose_text
from appliance.uplink.schema import decode_part, encode_part, split_range

RATE = 1000.0
ANOMALY = "pump-1: anomaly: error 0.0123 is 3.2x the threshold 0.00385; top features: "
SETTINGS = PolicySettings(gateway_id="plant3-gw1", recipients=("+15555550100",))


def emulated_words(**faults: float) -> str:
    """describe() of 5 s of the emulated machine with `faults`, 20 s into its run."""
    t = 20.0 + np.arange(5 * int(RATE)) / RATE
    samples = MachineSignal(**faults).render(t, 3, np.random.default_rng(1))  # type: ignore[arg-type]
    windows = {
        "accel_x": ChannelWindow(samples[:, 0], RATE),
        "accel_y": ChannelWindow(samples[:, 1], RATE),
        "accel_z": ChannelWindow(samples[:, 2], RATE, axial=True),
    }
    diagnosis = diagnose_asset(windows, {"drive-end": CWRU_DRIVE_END}, speed_rpm=1776.0)
    return describe(diagnosis)


def raised(message: str) -> Alert:
    return Alert("pump-1", 1_700_000_000.0, "critical", "anomaly_raised", message)


def test_an_anomaly_alarm_leads_with_the_diagnosis_and_the_sensor_note_stays() -> None:
    words = emulated_words(outer_race_g=0.1, imbalance_growth_per_s=0.5)
    router = AlertRouter("gw", ["pump-1/accel_z"], ["pump-1"])
    router.diagnosis = lambda asset: (words, True) if asset == "pump-1" else None
    flat = Alert("pump-1", 1.0, "critical", "flatline_raised", "pump-1: flat", "accel_z")
    router.route(1.0, [flat])
    (alert,) = router.route(2.0, [raised(ANOMALY + "accel_y.kurtosis 41 %")])
    assert alert.message.startswith("pump-1: outer-race defect likely (BPFO 106 Hz"), alert
    assert "zone D; anomaly: error 0.0123 is 3.2x" in alert.message
    assert alert.message.endswith("while accel_z flatline: check those sensors before the machine")


def test_a_cleared_alarm_and_an_asset_without_a_diagnosis_keep_their_text() -> None:
    router = AlertRouter("gw", [], ["pump-1", "fan-2"])
    router.diagnosis = lambda asset: ("imbalance likely, velocity 7.1 mm/s zone C", True)
    cleared = Alert("pump-1", 3.0, "critical", "anomaly_cleared", "pump-1: anomaly cleared")
    assert router.route(3.0, [cleared])[0].message == "pump-1: anomaly cleared"
    router.diagnosis = lambda asset: None
    other = Alert("fan-2", 4.0, "warning", "anomaly_raised", "fan-2: anomaly: error 1")
    assert router.route(4.0, [other])[0].message == "fan-2: anomaly: error 1"


def test_no_known_pattern_follows_the_anomaly_and_the_sms_keeps_the_anomaly_first() -> None:
    router = AlertRouter("gw", [], ["pump-1"])
    router.diagnosis = lambda asset: ("no known pattern, velocity 1.9 mm/s zone B", False)
    (alert,) = router.route(2.0, [raised(ANOMALY + "accel_y.kurtosis 41 %")])
    assert alert.message == (
        ANOMALY + "accel_y.kurtosis 41 %; no known pattern, velocity 1.9 mm/s zone B"
    )
    text = compose_text(alert, SETTINGS)
    assert text.startswith("CRITICAL pump-1: anomaly: error 0.0123 is 3.2x"), text
    assert count_parts(text) == 1


def test_the_sms_keeps_the_verdict_its_first_line_velocity_and_zone_in_one_part() -> None:
    for faults in (
        {"outer_race_g": 0.1, "imbalance_growth_per_s": 0.5},
        {"inner_race_g": 0.1},
        {"misalignment_g": 0.2},
        {"imbalance_growth_per_s": 0.5},
    ):
        words = emulated_words(**faults)
        features = ", ".join(f"accel_{axis}.kurtosis 20 %" for axis in "xyz")
        text = compose_text(raised(f"pump-1: {words}; {ANOMALY[8:]}{features}"), SETTINGS)
        verdict, _, rest = words.partition(" (")
        first_line = rest.split(" + ")[0].split(",")[0].rstrip(")")
        zone = words.rsplit(", ", 1)[1]
        assert count_parts(text) == 1, text
        assert text.startswith(f"CRITICAL pump-1: {verdict} ({first_line}"), text
        assert f"{zone} (" in text and "..." not in text, text


def test_a_message_without_a_diagnosis_is_shortened_as_before() -> None:
    features = ", ".join(f"accel_{axis}.kurtosis 20 %" for axis in "xyz" * 4)
    text = compose_text(raised(ANOMALY + features), SETTINGS)
    assert text.startswith("CRITICAL pump-1: anomaly: error 0.0123 is 3.2x threshold 0.00385")


def test_the_uplink_carries_the_diagnosis_in_the_alerts_message_in_both_wire_formats() -> None:
    words = emulated_words(inner_race_g=0.1)
    alert = raised(f"pump-1: {words}; {ANOMALY[8:]}accel_y.kurtosis 41 %")
    (part,) = split_range("gw-1", 0, 1, [(1, alert)])
    for wire_format in ("json", "binary"):
        decoded = decode_part(encode_part(part, wire_format), part.topic("appliance"))
        ((_, got),) = decoded.records
        assert isinstance(got, Alert) and got.message == alert.message, wire_format
        assert got.message.startswith("pump-1: inner-race defect likely (BPFI 160 Hz")
