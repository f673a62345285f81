"""From the trends of an asset's daily series to findings: grouped by cause, described in plain
words, and reconciled with the asset's open findings (one open finding per asset and cause,
updated as it evolves, closed when the trend goes away). Pure: no database, no network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy.typing as npt

from receiver.drift.settings import TrendParams
from receiver.drift.trend import Trend, assess

SCORE_NAME = "anomaly_score"
"""The cause of the anomaly score's series, one per model: `anomaly_score@<model id>`."""
STATS = ("median", "p95")
LEVEL_FEATURES = ("rms", "std", "peak", "spectral_energy")
IMPACT_FEATURES = ("crest_factor", "excess_kurtosis")
AXES = ("x", "y", "z")
NOTABLE_RATE_CHANGE = 0.25
"""An update is announced when the headline rate moved by this fraction, or the features changed."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Action = Literal["opened", "updated", "closed"]


@dataclass(frozen=True)
class SeriesTrend:
    name: str
    stat: str
    trend: Trend


@dataclass(frozen=True)
class Detection:
    """The trends of one cause of one asset."""

    cause: str
    trends: tuple[SeriesTrend, ...]
    first_day: int | None = None
    """Set for an open finding's update: the day its trend began."""
    corroborated: bool = True
    """At least `min_series` of the cause's series trend: enough to open a finding (one keeps
    an open finding open)."""

    @property
    def headline(self) -> SeriesTrend:
        """The fastest-moving series."""
        return max(self.trends, key=lambda s: (abs(s.trend.rate_per_week), s.name, s.stat))

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(sorted({s.name for s in self.trends}))

    @property
    def since_day(self) -> int:
        """The first day of the trend: estimated when the finding opens, then kept (the sliding
        window soon no longer shows the start; the crew was told that day)."""
        if self.first_day is not None:
            return self.first_day
        return min(s.trend.onset_day for s in self.trends)

    @property
    def weeks(self) -> float:
        return (self.headline.trend.last_day - self.since_day + 1) / 7.0

    @property
    def rate_pct_per_week(self) -> float:
        return round(100.0 * self.headline.trend.rate_per_week, 2)


@dataclass(frozen=True)
class OpenFinding:
    id: int
    cause: str
    rate_pct_per_week: float
    features: tuple[str, ...]
    since_day: int


@dataclass(frozen=True)
class Change:
    action: Action
    cause: str
    finding_id: int | None
    """None for a finding opened now (the database gives its id)."""
    detection: Detection | None
    """None when closed."""
    notable: bool = True
    """Worth announcing (opened, closed, or an update that changed the picture)."""


def score_series(model_id: str) -> str:
    """The name of a model's anomaly-score series."""
    return f"{SCORE_NAME}@{model_id}"


def cause_of(name: str) -> str:
    """What a drifting series points at: `<sensor>.vibration_level` (rms, std, peak, energy,
    bands), `<sensor>.impacts` (crest factor, kurtosis), the anomaly score (of any model), else
    the feature itself. The sensor is the channel without its axis (`accel_y` -> `accel`): one
    bearing's defect shows on the axes of the sensor on its housing, so a band rising on two
    axes corroborates it (in the 30-day scenario the defect's first trends were one band on
    accel_x and one on accel_y); sensors at other places stay causes of their own."""
    if name.startswith(f"{SCORE_NAME}@"):
        return SCORE_NAME
    channel, _, feature = name.partition(".")
    if feature in LEVEL_FEATURES or feature.startswith("band_"):
        return f"{sensor_of(channel)}.vibration_level"
    if feature in IMPACT_FEATURES:
        return f"{sensor_of(channel)}.impacts"
    return name


def sensor_of(channel: str) -> str:
    """The channel without a trailing axis: `accel_y` and `de_accel_x` -> `accel`, `de_accel`."""
    stem, separator, axis = channel.rpartition("_")
    return stem if separator and stem and axis.lower() in AXES else channel


def detect(
    series: Mapping[tuple[str, str], tuple[npt.ArrayLike, npt.ArrayLike]], params: TrendParams
) -> list[Detection]:
    """The asset's detections, one per cause with a trending series, from its daily series
    {(name, stat): (days, values)}; corroborated where `params.min_series` of them trend."""
    detections = []
    for cause, (strength, trends) in sorted(assess_causes(series, params).items()):
        found = tuple(SeriesTrend(*t.key, t.trend) for t in trends if t.strength >= 1.0)
        if found:
            detections.append(Detection(cause, found, corroborated=strength >= 1.0))
    return detections


@dataclass(frozen=True)
class Assessed:
    key: tuple[str, str]
    trend: Trend
    strength: float


def assess_causes(
    series: Mapping[tuple[str, str], tuple[npt.ArrayLike, npt.ArrayLike]], params: TrendParams
) -> dict[str, tuple[float, list[Assessed]]]:
    """Per cause: its strength (the `min_series`-th strongest series trending in one direction:
    a finding where >= 1) and those series, strongest first. A physical change shows in more
    than one of a cause's series (a band on two axes, a feature's median and its p95); one
    series of ~100 an asset has crossing the line by chance does not make a finding (the 30-day
    healthy scenario's false finding was one p95 alone)."""
    names = {name for name, _ in series}
    by_cause: dict[tuple[str, bool], list[Assessed]] = {}
    for (name, stat), (days, values) in sorted(series.items()):
        if is_sensor_offset(name, names):
            continue
        assessment = assess(days, values, params)
        if assessment.trend is not None:
            rising = assessment.trend.slope_per_day > 0
            by_cause.setdefault((cause_of(name), rising), []).append(
                Assessed((name, stat), assessment.trend, assessment.strength)
            )
    result: dict[str, tuple[float, list[Assessed]]] = {}
    for (cause, _), assessed in by_cause.items():
        assessed.sort(key=lambda a: -a.strength)
        enough = len(assessed) >= params.min_series
        strength = assessed[params.min_series - 1].strength if enough else 0.0
        if cause not in result or strength > result[cause][0]:
            result[cause] = (strength, assessed)
    return result


def is_sensor_offset(name: str, names: set[str]) -> bool:
    """A vibration channel's mean (the channel has a spectral energy): the accelerometer's offset
    and gravity, not the machine's health; in the 30-day scenario its p95 wandered on a healthy
    machine."""
    channel, _, feature = name.partition(".")
    return feature == "mean" and f"{channel}.spectral_energy" in names


def reconcile(
    open_findings: Sequence[OpenFinding], detections: Sequence[Detection]
) -> list[Change]:
    """What to do with the asset's findings: open new causes (corroborated ones), update open
    ones, close the open ones whose trend went away (no series of the cause trends)."""
    open_by_cause = {finding.cause: finding for finding in open_findings}
    detected = {detection.cause for detection in detections}
    changes = []
    for detection in detections:
        finding = open_by_cause.get(detection.cause)
        if finding is None:
            if detection.corroborated:
                changes.append(Change("opened", detection.cause, None, detection))
        else:
            detection = replace(detection, first_day=finding.since_day)
            notable = is_notable(finding, detection)
            changes.append(Change("updated", detection.cause, finding.id, detection, notable))
    changes.extend(
        Change("closed", finding.cause, finding.id, None)
        for finding in open_findings
        if finding.cause not in detected
    )
    return changes


def is_notable(finding: OpenFinding, detection: Detection) -> bool:
    if finding.features != detection.features:
        return True
    old, new = finding.rate_pct_per_week, detection.rate_pct_per_week
    return abs(new - old) > NOTABLE_RATE_CHANGE * max(abs(old), 1e-9)


def day_text(day: int) -> str:
    """The UTC date of a day number (days since 1970-01-01)."""
    return (EPOCH + timedelta(days=day)).date().isoformat()


def day_of(t: float) -> int:
    """The UTC day number of an epoch time."""
    return int(t // 86400)


def summary(detection: Detection) -> str:
    """'accel_y.spectral_energy rose 4 % a week for 3 weeks since 2026-11-12: inspect the
    bearing; plan work in the next shift'."""
    head = detection.headline
    trend = head.trend
    verb = "rose" if trend.slope_per_day > 0 else "fell"
    others = len(detection.features) - 1
    also = f" (and {others} related feature{'s' if others > 1 else ''})" if others else ""
    stat = "" if head.stat == "median" else f" {head.stat}"
    weeks = max(detection.weeks, 1 / 7)
    return (
        f"{head.name}{stat}{also} {verb} {abs(detection.rate_pct_per_week):.3g} % a week "
        f"for {weeks:.2g} week{'s' if weeks >= 1.05 else ''} since {day_text(detection.since_day)}"
        f": {recommendation(detection)}"
    )


def recommendation(detection: Detection) -> str:
    """What the maintenance crew should do, by cause; never urgent (urgent is the gateway's SMS)."""
    cause, rising = detection.cause, detection.headline.trend.slope_per_day > 0
    if cause.endswith(".vibration_level") and rising:
        what = "inspect the bearing, its lubrication and the mounting"
    elif cause.endswith(".impacts") and rising:
        what = "inspect the bearing for an early defect (impacts)"
    elif cause == SCORE_NAME and rising:
        what = "the machine is slowly leaving what its model learnt as normal: inspect it"
    elif cause.endswith("dominant_freq_hz"):
        what = "check the speed, the load and the belt or coupling"
    else:
        what = "check what changed on this machine and its sensor"
    return f"{what}; plan work in the next shift"
