"""An asset's diagnosis over its channels, and the words an alarm would carry."""

from __future__ import annotations

import pytest

from appliance.diagnosis import CWRU_DRIVE_END
from appliance.diagnosis.asset import ChannelWindow, describe, diagnose_asset
from appliance.rig.mcu import MachineSignal

from .synthetic import noise

RATE = 1000.0


def windows(signal: MachineSignal) -> dict[str, ChannelWindow]:
    import numpy as np

    t = 20.0 + np.arange(5000) / RATE
    x = signal.render(t, 3, np.random.default_rng(0))
    return {
        name: ChannelWindow(x[:, axis], RATE, axial=axis == 2)
        for axis, name in enumerate(("accel_x", "accel_y", "accel_z"))
    }


def test_an_outer_race_defect_is_the_finding_with_its_lines_and_the_worst_zone() -> None:
    machine = MachineSignal(outer_race_g=0.1, imbalance_growth_per_s=0.1)
    diagnosis = diagnose_asset(
        windows(machine), {"drive-end": CWRU_DRIVE_END}, speed_range_rpm=(1600.0, 1900.0)
    )
    assert diagnosis.finding.verdict == "outer_race"
    assert diagnosis.finding.shaft_hz == pytest.approx(29.6, abs=0.3)
    assert diagnosis.zone == "D"  # the 1x has grown to 3 x its base by t = 20 s
    text = describe(diagnosis)
    assert text.startswith("outer-race defect likely (BPFO 10")
    assert "+ 2 lines in the envelope" in text
    assert text.endswith(f"velocity {diagnosis.velocity_mm_s:.1f} mm/s zone D")


def test_a_healthy_machine_reads_no_fault_pattern() -> None:
    diagnosis = diagnose_asset(windows(MachineSignal()), {"b": CWRU_DRIVE_END}, speed_rpm=1776.0)
    assert diagnosis.finding.verdict == "none"
    assert describe(diagnosis) == (
        f"no fault pattern, velocity {diagnosis.velocity_mm_s:.1f} mm/s zone B"
    )


def test_the_asset_needs_a_window_and_a_speed() -> None:
    with pytest.raises(ValueError, match="no channel window"):
        diagnose_asset({}, {}, speed_rpm=1776.0)
    window = {"accel_x": ChannelWindow(noise(RATE, 1.0, 0.01), RATE)}
    with pytest.raises(ValueError, match="speed_rpm or speed_range_rpm"):
        diagnose_asset(window, {})


@pytest.mark.parametrize("speed", [{"speed_rpm": 1776.0}, {"speed_range_rpm": (1600.0, 1900.0)}])
def test_a_stuck_channel_reads_no_fault_and_warns_of_nothing(speed: dict[str, object]) -> None:
    """A flatline (every sample the same) has empty spectra: no -inf dB, no bearing verdict
    (the suite turns numpy's divide-by-zero warning into an error)."""
    import numpy as np

    stuck = {
        name: ChannelWindow(np.full(5000, 0.98), RATE, axial=name == "accel_z")
        for name in ("accel_x", "accel_y", "accel_z")
    }
    diagnosis = diagnose_asset(stuck, {"b": CWRU_DRIVE_END}, **speed)  # type: ignore[arg-type]
    assert diagnosis.finding.verdict == "none"
    assert diagnosis.velocity_mm_s == pytest.approx(0.0, abs=1e-9)
