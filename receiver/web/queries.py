"""The fleet page's reads, each one bounded SQL query over indexed columns (both backends).

The fleet summary is one query (the gateway_status view, the retained states and the open
findings per gateway) plus one over the raise and clear alerts (alerts_by_kind), however many
gateways there are; a gateway's page adds a few queries scoped to that gateway."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from receiver.db import Database
from receiver.db.dialect import DbApiConnection

ALARM_KINDS = ("anomaly_raised", "anomaly_cleared")
RECENT_ALERTS = 20
TREND_WEEKS = 12


@dataclass(frozen=True)
class FleetSql:
    summary: str
    alarms: str
    findings: str
    assets: str
    recent_alerts: str
    daily: str

    def for_postgres(self) -> FleetSql:
        return FleetSql(**{name: sql.replace("?", "%s") for name, sql in vars(self).items()})


def summary_sql(epoch: Callable[[str], str]) -> str:
    """The fleet summary; `epoch` turns a time column into epoch seconds (PostgreSQL keeps
    timestamptz, SQLite epoch seconds already)."""
    return f"""
SELECT ids.gateway, {epoch("s.first_seen")} AS first_seen, {epoch("s.last_seen")} AS last_seen,
    {epoch("s.newest_t")} AS newest_t, s.acked_seq, s.received_seq,
    coalesce(s.holes, 0) AS holes, coalesce(s.missing_seqs, 0) AS missing_seqs,
    coalesce(s.incomplete_ranges, 0) AS incomplete_ranges,
    coalesce(s.refused_parts, 0) AS refused_parts, coalesce(s.dead_letters, 0) AS dead_letters,
    st.state, st.fields_json, st.received_at AS state_at,
    coalesce(f.open_findings, 0) AS open_findings
FROM (SELECT gateway FROM gateways UNION SELECT gateway FROM gateway_states) AS ids
LEFT JOIN gateway_status AS s ON s.gateway = ids.gateway
LEFT JOIN gateway_states AS st ON st.gateway = ids.gateway
LEFT JOIN (SELECT gateway, count(*) AS open_findings FROM drift_findings
           WHERE status = 'open' GROUP BY gateway) AS f ON f.gateway = ids.gateway
"""


RAISED = "max(CASE WHEN kind = 'anomaly_raised' THEN t END)"
CLEARED = "max(CASE WHEN kind = 'anomaly_cleared' THEN t END)"


def fleet_statements(epoch: Callable[[str], str]) -> FleetSql:
    return FleetSql(
        summary=summary_sql(epoch),
        alarms=(
            f"SELECT gateway, asset, {epoch(RAISED)} AS raised_t, {epoch(CLEARED)} AS cleared_t"
            " FROM alerts WHERE kind IN ('anomaly_raised', 'anomaly_cleared') {where}"
            " GROUP BY gateway, asset"
        ),
        findings=(
            f"SELECT id, asset, cause, {epoch('opened_at')} AS opened_at,"
            f" {epoch('updated_at')} AS updated_at, since_day, rate_pct_per_week,"
            " {features} AS features_json, summary, recommendation FROM drift_findings"
            " WHERE gateway = ? AND status = 'open' ORDER BY asset, id"
        ),
        assets=(
            f"SELECT asset, {epoch('max(received_at)')} AS last_received FROM parts"
            " WHERE gateway = ? AND asset <> '_' GROUP BY asset ORDER BY asset"
        ),
        recent_alerts=(
            f"SELECT asset, {epoch('t')} AS t, severity, kind, message FROM alerts"
            f" WHERE gateway = ? ORDER BY t DESC LIMIT {RECENT_ALERTS}"
        ),
        daily=(
            "SELECT name, day, median FROM drift_daily WHERE gateway = ? AND asset = ?"
            " AND day >= ? ORDER BY name, day"
        ),
    )


SQLITE = fleet_statements(lambda column: column)
SQLITE = replace(SQLITE, findings=SQLITE.findings.replace("{features}", "features_json"))
POSTGRES = fleet_statements(lambda column: f"extract(epoch FROM {column})::float8")
POSTGRES = replace(
    POSTGRES, findings=POSTGRES.findings.replace("{features}", "features::text")
).for_postgres()


def fleet_sql(dialect_name: str) -> FleetSql:
    return POSTGRES if dialect_name == "postgresql" else SQLITE


ANALYZE_EVERY_S = 6 * 3600.0


def analyze(db: DbApiConnection) -> None:
    """Refresh SQLite's table statistics, sampled (a few ms): without any, its planner counts a
    gateway's refused parts by reading all its parts instead of the parts_refused index (the
    fleet summary at 2,500 gateways: 250 ms instead of ~50 ms). PostgreSQL's autovacuum keeps
    its own statistics."""
    db.execute("PRAGMA analysis_limit = 400", ())
    db.execute("ANALYZE", ())


class FleetReads:
    """The fleet page's queries against one database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.sql = fleet_sql(database.dialect.name)
        self._placeholder = "%s" if self.sql is POSTGRES else "?"

    async def refresh_statistics(self) -> None:
        if self.sql is SQLITE:
            await self.database.transaction("analyzing the tables", analyze)

    async def summary(self, gateway: str | None = None) -> list[dict[str, Any]]:
        """One row per gateway (or just `gateway`), with `alarm_assets`: its assets in alarm
        (raised after their last clear), newest raise first."""
        if gateway is None:
            rows = await self.database.read(self.sql.summary)
            alarms = await self.database.read(self.sql.alarms.format(where=""))
        else:
            where = f" WHERE ids.gateway = {self._placeholder}"
            rows = await self.database.read(self.sql.summary + where, (gateway,))
            alarm_filter = f"AND gateway = {self._placeholder}"
            alarms = await self.database.read(
                self.sql.alarms.format(where=alarm_filter), (gateway,)
            )
        in_alarm: dict[str, list[dict[str, Any]]] = {}
        for alarm in alarms:
            raised, cleared = alarm["raised_t"], alarm["cleared_t"]
            if raised is not None and (cleared is None or cleared < raised):
                entry = {"asset": alarm["asset"], "since": float(raised)}
                in_alarm.setdefault(alarm["gateway"], []).append(entry)
        for row in rows:
            row["alarm_assets"] = sorted(
                in_alarm.get(row["gateway"], []), key=lambda a: -float(a["since"])
            )
            row["fields"] = json.loads(row.pop("fields_json") or "{}")
        return rows

    async def assets(self, gateway: str) -> list[dict[str, Any]]:
        return await self.database.read(self.sql.assets, (gateway,))

    async def recent_alerts(self, gateway: str) -> list[dict[str, Any]]:
        return await self.database.read(self.sql.recent_alerts, (gateway,))

    async def open_findings(self, gateway: str) -> list[dict[str, Any]]:
        rows = await self.database.read(self.sql.findings, (gateway,))
        for row in rows:
            row["features"] = json.loads(row.pop("features_json"))
        return rows

    async def daily_medians(self, gateway: str, asset: str, first_day: int) -> list[dict[str, Any]]:
        return await self.database.read(self.sql.daily, (gateway, asset, first_day))
