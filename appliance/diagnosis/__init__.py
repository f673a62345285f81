"""Vibration diagnosis (pure): from a window of acceleration to a verdict a crew can act on.

bearing.py: defect frequencies from geometry; envelope.py: the demodulation band chosen by
spectral kurtosis and the squared-envelope spectrum; lines.py: lines against a robust floor;
shaft.py: shaft speed estimate and 1x/2x/harmonic lines; severity.py: velocity RMS and the ISO
20816-3 zone; verdict.py: one channel's verdict, confidence and evidence; asset.py: an asset's
finding over its channels and the words an alarm carries; from_config.py: the inputs from
[assets.machine]. docs/DIAGNOSIS.md.
"""

from appliance.diagnosis.bearing import CWRU_DRIVE_END, DefectOrders, orders_from_geometry
from appliance.diagnosis.severity import iso_zone, velocity_rms_mm_s
from appliance.diagnosis.shaft import estimate_shaft_hz
from appliance.diagnosis.verdict import (
    BEARING_VERDICTS,
    VERDICTS,
    ChannelDiagnosis,
    DiagnosisSettings,
    MachineSeverity,
    Verdict,
    diagnose_channel,
)

__all__ = [
    "BEARING_VERDICTS",
    "CWRU_DRIVE_END",
    "VERDICTS",
    "ChannelDiagnosis",
    "DefectOrders",
    "DiagnosisSettings",
    "MachineSeverity",
    "Verdict",
    "diagnose_channel",
    "estimate_shaft_hz",
    "iso_zone",
    "orders_from_geometry",
    "velocity_rms_mm_s",
]
