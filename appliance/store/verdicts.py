"""Operators' verdicts on anomaly episodes: their SQL as plain functions of a sqlite3 connection
(writes run inside Database.write's transaction). One row per episode (asset, raise time); a
later verdict replaces it. `DetectorStates.add_verdict` keeps one together with its alert record
in the outbox, so a verdict the page confirmed survives a restart and reaches the receiver.
`episode_errors` reads an episode's window errors back from the scores, for a verdict on an
episode the detect stage no longer holds in memory (one from before a restart)."""

from __future__ import annotations

import math
import sqlite3

from appliance.records import EpisodeVerdict
from appliance.uplink.schema.verdicts import VERDICTS

UPSERT_VERDICT = (
    "INSERT INTO episode_verdicts (asset, raised_t, verdict, judged_by, judged_at, note)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (asset, raised_t) DO UPDATE"
    " SET verdict = excluded.verdict, judged_by = excluded.judged_by,"
    " judged_at = excluded.judged_at, note = excluded.note"
)
SELECT_VERDICTS = (
    "SELECT asset, raised_t, verdict, judged_by, judged_at, note FROM episode_verdicts"
    " ORDER BY judged_at"
)

# The episode runs from its raise to the asset's next anomaly_cleared alert (or on, if open).
EPISODE_END = "SELECT min(t) FROM alerts WHERE asset = ? AND t > ? AND kind = 'anomaly_cleared'"
EPISODE_ERRORS = (
    "SELECT t, error FROM scores WHERE asset = ? AND t >= ? AND t < ? AND error IS NOT NULL"
    " ORDER BY t DESC LIMIT ?"
)


def save_verdict(db: sqlite3.Connection, verdict: EpisodeVerdict) -> None:
    row = (verdict.asset, verdict.raised_t, verdict.verdict, verdict.by, verdict.at, verdict.note)
    db.execute(UPSERT_VERDICT, row)


def load_verdicts(db: sqlite3.Connection) -> list[EpisodeVerdict]:
    """Every kept verdict, oldest first."""
    verdicts = []
    for asset, raised_t, verdict, by, at, note in db.execute(SELECT_VERDICTS).fetchall():
        kind = next(v for v in VERDICTS if v == verdict)  # the table's CHECK keeps it one
        verdicts.append(
            EpisodeVerdict(str(asset), float(raised_t), kind, str(by), float(at), str(note))
        )
    return verdicts


def episode_errors(
    db: sqlite3.Connection, asset: str, raised_t: float, limit: int
) -> list[tuple[float, float]]:
    """(t, error) of the latest `limit` scored windows of `asset`'s episode raised at
    `raised_t`, oldest first: from the raise up to the next anomaly_cleared alert (scores_by_asset_t
    and alerts_by_asset_t serve both reads)."""
    [(end,)] = db.execute(EPISODE_END, (asset, raised_t)).fetchall()
    until = math.inf if end is None else float(end)
    rows = db.execute(EPISODE_ERRORS, (asset, raised_t, until, limit)).fetchall()
    return [(float(t), float(error)) for t, error in reversed(rows)]
