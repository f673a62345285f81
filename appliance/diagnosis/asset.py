"""One asset's diagnosis from its diagnosed channels' windows, and the words an alarm carries.

The asset's verdict is its strongest finding: a bearing defect on any channel first (the channel
whose lines stand highest), then a shaft pattern, then `unknown`, else `none`. Its severity is
the worst channel's ISO zone, with that channel's velocity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from appliance.diagnosis.bearing import DefectOrders
from appliance.diagnosis.severity import Zone
from appliance.diagnosis.shaft import estimate_shaft_hz
from appliance.diagnosis.verdict import (
    BEARING_VERDICTS,
    ChannelDiagnosis,
    DiagnosisSettings,
    MachineSeverity,
    diagnose_channel,
)
from appliance.records import FloatArray

DEFAULT_MACHINE = MachineSeverity()
DEFAULT_SETTINGS = DiagnosisSettings()
WORDS = {
    "inner_race": "inner-race defect likely",
    "outer_race": "outer-race defect likely",
    "rolling_element": "rolling-element defect likely",
    "cage": "cage defect likely",
    "imbalance": "imbalance likely",
    "misalignment": "misalignment likely",
    "looseness": "mechanical looseness likely",
    "unknown": "no known pattern",
    "none": "no fault pattern",
}


@dataclass(frozen=True)
class ChannelWindow:
    samples_g: FloatArray
    """Acceleration in g (the channel's unit converted: from_config.to_g)."""
    rate: float
    axial: bool = False


@dataclass(frozen=True)
class AssetDiagnosis:
    finding: ChannelDiagnosis
    channel: str
    """The channel the finding comes from."""
    zone: Zone
    velocity_mm_s: float
    """The worst channel's velocity RMS (10-1000 Hz) and its zone."""
    channels: Mapping[str, ChannelDiagnosis]


def diagnose_asset(
    windows: Mapping[str, ChannelWindow],
    bearings: Mapping[str, DefectOrders],
    *,
    speed_rpm: float | None = None,
    speed_range_rpm: tuple[float, float] | None = None,
    machine: MachineSeverity = DEFAULT_MACHINE,
    anomalous: bool = False,
    settings: DiagnosisSettings = DEFAULT_SETTINGS,
) -> AssetDiagnosis:
    """Diagnose every channel at the fixed speed, or at the speed estimated on the first radial
    channel within the range; ValueError without windows or without either speed."""
    if not windows:
        raise ValueError("no channel window to diagnose")
    shaft_hz = _shaft_hz(windows, speed_rpm, speed_range_rpm)
    channels = {
        name: diagnose_channel(
            window.samples_g,
            window.rate,
            shaft_hz,
            bearings,
            machine=machine,
            axial=window.axial,
            anomalous=anomalous,
            settings=settings,
        )
        for name, window in windows.items()
    }
    channel = max(channels, key=lambda name: _rank(channels[name]))
    worst = max(channels, key=lambda name: channels[name].velocity_mm_s)
    return AssetDiagnosis(
        channels[channel], channel, channels[worst].zone, channels[worst].velocity_mm_s, channels
    )


def describe(diagnosis: AssetDiagnosis) -> str:
    """E.g. "outer-race defect likely (BPFO 107 Hz + 2 lines in the envelope, 19 dB above the
    floor, accel_y), velocity 7.1 mm/s zone C"."""
    finding = diagnosis.finding
    text = WORDS[finding.verdict]
    if finding.evidence:
        first, others = finding.evidence[0], len(finding.evidence) - 1
        where = "envelope" if finding.verdict in BEARING_VERDICTS else "velocity spectrum"
        more = f" + {others} lines" if others > 1 else " + 1 line" if others == 1 else ""
        text += (
            f" ({first.name} {first.found_hz:.0f} Hz{more} in the {where}, "
            f"{first.db_above_floor:.0f} dB above the floor, {diagnosis.channel})"
        )
    return f"{text}, velocity {diagnosis.velocity_mm_s:.1f} mm/s zone {diagnosis.zone}"


def _shaft_hz(
    windows: Mapping[str, ChannelWindow],
    speed_rpm: float | None,
    speed_range_rpm: tuple[float, float] | None,
) -> float:
    if speed_rpm is not None:
        return speed_rpm / 60
    if speed_range_rpm is None:
        raise ValueError("need speed_rpm or speed_range_rpm")
    radial = [window for window in windows.values() if not window.axial]
    window = (radial or list(windows.values()))[0]
    low, high = speed_range_rpm
    return estimate_shaft_hz(window.samples_g, window.rate, low / 60, high / 60)[0]


def _rank(diagnosis: ChannelDiagnosis) -> tuple[int, float]:
    """Bearing findings first, then shaft patterns, unknown, none; ties by evidence height."""
    if diagnosis.verdict in BEARING_VERDICTS:
        kind = 3
    elif diagnosis.verdict in ("imbalance", "misalignment", "looseness"):
        kind = 2
    else:
        kind = 1 if diagnosis.verdict == "unknown" else 0
    height = sum(line.db_above_floor for line in diagnosis.evidence[:2])
    return kind, height
