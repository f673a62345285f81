"""Numbers as people read them: values with their unit and a sensible precision, durations
("2 h 5 min"), sizes ("68.8 GB"), rates ("1.0/s") and times with date and zone, in the gateway's
zone, 24-hour. Plain functions of their arguments: the page, the JSON API and the summary say the
same thing the same way."""

from __future__ import annotations

import math
from datetime import datetime, tzinfo

UNIT_SHOWN = {"degC": "°C", "degF": "°F", "m/s2": "m/s²", "m/s^2": "m/s²", "ohm": "Ω"}
"""Config spellings (ASCII, easy to type) -> how the page writes them."""
DIMENSIONLESS = frozenset({"crest_factor", "excess_kurtosis"})
SQUARED = frozenset({"spectral_energy"})
NOTHING = "–"
"""Shown for a value not known yet (or not a finite number)."""


def unit_shown(unit: str) -> str:
    return UNIT_SHOWN.get(unit, unit)


def feature_unit(feature: str, channel_unit: str) -> str:
    """The unit of a feature of a channel measured in `channel_unit` ("rms" of g: "g", "slope"
    of degC: "°C/s", a band's energy: "g²", the dominant frequency: "Hz")."""
    unit = unit_shown(channel_unit)
    if feature in DIMENSIONLESS:
        return ""
    if feature == "dominant_freq_hz":
        return "Hz"
    if feature in SQUARED or feature.startswith("band_"):
        return f"{unit}²"
    if feature == "slope":
        return f"{unit}/s"
    return unit


def number(value: float | None, digits: int = 3) -> str:
    """`digits` significant digits, without an exponent between 0.001 and 10^digits; large
    values keep their integer digits (1234.5 -> "1235", 0.012345 -> "0.0123")."""
    if value is None or not math.isfinite(value):
        return NOTHING
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= digits or magnitude < -3:
        return f"{value:.{digits - 1}e}" if magnitude < -3 else f"{value:.0f}"
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:.{decimals}f}"


def quantity(value: float | None, unit: str, digits: int = 3) -> str:
    """`value` and its unit: "0.512 g", "41.3 °C", "2.14" (no unit)."""
    text = number(value, digits)
    return f"{text} {unit}" if unit and text != NOTHING else text


def rate(per_s: float | None) -> str:
    """Events or samples per second: "1.0/s", "998/s", "0.20/s"; per minute below 0.1/s."""
    if per_s is None or not math.isfinite(per_s):
        return NOTHING
    if 0 < per_s < 0.1:
        return f"{number(per_s * 60.0, 2)}/min"
    if per_s >= 9.95:
        return f"{per_s:.0f}/s"
    return f"{per_s:.1f}/s" if per_s >= 0.995 or per_s == 0 else f"{per_s:.2f}/s"


def duration(seconds: float | None) -> str:
    """ "45 s", "3 min", "2 h 5 min", "3 d 4 h": the two largest units, rounded down."""
    if seconds is None or not math.isfinite(seconds):
        return NOTHING
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        hours, minutes = divmod(s // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(s // 3600, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def size(n_bytes: float | None) -> str:
    """Decimal units as disks are sold: "512 B", "4.1 kB", "68.8 GB"."""
    if n_bytes is None or not math.isfinite(n_bytes):
        return NOTHING
    value = float(n_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def time_text(t: float | None, zone: tzinfo) -> str:
    """Wall time `t` (Unix seconds) in `zone`: "2026-12-07 14:03:12 CET"."""
    if t is None or not math.isfinite(t):
        return NOTHING
    local = datetime.fromtimestamp(t, zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {zone_name(local)}"


def zone_name(local: datetime) -> str:
    """The zone's abbreviation ("CET", "UTC"), or its offset ("UTC+03:00") where it has none."""
    name = local.tzname() or ""
    if name and not name.startswith(("+", "-")):
        return name
    offset = local.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
