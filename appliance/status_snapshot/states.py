"""Each asset's state in words: alarm, sensor fault, warning, no data, commissioning or ok, with
the reason in one line; derived from what the board already holds about the asset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from appliance.records import Score
from appliance.status import AssetStatus
from appliance.status_snapshot.humanize import duration, number

Condition = Literal["alarm", "sensor_fault", "warning", "no_data", "commissioning", "ok"]
CONDITIONS: tuple[Condition, ...] = (
    "alarm",
    "sensor_fault",
    "warning",
    "no_data",
    "commissioning",
    "ok",
)
"""Worst first: the order the page sorts its asset cards in."""
WORDS: dict[Condition, str] = {
    "alarm": "alarm",
    "sensor_fault": "sensor fault",
    "warning": "warning",
    "no_data": "no data",
    "commissioning": "commissioning",
    "ok": "ok",
}
NO_DATA_AFTER_S = 30.0
"""An asset whose newest feature window ended longer ago than this has "no data" (windows come
every stride, 1 s by default; a dropout rule names the silent channel sooner)."""
PROCESS_RULES = frozenset({"drift"})
"""Health rules about the process changing, not a sensor breaking: a warning, not a fault."""
COMMISSIONING_PREFIX = "commissioning ("
REFUSED_PREFIX = "model refused"


@dataclass(frozen=True)
class AssetState:
    condition: Condition
    reason: str
    """Why, in one line: "score 0.91 over threshold 0.50", "accel_x flatline"."""

    @property
    def words(self) -> str:
        return WORDS[self.condition]

    @property
    def rank(self) -> int:
        """0 for the worst condition (alarm), upwards to ok."""
        return CONDITIONS.index(self.condition)


def asset_state(asset: AssetStatus, now: float) -> AssetState:
    """The asset's state at wall time `now`; the first that holds of alarm (a critical anomaly),
    sensor fault, warning (an anomaly warning, drift, a refused model), no data, commissioning."""
    faults = _rules(asset, lambda rule: rule not in PROCESS_RULES)
    drifting = _rules(asset, lambda rule: rule in PROCESS_RULES)
    if asset.alarm == "critical":
        note = f" while {', '.join(faults)}: check those sensors first" if faults else ""
        return AssetState("alarm", _anomaly(asset.latest_score) + note)
    if faults:
        return AssetState("sensor_fault", ", ".join(faults))
    if asset.alarm == "warning":
        return AssetState("warning", _anomaly(asset.latest_score))
    if drifting:
        return AssetState("warning", ", ".join(drifting))
    if asset.model.startswith(REFUSED_PREFIX):
        return AssetState("warning", f"not scored: {asset.model}")
    if asset.latest is None:
        received = any(asset.samples.values())
        return AssetState("no_data", "no feature window yet" if received else "no samples yet")
    age = now - asset.latest.window_end
    if age > NO_DATA_AFTER_S:
        return AssetState("no_data", f"no new window for {duration(age)}")
    if asset.model.startswith(COMMISSIONING_PREFIX):
        return AssetState("commissioning", asset.model)
    score = asset.latest_score
    if score is None:
        return AssetState("ok", "not scored yet")
    return AssetState(
        "ok", f"score {number(score.error)} under threshold {number(score.threshold)}"
    )


def _rules(asset: AssetStatus, keep: Callable[[str], bool]) -> list[str]:
    """ "accel_x flatline" for each open health rule on the asset that `keep` accepts."""
    return [
        f"{channel} {rule.replace('_', ' ')}"
        for channel, rules in sorted(asset.sensor_faults.items())
        for rule in rules
        if keep(rule)
    ]


def _anomaly(score: Score | None) -> str:
    if score is None:
        return "anomalous"
    error, threshold = number(score.error), number(score.threshold)
    if score.error > score.threshold:
        return f"score {error} over threshold {threshold}"
    return f"score {error}, threshold {threshold}: not cleared yet"
