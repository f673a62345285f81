"""One channel's window in, a verdict with its confidence and evidence out.

Bearing defects first: in the squared-envelope spectra of the most impulsive band and of the
whole band (envelope.py), each defect family is looked for at its expected lines (bearing.py):

- outer race: BPFO and its harmonics (the defect does not move through the load zone, so no
  sidebands);
- inner race: BPFI and its harmonics, with sidebands at shaft speed (the defect turns with the
  shaft through the load zone, which modulates the impacts at 1x);
- rolling element: 2 x BSF (a ball defect strikes both races once per spin) and its harmonic,
  with sidebands at the cage speed FTF (the ball goes round with the cage);
- cage: FTF and its harmonics, when no other family is found (a ball defect's impacts are
  modulated at FTF as the ball goes round with the cage, so FTF lines beside a ball family are
  the ball's). A limit: a cage defect strikes once per cage turn, and its comb of FTF harmonics
  holds BPFO (exactly n x FTF) and, for some bearings, 2 x BSF (11.84 x FTF for the 6205), so
  such a cage defect is reported as a rolling-element or outer-race defect of the same bearing.
  Requiring a wide comb for the cage instead named the emulated ball defect a cage.

A family is found when its fundamental stands `fundamental_db` above the floor and a confirming
line (the second harmonic or a sideband of the fundamental) `confirm_db`; of the families found
in either spectrum, the one whose two lines stand highest wins. The thresholds are statistical:
the floor is a local median, and where the envelope spectrum is noise its bins are about
Rayleigh distributed, so one exceeds r times its median with probability 2^(-r^2): 12 dB
(r = 3.98) ~ 2e-5, 8 dB (r = 2.51) ~ 1e-2. A family found by chance in a healthy window takes
both at once (~ 1e-6 for the few bins searched per line).

Then the shaft, in the velocity spectrum, and only when the velocity is in ISO zone C or D (a
healthy machine always has a 1x line; it becomes a finding when the machine vibrates too much):
looseness (at least 3 of 3x..10x or 2 half orders above the floor), then, if 1x stands
`fundamental_db` above the floor: misalignment (a 2x line as high above the floor and at least
half of 1x in velocity, or a dominant 1x seen by an axial sensor), imbalance (a dominant 1x on a
radial sensor). Nothing found: `unknown` when the detector flagged the window or the zone is C/D,
else `none`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from appliance.diagnosis.bearing import DefectOrders
from appliance.diagnosis.envelope import Band, EnvelopeSpectrum, envelope_spectra
from appliance.diagnosis.lines import Line, Spectrum
from appliance.diagnosis.severity import Foundation, Group, Zone, iso_zone, velocity_rms_mm_s
from appliance.diagnosis.shaft import ShaftLines, shaft_lines
from appliance.records import FloatArray

Verdict = Literal[
    "none",
    "inner_race",
    "outer_race",
    "rolling_element",
    "cage",
    "imbalance",
    "misalignment",
    "looseness",
    "unknown",
]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
BEARING_VERDICTS = frozenset({"inner_race", "outer_race", "rolling_element", "cage"})
FLAT_G = 1e-9  # a window whose samples span less than this is a stuck channel, not a machine


@dataclass(frozen=True)
class DiagnosisSettings:
    """The method's parameters; docs/DIAGNOSIS.md says why each has its value."""

    slip: float = 0.02
    """Tolerance of a defect line, as a share of its frequency (bearings slip 1-2 %)."""
    fundamental_db: float = 12.0
    confirm_db: float = 8.0
    floor_width_orders: float = 1.0
    """Width of the envelope spectrum's running-median floor, in shaft orders."""
    harmonics: int = 3
    """Harmonics of each defect line reported as evidence (the first two decide)."""
    looseness_db: float = 12.0
    imbalance_share: float = 0.5
    """Imbalance: 1x carries at least this share of the velocity's energy (10-1000 Hz)."""
    misalignment_ratio: float = 0.5
    """Misalignment: 2x at least this share of 1x."""


@dataclass(frozen=True)
class MachineSeverity:
    group: Group = 2
    foundation: Foundation = "rigid"


@dataclass(frozen=True)
class ChannelDiagnosis:
    verdict: Verdict
    confidence: float
    """Share of the verdict's expected lines above the floor (0 for none / unknown)."""
    evidence: tuple[Line, ...]
    bearing: str
    """Which configured bearing the defect lines belong to ("" for a shaft verdict)."""
    shaft_hz: float
    band: Band
    velocity_mm_s: float
    zone: Zone


@dataclass(frozen=True)
class _Family:
    verdict: Verdict
    name: str
    order: str
    """Which DefectOrders field gives the fundamental."""
    multiple: float
    sideband: str
    """"shaft", "ftf" or "" (no sidebands)."""


FAMILIES = (
    _Family("outer_race", "BPFO", "bpfo", 1.0, ""),
    _Family("inner_race", "BPFI", "bpfi", 1.0, "shaft"),
    _Family("rolling_element", "BSF", "bsf", 2.0, "ftf"),
    _Family("cage", "FTF", "ftf", 1.0, ""),
)


@dataclass(frozen=True)
class _Match:
    family: _Family
    bearing: str
    strength_db: float
    lines: tuple[Line, ...]
    confidence: float
    band: Band


def diagnose_channel(
    acceleration_g: FloatArray,
    rate: float,
    shaft_hz: float,
    bearings: Mapping[str, DefectOrders],
    *,
    machine: MachineSeverity = MachineSeverity(),
    axial: bool = False,
    anomalous: bool = False,
    settings: DiagnosisSettings = DiagnosisSettings(),
) -> ChannelDiagnosis:
    """Diagnose one window of one channel (acceleration in g) at a known shaft speed."""
    velocity = velocity_rms_mm_s(acceleration_g, rate)
    zone = iso_zone(velocity, machine.group, machine.foundation)
    highest = max(
        [order.bpfi * shaft_hz for order in bearings.values()] + [shaft_hz], default=shaft_hz
    )
    looks = envelope_spectra(acceleration_g, rate, min_width_hz=2 * (highest + 2 * shaft_hz))
    matches = _bearing_matches(looks, bearings, shaft_hz, settings)

    def result(
        verdict: Verdict,
        confidence: float,
        lines: tuple[Line, ...],
        bearing: str = "",
        band: Band = looks[0].band,
    ) -> ChannelDiagnosis:
        return ChannelDiagnosis(verdict, confidence, lines, bearing, shaft_hz, band, velocity, zone)

    if float(np.ptp(acceleration_g)) <= FLAT_G:  # a stuck sensor: its empty spectra show no lines
        return result("none", 0.0, ())
    if matches:
        # a ball's defect is modulated at the cage speed too: FTF lines name the cage only alone
        defects = [match for match in matches if match.family.verdict != "cage"] or matches
        best = max(defects, key=lambda match: match.strength_db)
        return result(best.family.verdict, best.confidence, best.lines, best.bearing, best.band)
    if zone in ("C", "D"):
        lines = shaft_lines(acceleration_g, rate, shaft_hz, settings.slip)
        shaft_verdict = _shaft_pattern(lines, velocity, axial, settings)
        if shaft_verdict is not None:
            verdict, confidence, evidence = shaft_verdict
            return result(verdict, confidence, evidence)
    unexplained = anomalous or zone in ("C", "D")
    return result("unknown" if unexplained else "none", 0.0, ())


def _bearing_matches(
    looks: list[EnvelopeSpectrum],
    bearings: Mapping[str, DefectOrders],
    shaft_hz: float,
    settings: DiagnosisSettings,
) -> list[_Match]:
    matches = []
    for look in looks:
        step = float(look.freqs[1] - look.freqs[0])
        width = max(settings.floor_width_orders * shaft_hz, 5 * step)
        spectrum = Spectrum.with_floor(look.freqs, look.magnitude, width)
        for name, orders in bearings.items():
            frequencies = orders.hz(shaft_hz)
            for family in FAMILIES:
                match = _match_family(spectrum, family, frequencies, shaft_hz, settings)
                if match is not None:
                    matches.append(_Match(family, name, *match, look.band))
    return matches


def _match_family(
    spectrum: Spectrum,
    family: _Family,
    frequencies: DefectOrders,
    shaft_hz: float,
    settings: DiagnosisSettings,
) -> tuple[float, tuple[Line, ...], float] | None:
    """(strength in dB, the family's lines, confidence) if the family is found."""
    base = getattr(frequencies, family.order) * family.multiple
    if base >= spectrum.freqs[-1]:
        return None
    harmonics = [
        spectrum.line(_label(k * family.multiple, family.name), k * base, settings.slip * k * base)
        for k in range(1, settings.harmonics + 1)
        if k * base < spectrum.freqs[-1]
    ]
    fundamental = harmonics[0]
    sidebands = _sidebands(spectrum, fundamental, family, frequencies, shaft_hz, settings)
    confirming = [line.db_above_floor for line in harmonics[1:2] + sidebands]
    if fundamental.db_above_floor < settings.fundamental_db or not confirming:
        return None
    confirm = max(confirming)
    if confirm < settings.confirm_db:
        return None
    lines = tuple(harmonics + sidebands)
    found = sum(line.db_above_floor >= settings.confirm_db for line in lines)
    return fundamental.db_above_floor + confirm, lines, found / len(lines)


def _label(multiple: float, name: str) -> str:
    return name if multiple == 1 else f"{multiple:g}x{name}"


def _sidebands(
    spectrum: Spectrum,
    fundamental: Line,
    family: _Family,
    frequencies: DefectOrders,
    shaft_hz: float,
    settings: DiagnosisSettings,
) -> list[Line]:
    if not family.sideband:
        return []
    spacing = shaft_hz if family.sideband == "shaft" else frequencies.ftf
    name = "1x" if family.sideband == "shaft" else "FTF"
    tolerance = settings.slip * spacing
    return [
        spectrum.line(f"{fundamental.name}{sign}{name}", fundamental.found_hz + side, tolerance)
        for sign, side in (("-", -spacing), ("+", spacing))
        if fundamental.found_hz + side > 0
    ]


def _shaft_pattern(
    lines: ShaftLines, velocity_mm_s: float, axial: bool, settings: DiagnosisSettings
) -> tuple[Verdict, float, tuple[Line, ...]] | None:
    orders, amplitudes = lines.orders, lines.amplitudes_mm_s
    upper = [line for line in orders[2:] if line.db_above_floor >= settings.looseness_db]
    halves = [line for line in lines.half_orders if line.db_above_floor >= settings.looseness_db]
    if len(upper) >= 3 or len(halves) >= 2:
        count = len(orders[2:]) + len(lines.half_orders)
        return "looseness", (len(upper) + len(halves)) / count, tuple(upper + halves)
    if not orders or orders[0].db_above_floor < settings.fundamental_db:
        return None  # no 1x line: the velocity is broadband, not the shaft's
    second_stands = len(orders) >= 2 and orders[1].db_above_floor >= settings.fundamental_db
    if second_stands and amplitudes[1] >= settings.misalignment_ratio * amplitudes[0]:
        ratio = float(amplitudes[1] / max(amplitudes[0], 1e-12))
        return "misalignment", min(1.0, ratio), orders[:2]
    share = float((amplitudes[0] / np.sqrt(2)) ** 2 / max(velocity_mm_s**2, 1e-12))
    if axial and share >= settings.imbalance_share:
        return "misalignment", min(1.0, share), orders[:1]
    if share >= settings.imbalance_share:
        return "imbalance", min(1.0, share), orders[:1]
    return None
