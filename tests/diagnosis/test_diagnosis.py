"""The diagnosis names what was put into a synthetic signal, and nothing in a healthy one."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.diagnosis import (
    CWRU_DRIVE_END,
    DefectOrders,
    diagnose_channel,
    estimate_shaft_hz,
    iso_zone,
    orders_from_geometry,
    velocity_rms_mm_s,
)
from appliance.diagnosis.envelope import envelope_spectra
from appliance.records import FloatArray

from .synthetic import impacts, noise, shaft

CWRU_RATE = 12_000.0
CWRU_SHAFT = 1797 / 60
BEARINGS = {"drive-end": CWRU_DRIVE_END}
DEFECTS = CWRU_DRIVE_END.hz(CWRU_SHAFT)


def test_geometry_gives_the_catalogue_orders_of_the_cwru_bearing() -> None:
    orders = orders_from_geometry(9, 7.94, 39.04, 0.0)
    for got, want in zip(
        (orders.bpfi, orders.bpfo, orders.bsf, orders.ftf),
        (5.4152, 3.5848, 2.357, 0.39828),
        strict=True,
    ):
        assert got == pytest.approx(want, rel=1e-3)
    assert orders.hz(10.0).bpfo == pytest.approx(orders.bpfo * 10.0)


def test_geometry_refuses_a_ball_larger_than_its_pitch_circle() -> None:
    with pytest.raises(ValueError, match="ball"):
        orders_from_geometry(9, 40.0, 39.04)


def test_velocity_rms_of_a_known_tone_and_its_iso_zone() -> None:
    rate, peak_mm_s, tone_hz = 1000.0, 5.0, 50.0
    t = np.arange(5000) / rate
    acceleration_g = peak_mm_s / 1000 * 2 * np.pi * tone_hz * np.sin(2 * np.pi * tone_hz * t)
    velocity = velocity_rms_mm_s(acceleration_g / 9.80665, rate)
    assert velocity == pytest.approx(peak_mm_s / np.sqrt(2), rel=1e-3)
    assert iso_zone(velocity, 2, "rigid") == "C"
    assert iso_zone(velocity, 1, "flexible") == "B"
    assert [iso_zone(v, 2, "rigid") for v in (1.3, 1.4, 2.8, 4.5)] == ["A", "B", "C", "D"]


def test_a_tone_outside_10_to_1000_hz_has_no_velocity() -> None:
    t = np.arange(12000) / CWRU_RATE
    assert velocity_rms_mm_s(np.sin(2 * np.pi * 3000 * t), CWRU_RATE) < 1e-6


def healthy(rate: float, seconds: float, shaft_hz: float) -> FloatArray:
    return shaft(rate, seconds, shaft_hz, (0.02, 0.01)) + noise(rate, seconds, 0.05)


@pytest.mark.parametrize(
    ("defect_hz", "modulation_hz", "expected", "lines"),
    [
        (DEFECTS.bpfo, 0.0, "outer_race", ["BPFO", "2xBPFO"]),
        (DEFECTS.bpfi, CWRU_SHAFT, "inner_race", ["BPFI", "BPFI-1x", "BPFI+1x"]),
        (2 * DEFECTS.bsf, DEFECTS.ftf, "rolling_element", ["2xBSF", "2xBSF+FTF"]),
    ],
)
def test_impacts_at_a_defect_rate_are_named_with_their_lines(
    defect_hz: float, modulation_hz: float, expected: str, lines: list[str]
) -> None:
    signal = healthy(CWRU_RATE, 1.0, CWRU_SHAFT) + impacts(
        CWRU_RATE,
        1.0,
        defect_hz,
        resonance_hz=3000.0,
        amplitude_g=0.5,
        shaft_hz=modulation_hz,
        load_zone_depth=0.8 if modulation_hz else 0.0,
    )
    diagnosis = diagnose_channel(signal, CWRU_RATE, CWRU_SHAFT, BEARINGS)
    assert diagnosis.verdict == expected
    assert diagnosis.bearing == "drive-end"
    found = {line.name: line for line in diagnosis.evidence}
    for name in lines:
        assert found[name].db_above_floor >= 8.0
    assert diagnosis.band.low_hz <= 3000.0 < diagnosis.band.high_hz
    assert 0.0 < diagnosis.confidence <= 1.0


def test_the_band_is_chosen_where_the_impacts_ring_not_where_the_energy_is() -> None:
    from scipy.signal import butter, sosfilt

    loud = sosfilt(butter(6, 1000.0, fs=CWRU_RATE, output="sos"), noise(CWRU_RATE, 1.0, 2.0))
    ringing = impacts(CWRU_RATE, 1.0, DEFECTS.bpfo, resonance_hz=4000.0, amplitude_g=0.3)
    first, *others = envelope_spectra(loud + ringing, CWRU_RATE, min_width_hz=500.0)
    assert first.band.low_hz <= 4000.0 < first.band.high_hz
    assert first.band.high_hz - first.band.low_hz < CWRU_RATE / 2
    assert [look.band.low_hz for look in others] == [0.0]
    diagnosis = diagnose_channel(loud + ringing, CWRU_RATE, CWRU_SHAFT, BEARINGS)
    assert diagnosis.verdict == "outer_race"
    assert diagnosis.band == first.band


def test_healthy_noise_and_shaft_lines_give_no_verdict_over_many_windows() -> None:
    signal = healthy(CWRU_RATE, 10.0, CWRU_SHAFT)
    window = 6000
    verdicts = {
        diagnose_channel(signal[i : i + window], CWRU_RATE, CWRU_SHAFT, BEARINGS).verdict
        for i in range(0, len(signal) - window + 1, window // 2)
    }
    assert verdicts == {"none"}


def test_an_unexplained_anomaly_is_unknown_not_none() -> None:
    signal = healthy(CWRU_RATE, 0.5, CWRU_SHAFT)
    diagnosis = diagnose_channel(signal, CWRU_RATE, CWRU_SHAFT, BEARINGS, anomalous=True)
    assert diagnosis.verdict == "unknown"


RIG_RATE, RIG_SHAFT = 1000.0, 29.6


@pytest.mark.parametrize(
    ("orders_g", "axial", "expected"),
    [
        ((0.05, 0.02, 0.008), False, "none"),
        ((0.3, 0.02), False, "imbalance"),
        ((0.3, 0.02), True, "misalignment"),
        ((0.15, 0.15, 0.02), False, "misalignment"),
        ((0.15, 0.03, 0.05, 0.05, 0.05, 0.04, 0.03), False, "looseness"),
    ],
)
def test_shaft_patterns_in_zone_c_or_d(
    orders_g: tuple[float, ...], axial: bool, expected: str
) -> None:
    signal = shaft(RIG_RATE, 5.0, RIG_SHAFT, orders_g) + noise(RIG_RATE, 5.0, 0.004)
    diagnosis = diagnose_channel(signal, RIG_RATE, RIG_SHAFT, BEARINGS, axial=axial)
    assert diagnosis.verdict == expected
    assert (diagnosis.zone in ("C", "D")) == (expected != "none")


def test_shaft_speed_is_estimated_within_the_range() -> None:
    signal = shaft(RIG_RATE, 5.0, RIG_SHAFT, (0.05, 0.02, 0.008)) + noise(RIG_RATE, 5.0, 0.01)
    speed, height_db = estimate_shaft_hz(signal, RIG_RATE, 20.0, 40.0)
    assert speed == pytest.approx(RIG_SHAFT, abs=0.05)
    assert height_db > 20.0
    with pytest.raises(ValueError, match="speed range"):
        estimate_shaft_hz(signal, RIG_RATE, 600.0, 700.0)


def test_a_bearing_given_by_orders_or_geometry_is_the_same_bearing() -> None:
    given = DefectOrders(5.4152, 3.5848, 2.357, 0.39828)
    signal = healthy(CWRU_RATE, 1.0, CWRU_SHAFT) + impacts(
        CWRU_RATE, 1.0, DEFECTS.bpfo, resonance_hz=3000.0, amplitude_g=0.5
    )
    by_orders = diagnose_channel(signal, CWRU_RATE, CWRU_SHAFT, {"b": given})
    by_geometry = diagnose_channel(
        signal, CWRU_RATE, CWRU_SHAFT, {"b": orders_from_geometry(9, 7.94, 39.04)}
    )
    assert by_orders.verdict == by_geometry.verdict == "outer_race"


def test_broadband_noise_in_zone_d_is_unknown_not_a_shaft_fault() -> None:
    signal = noise(RIG_RATE, 5.0, 0.5) + shaft(RIG_RATE, 5.0, RIG_SHAFT, (0.005,))
    diagnosis = diagnose_channel(signal, RIG_RATE, RIG_SHAFT, BEARINGS)
    assert diagnosis.zone == "D"
    assert diagnosis.verdict == "unknown"
