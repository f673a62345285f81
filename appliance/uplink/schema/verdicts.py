"""Operators' verdicts on anomaly episodes as uplink records, and the windows they label (pure).

A verdict travels as an alert record (PROTOCOL.md, "Verdicts"), as acknowledgements do: kind
`anomaly_not_a_fault` or `anomaly_real_fault`, `t` when it was given, the severity the episode
reached, and a message that names the episode by its raise time, `(t=<raise time>)`, written
with repr so that it reads back bit for bit. A receiver that knows nothing of verdicts stores it
as an ordinary alert; one that does reads the episode back (`verdict_of`) and labels the asset's
windows from the raise to the episode's `anomaly_cleared` (`judged_episodes`, `label_windows`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from appliance.records import Alert, EpisodeVerdict, Severity, VerdictKind

VERDICT_ALERT_KINDS: Final[dict[VerdictKind, str]] = {
    "not_a_fault": "anomaly_not_a_fault",
    "real_fault": "anomaly_real_fault",
}
VERDICT_WORDS: Final[dict[VerdictKind, str]] = {
    "not_a_fault": "not a fault",
    "real_fault": "a real fault",
}
VERDICTS: Final[tuple[VerdictKind, ...]] = ("not_a_fault", "real_fault")
NO_LABEL: Final = ""
"""The label of a window outside every judged episode."""
TIME_RESOLUTION_S: Final = 1e-6
"""A database may keep times to the microsecond (PostgreSQL's timestamptz): a window that ended
at the raise (or clear) time still falls in its episode."""


def verdict_alert(verdict: EpisodeVerdict, severity: Severity) -> Alert:
    """The alert record that carries `verdict` over the uplink."""
    raised = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(verdict.raised_t))
    message = (
        f"{verdict.asset}: the anomaly raised at {raised} (t={verdict.raised_t!r}) was "
        f"{VERDICT_WORDS[verdict.verdict]}, said {verdict.by}"
    )
    if verdict.note:
        message += f": {verdict.note}"
    kind = VERDICT_ALERT_KINDS[verdict.verdict]
    return Alert(verdict.asset, verdict.at, severity, kind, message)


def verdict_of(alert: Alert) -> tuple[float, VerdictKind] | None:
    """(raise time of the episode, verdict) if `alert` carries a verdict; None otherwise,
    also for a verdict kind whose message does not name a finite raise time."""
    verdict = next((v for v, kind in VERDICT_ALERT_KINDS.items() if kind == alert.kind), None)
    prefix = f"{alert.asset}: the anomaly raised at "
    if verdict is None or not alert.message.startswith(prefix):
        return None
    start = alert.message.find("(t=", len(prefix))
    end = alert.message.find(")", start)
    if start < 0 or end < 0:
        return None
    try:
        raised_t = float(alert.message[start + 3 : end])
    except ValueError:
        return None
    return (raised_t, verdict) if math.isfinite(raised_t) else None


@dataclass(frozen=True, slots=True)
class JudgedEpisode:
    asset: str
    start: float
    """The raise time."""
    end: float
    """The time of the episode's anomaly_cleared (inf while none is known)."""
    verdict: VerdictKind


def judged_episodes(alerts: Iterable[Alert]) -> list[JudgedEpisode]:
    """The episodes some verdict names, each with its newest verdict, from one gateway's
    alerts (any order): an episode ends at its asset's first anomaly_cleared after the raise."""
    newest: dict[tuple[str, float], tuple[float, VerdictKind]] = {}
    cleared: dict[str, list[float]] = {}
    for alert in alerts:
        if alert.kind == "anomaly_cleared":
            cleared.setdefault(alert.asset, []).append(alert.t)
        elif (found := verdict_of(alert)) is not None:
            key = (alert.asset, found[0])
            if key not in newest or newest[key][0] <= alert.t:
                newest[key] = (alert.t, found[1])
    episodes = []
    for (asset, start), (_, verdict) in sorted(newest.items()):
        end = min((t for t in cleared.get(asset, ()) if t > start), default=math.inf)
        episodes.append(JudgedEpisode(asset, start, end, verdict))
    return episodes


def label_windows(
    times: Sequence[float] | npt.NDArray[np.float64], episodes: Iterable[JudgedEpisode]
) -> npt.NDArray[np.str_]:
    """Per window end time: the verdict of the judged episode it falls in (start <= t <= end),
    else NO_LABEL. `episodes` must be of the windows' asset; a later episode wins an overlap."""
    ends = np.asarray(times, dtype=np.float64)
    labels = np.full(ends.shape, NO_LABEL, dtype="<U11")
    for episode in sorted(episodes, key=lambda e: e.start):
        inside = (ends >= episode.start - TIME_RESOLUTION_S) & (
            ends <= episode.end + TIME_RESOLUTION_S
        )
        labels[inside] = episode.verdict
    return labels
