"""The drift analysis' reads and writes (tables: receiver/db/drift_tables.py), as plain functions
of the DB-API connection that Database.transaction runs on its thread, with the SQL of both
backends (written with `?`; PostgreSQL's times are timestamptz)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from receiver.db.dialect import DbApiConnection
from receiver.drift.findings import Change, Detection, OpenFinding, recommendation, summary
from receiver.drift.trend import DailyAggregate

Source = str  # "features" or "scores"


@dataclass(frozen=True)
class DriftSql:
    day_counts: dict[Source, str]
    score_errors: str
    insert_finding: str
    update_finding: str
    close_finding: str
    select_findings: str
    select_open: str
    lock: str | None
    stored_days: str = (
        "SELECT day, source, records FROM drift_days WHERE gateway = ? AND asset = ? AND day >= ?"
    )
    delete_daily: str = (
        "DELETE FROM drift_daily WHERE gateway = ? AND asset = ? AND day = ? AND source = ?"
    )
    insert_daily: str = (
        "INSERT INTO drift_daily (gateway, asset, day, source, name, records, median, p95)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    upsert_day: str = (
        "INSERT INTO drift_days (gateway, asset, day, source, records) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (gateway, asset, day, source) DO UPDATE SET records = excluded.records"
    )
    select_daily: str = (
        "SELECT name, day, median, p95 FROM drift_daily WHERE gateway = ? AND asset = ?"
        " AND day >= ? AND day <= ? ORDER BY name, day"
    )

    def for_postgres(self) -> DriftSql:
        values: dict[str, Any] = {}
        for name, sql in vars(self).items():
            if isinstance(sql, dict):
                values[name] = {key: text.replace("?", "%s") for key, text in sql.items()}
            else:
                values[name] = sql.replace("?", "%s") if isinstance(sql, str) else sql
        return DriftSql(**values)


def count_by_day(table: str, epoch: str, since: str) -> str:
    return (
        f"SELECT {epoch} AS day, count(*) FROM {table}"
        f" WHERE gateway = ? AND asset = ? AND t >= {since} AND t < {since} GROUP BY 1"
    )


SELECT_OPEN = (
    "SELECT id, cause, rate_pct_per_week, {features}, since_day FROM drift_findings"
    " WHERE gateway = ? AND asset = ? AND status = 'open'"
)
FINDING_COLUMNS = (
    "gateway, asset, cause, status, opened_at, updated_at, since_day, rate_pct_per_week,"
    " {features}, summary, recommendation, {evidence}"
)
SELECT_FINDINGS = (
    "SELECT id, gateway, asset, cause, status, {t}opened_at{te}, {t}updated_at{te},"
    " {t}closed_at{te}, since_day, rate_pct_per_week, {features}, summary, recommendation,"
    " {evidence} FROM drift_findings WHERE (? OR status = 'open') ORDER BY gateway, asset, id"
)

SQLITE_SQL = DriftSql(
    day_counts={
        "features": count_by_day("features", "CAST(t / 86400 AS INTEGER)", "?"),
        "scores": count_by_day("scores", "CAST(t / 86400 AS INTEGER)", "?"),
    },
    score_errors="SELECT model_id, error FROM scores WHERE gateway = ? AND asset = ?"
    " AND t >= ? AND t < ?",
    insert_finding=(
        "INSERT INTO drift_findings ("
        + FINDING_COLUMNS.format(features="features_json", evidence="evidence_json")
        + ") VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
    ),
    update_finding=(
        "UPDATE drift_findings SET updated_at = ?, since_day = ?, rate_pct_per_week = ?,"
        " features_json = ?, summary = ?, recommendation = ?, evidence_json = ? WHERE id = ?"
    ),
    close_finding=(
        "UPDATE drift_findings SET status = 'closed', closed_at = ?, updated_at = ? WHERE id = ?"
    ),
    select_findings=SELECT_FINDINGS.format(
        t="", te="", features="features_json", evidence="evidence_json"
    ),
    select_open=SELECT_OPEN.format(features="features_json"),
    lock=None,
)

PG_EPOCH_DAY = "floor(extract(epoch FROM t) / 86400)::integer"
POSTGRES_SQL = DriftSql(
    day_counts={
        "features": count_by_day("features", PG_EPOCH_DAY, "to_timestamp(?)"),
        "scores": count_by_day("scores", PG_EPOCH_DAY, "to_timestamp(?)"),
    },
    score_errors="SELECT model_id, error FROM scores WHERE gateway = ? AND asset = ?"
    " AND t >= to_timestamp(?) AND t < to_timestamp(?)",
    insert_finding=(
        "INSERT INTO drift_findings ("
        + FINDING_COLUMNS.format(features="features", evidence="evidence")
        + ") VALUES (?, ?, ?, 'open', to_timestamp(?), to_timestamp(?), ?, ?, ?::jsonb, ?, ?,"
        " ?::jsonb) RETURNING id"
    ),
    update_finding=(
        "UPDATE drift_findings SET updated_at = to_timestamp(?), since_day = ?,"
        " rate_pct_per_week = ?, features = ?::jsonb, summary = ?, recommendation = ?,"
        " evidence = ?::jsonb WHERE id = ?"
    ),
    close_finding=(
        "UPDATE drift_findings SET status = 'closed', closed_at = to_timestamp(?),"
        " updated_at = to_timestamp(?) WHERE id = ?"
    ),
    select_findings=SELECT_FINDINGS.format(
        t="extract(epoch FROM ",
        te=")::float8",
        features="features::text",
        evidence="evidence::text",
    ),
    # Two receivers running the analysis at once: the second waits, then sees the first's work.
    lock="SELECT pg_advisory_xact_lock(7215432)",
    select_open=SELECT_OPEN.format(features="features::text"),
).for_postgres()


def drift_sql(dialect_name: str) -> DriftSql:
    return POSTGRES_SQL if dialect_name == "postgresql" else SQLITE_SQL


# --- daily aggregates --------------------------------------------------------------------------


RECOUNT_DAYS = 7
"""The newest days, whose records are counted again at every run (a backlog reaching one of them
is aggregated again); older days of the window are counted until their aggregates exist."""


def days_to_update(
    db: DbApiConnection, sql: DriftSql, gateway: str, asset: str, first_day: int, last_day: int
) -> list[tuple[Source, int, int]]:
    """(source, day, records now) of the window's days whose record count differs from the one
    their aggregates were computed from: days never aggregated (a day without records too, as 0)
    and the last RECOUNT_DAYS days a backlog reached."""
    stored = {
        (str(source), int(day)): int(records)
        for day, source, records in db.execute(
            sql.stored_days, (gateway, asset, first_day)
        ).fetchall()
    }
    changed = []
    for source, count_sql in sql.day_counts.items():
        unseen = [day for day in range(first_day, last_day + 1) if (source, day) not in stored]
        start = max(first_day, min([last_day - RECOUNT_DAYS + 1, *unseen]))
        window = (gateway, asset, start * 86400.0, (last_day + 1) * 86400.0)
        counts = {int(day): int(n) for day, n in db.execute(count_sql, window).fetchall()}
        for day in range(start, last_day + 1):
            if stored.get((source, day)) != counts.get(day, 0):
                changed.append((source, day, counts.get(day, 0)))
    return sorted(changed)


def score_errors(
    db: DbApiConnection, sql: DriftSql, gateway: str, asset: str, day: int
) -> dict[str, list[float]]:
    """The day's anomaly-score errors by model id (NaN where the gateway had none). Per model:
    a new model has its own error scale, and error / threshold would move with the adaptive
    threshold, which follows slow drift by design."""
    rows = db.execute(sql.score_errors, (gateway, asset, day * 86400.0, (day + 1) * 86400.0))
    errors: dict[str, list[float]] = {}
    for model_id, error in rows.fetchall():
        errors.setdefault(str(model_id), []).append(math.nan if error is None else float(error))
    return errors


def store_day(
    db: DbApiConnection,
    sql: DriftSql,
    key: tuple[str, str, int, Source],
    records: int,
    names: Sequence[str],
    aggregate: DailyAggregate,
) -> None:
    """Replace one day's aggregates of one source (and remember how many records made them)."""
    gateway, asset, day, source = key
    db.execute(sql.delete_daily, key)
    rows = [
        (gateway, asset, day, source, name, int(count), finite_or_none(median), finite_or_none(p95))
        for name, count, median, p95 in zip(
            names, aggregate.count, aggregate.median, aggregate.p95, strict=True
        )
    ]
    db.cursor().executemany(sql.insert_daily, rows)
    db.execute(sql.upsert_day, (*key, records))


def finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def daily_series(
    db: DbApiConnection, sql: DriftSql, gateway: str, asset: str, first_day: int, last_day: int
) -> dict[tuple[str, str], tuple[list[int], list[float]]]:
    """{(name, stat): (days, values)} of the window; missing aggregates are left out."""
    series: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    rows = db.execute(sql.select_daily, (gateway, asset, first_day, last_day)).fetchall()
    for name, day, median, p95 in rows:
        for stat, value in (("median", median), ("p95", p95)):
            if value is not None and math.isfinite(value):
                days, values = series.setdefault((str(name), stat), ([], []))
                days.append(int(day))
                values.append(float(value))
    return series


# --- findings ----------------------------------------------------------------------------------


def open_findings(
    db: DbApiConnection, sql: DriftSql, gateway: str, asset: str
) -> list[OpenFinding]:
    rows = db.execute(sql.select_open, (gateway, asset)).fetchall()
    return [
        OpenFinding(int(id_), str(cause), float(rate), tuple(json.loads(features)), int(since))
        for id_, cause, rate, features, since in rows
    ]


def lock(db: DbApiConnection, sql: DriftSql) -> None:
    if sql.lock is not None:
        db.execute(sql.lock, ())


def apply_changes(
    db: DbApiConnection,
    sql: DriftSql,
    gateway: str,
    asset: str,
    changes: Sequence[Change],
    now: float,
) -> list[int]:
    """Write the changes; the finding id of each, in order."""
    ids = []
    for change in changes:
        detection = change.detection
        if change.action == "closed" or detection is None:
            db.execute(sql.close_finding, (now, now, change.finding_id))
            ids.append(int(change.finding_id or 0))
            continue
        described = finding_columns(detection)
        if change.action == "opened":
            row = db.execute(sql.insert_finding, (gateway, asset, change.cause, now, now,
                                                  *described)).fetchone()  # fmt: skip
            ids.append(int(row[0]))
        else:
            db.execute(sql.update_finding, (now, *described, change.finding_id))
            ids.append(int(change.finding_id or 0))
    return ids


def finding_columns(detection: Detection) -> tuple[Any, ...]:
    """(since_day, rate_pct_per_week, features json, summary, recommendation, evidence json)."""
    return (
        detection.since_day,
        detection.rate_pct_per_week,
        json.dumps(list(detection.features)),
        summary(detection),
        recommendation(detection),
        json.dumps(evidence(detection)),
    )


def evidence(detection: Detection) -> list[dict[str, Any]]:
    """Per drifting series: its numbers (what the finding rests on)."""
    return [
        {
            "feature": s.name,
            "stat": s.stat,
            "rate_pct_per_week": round(100.0 * s.trend.rate_per_week, 2),
            "onset_day": s.trend.onset_day,
            "last_day": s.trend.last_day,
            "level": s.trend.level,
            "slope_per_day": s.trend.slope_per_day,
            "spread": s.trend.spread,
            "change_spreads": round(s.trend.change_spreads, 2),
            "kendall_tau": round(s.trend.tau, 3),
            "p_value": float(np.format_float_scientific(s.trend.p_value, precision=2)),
            "days_with_data": s.trend.days_with_data,
        }
        for s in detection.trends
    ]


def findings(db: DbApiConnection, sql: DriftSql, include_closed: bool) -> list[dict[str, Any]]:
    """Every open finding (and the closed ones if asked), as dicts."""
    result = []
    for row in db.execute(sql.select_findings, (include_closed,)).fetchall():
        item = dict(zip(FINDING_KEYS, row, strict=True))
        item["features"] = json.loads(item["features"])
        item["evidence"] = json.loads(item["evidence"])
        result.append(item)
    return result


FINDING_KEYS = (
    "id", "gateway", "asset", "cause", "status", "opened_at", "updated_at", "closed_at",
    "since_day", "rate_pct_per_week", "features", "summary", "recommendation", "evidence",
)  # fmt: skip
