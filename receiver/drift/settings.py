"""The `[drift]` section of the receiver's config file: the trend test's parameters and how
often the receiver service runs the analysis (docs/DRIFT.md, "Parameters"). Plain values: the
command line reads them without importing the analysis."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from receiver.errors import SettingsError

SECTION = "drift"


@dataclass(frozen=True)
class TrendParams:
    window_days: int = 21
    """Trailing window of the test, in days (the last complete UTC day included)."""
    min_days: int = 14
    """Days with data in the window needed before any trend is reported."""
    alpha: float = 0.01
    """Significance of Kendall's tau. ~100 series of an asset are tested a day: the materiality
    test (a change of several spreads) is what keeps noise that passes it by chance out."""
    min_rate_per_week: float = 0.02
    """Material: at least this fraction of the early level per week (0.02 = 2 %/week)."""
    min_change_spreads: float = 3.0
    """Material: the change since the onset spans at least this many day-to-day spreads."""
    recent_days: int = 7
    """The trend has stopped when the last this-many days rule its slope out."""
    min_series: int = 2
    """A cause is a finding when at least this many of its series trend the same way (two
    features, or a feature's median and its p95): one series alone is chance among ~100."""


@dataclass(frozen=True)
class DriftSettings:
    params: TrendParams = field(default_factory=TrendParams)
    every_s: float = 6 * 3600.0
    """Seconds between two runs in the receiver service; 0 turns the periodic task off."""


def drift_settings(config: Mapping[str, Any], where: str) -> DriftSettings:
    """The section from a parsed TOML file (`where` names it in errors): every_hours and the
    fields of TrendParams, min_rate_per_week given as min_rate_pct_per_week."""
    section = dict(config.get(SECTION, {}))
    defaults = TrendParams()
    values: dict[str, Any] = {}
    every_h = number(section.pop("every_hours", 6.0), "every_hours", where, allow_zero=True)
    if "min_rate_pct_per_week" in section:
        rate = number(section.pop("min_rate_pct_per_week"), "min_rate_pct_per_week", where)
        values["min_rate_per_week"] = rate / 100.0
    for item in fields(TrendParams):
        if item.name in section and item.name != "min_rate_per_week":
            kind = type(getattr(defaults, item.name))
            values[item.name] = kind(number(section.pop(item.name), item.name, where))
    if section:
        raise SettingsError(f"{where}: [{SECTION}] unknown key(s) {', '.join(sorted(section))}")
    params = TrendParams(**values)
    if not 0 < params.alpha < 1:
        raise SettingsError(f"{where}: [{SECTION}] alpha must lie between 0 and 1")
    if params.min_days > params.window_days:
        raise SettingsError(f"{where}: [{SECTION}] min_days exceeds window_days")
    return DriftSettings(params, every_h * 3600.0)


def number(value: Any, key: str, where: str, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        floor = ">= 0" if allow_zero else "> 0"
        raise SettingsError(f"{where}: [{SECTION}] {key} must be a number {floor}, not {value!r}")
    return float(value)
