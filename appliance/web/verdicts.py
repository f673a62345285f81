"""The page's side of operators' verdicts on anomaly episodes: recording one (POST
/api/alerts/verdict, on an episode the alert stage still lists) and showing them on the alert
rows of /api/status (`episode`: the raise time of the row's episode; `verdict`)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from appliance.detect.verdicts import EpisodeVerdicts
from appliance.records import Alert, EpisodeVerdict, Severity
from appliance.status import StatusBoard
from appliance.uplink.schema.verdicts import VERDICTS

VERDICT_BODY = (
    '{"asset": "<asset>", "t": <the raise time of its anomaly>, '
    '"verdict": "not_a_fault" | "real_fault", "by": "<name>", "note": "<optional text>"}'
)


async def judge_episode(
    board: StatusBoard, asset: str, raised_t: object, verdict: object, by: str, note: str
) -> EpisodeVerdict | None:
    """Record the verdict on `asset`'s anomaly raised at `raised_t`; None if the alert stage
    lists no such raise (open or recent). ValueError naming the field if `raised_t` is not a
    number, `verdict` not one of VERDICTS, or `by`/`note` not short printable text;
    StoreError if it could not be kept."""
    if not isinstance(raised_t, int | float) or isinstance(raised_t, bool):
        raise ValueError("t: must be the raise time of the anomaly (a number)")
    kind = next((v for v in VERDICTS if v == verdict), None)
    if kind is None:
        raise ValueError(f"verdict: must be one of {', '.join(VERDICTS)}, got {verdict!r:.40}")
    alerts = listed_alerts(board)
    severities = [
        a.severity for a in alerts if a.asset == asset and episode_of(a, alerts) == raised_t
    ]
    if not severities:
        return None
    severity: Severity = "critical" if "critical" in severities else "warning"
    judged = EpisodeVerdict(asset, float(raised_t), kind, by, time.time(), note)
    return await verdicts_of(board).judge(judged, severity)


def verdicts_of(board: StatusBoard) -> EpisodeVerdicts:
    """The board's verdicts; a board without durable ones (a page without a store) is given
    in-memory ones, whose only writer is the page."""
    if not isinstance(board.verdicts, EpisodeVerdicts):
        board.verdicts = EpisodeVerdicts()
    return board.verdicts


def listed_alerts(board: StatusBoard) -> list[Alert]:
    """The alert stage's recent alerts, oldest first, then its open ones."""
    router = board.alerts
    if router is None:
        return []
    return [*router.recent, *router.open_by_id().values()]


def episode_of(alert: Alert, alerts: Sequence[Alert]) -> float | None:
    """The raise time of the anomaly episode `alert` belongs to, if `alerts` show its raise."""
    if not alert.kind.startswith("anomaly_"):
        return None
    raises = [a.t for a in alerts if a.asset == alert.asset and a.kind == "anomaly_raised"]
    return max((t for t in raises if t <= alert.t), default=None)


def add_verdicts(rows: Iterable[dict[str, Any]], board: StatusBoard) -> None:
    """Give each alert row of the page's JSON its `episode` and that episode's `verdict`."""
    alerts = listed_alerts(board)
    verdicts = board.verdicts
    for row in rows:
        alert = Alert(row["asset"], row["t"], row["severity"], row["kind"], row["message"])
        raised_t = episode_of(alert, alerts)
        judged = None
        if raised_t is not None and verdicts is not None:
            judged = verdicts.of(alert.asset, raised_t)
        row["episode"] = raised_t
        row["verdict"] = verdict_json(judged) if judged is not None else None


def verdict_json(verdict: EpisodeVerdict) -> dict[str, Any]:
    return {
        "asset": verdict.asset,
        "t": verdict.raised_t,
        "verdict": verdict.verdict,
        "by": verdict.by,
        "at": verdict.at,
        "note": verdict.note,
    }
