"""Operators' verdicts on anomaly episodes: their SQL as plain functions of a sqlite3 connection
(writes run inside Database.write's transaction). One row per episode (asset, raise time); a
later verdict replaces it. `DetectorStates.add_verdict` keeps one together with its alert record
in the outbox, so a verdict the page confirmed survives a restart and reaches the receiver."""

from __future__ import annotations

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
