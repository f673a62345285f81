"""One drift run over the fleet, and the receiver's periodic task (docs/DRIFT.md).

Per gateway and asset: bring the daily aggregates up to date (only the days whose record count
changed), read the window's daily series, test them (trend.py), reconcile the detections with
the open findings (findings.py) and write the changes in one transaction; each change worth
announcing becomes an event for the webhooks (a non-critical alert)."""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from receiver.db import Database, StoredFeature
from receiver.drift import store
from receiver.drift.findings import (
    Change,
    day_of,
    day_text,
    detect,
    recommendation,
    reconcile,
    score_series,
    summary,
)
from receiver.drift.settings import DriftSettings, TrendParams
from receiver.drift.store import DriftSql, drift_sql
from receiver.drift.trend import DailyAggregate, daily_aggregate
from receiver.errors import DatabaseError

log = structlog.get_logger(__name__)

Event = dict[str, Any]


@dataclass
class DriftRun:
    """What one run did."""

    assets: int = 0
    days_updated: int = 0
    events: list[Event] = field(default_factory=list)
    failures: int = 0


async def run_drift(
    database: Database,
    params: TrendParams,
    *,
    last_day: int,
    now: float,
    gateways: str = "*",
) -> DriftRun:
    """Analyse every asset of the gateways matching the glob `gateways`, with `last_day` (a UTC
    day number) the newest day of the window. One asset's database failure is logged and
    counted; the others go on."""
    sql = drift_sql(database.dialect.name)
    run = DriftRun()
    for gateway in await database.gateways():
        if not fnmatch.fnmatchcase(gateway, gateways):
            continue
        for asset in await database.assets(gateway):
            try:
                await analyse_asset(database, sql, params, (gateway, asset), last_day, now, run)
            except DatabaseError as exc:
                run.failures += 1
                log.warning("drift_asset_failed", gateway=gateway, asset=asset, reason=str(exc))
            except Exception:  # a bug of ours on this asset's data: the others still go on
                run.failures += 1
                log.exception("drift_asset_failed", gateway=gateway, asset=asset)
            run.assets += 1
    return run


async def analyse_asset(
    database: Database,
    sql: DriftSql,
    params: TrendParams,
    key: tuple[str, str],
    last_day: int,
    now: float,
    run: DriftRun,
) -> None:
    gateway, asset = key
    first_day = last_day - params.window_days + 1
    run.days_updated += await update_aggregates(database, sql, key, first_day, last_day)
    series = await database.transaction(
        "reading daily aggregates", store.daily_series, sql, gateway, asset, first_day, last_day
    )
    detections = detect(series, params)
    changes, ids = await database.transaction(
        "writing drift findings", reconcile_and_write, sql, key, detections, now
    )
    for change, finding_id in zip(changes, ids, strict=True):
        if change.notable:
            run.events.append(finding_event(key, change, finding_id, now))


def reconcile_and_write(
    db: Any, sql: DriftSql, key: tuple[str, str], detections: Sequence[Any], now: float
) -> tuple[list[Change], list[int]]:
    """Under the analysis lock: the open findings, the changes, written."""
    gateway, asset = key
    store.lock(db, sql)
    changes = reconcile(store.open_findings(db, sql, gateway, asset), detections)
    return changes, store.apply_changes(db, sql, gateway, asset, changes, now)


async def update_aggregates(
    database: Database, sql: DriftSql, key: tuple[str, str], first_day: int, last_day: int
) -> int:
    """Recompute the window's days whose record count changed; how many were."""
    gateway, asset = key
    stale = await database.transaction(
        "counting records by day", store.days_to_update, sql, gateway, asset, first_day, last_day
    )
    schema_names: dict[int, tuple[str, ...]] = {}
    for source, day, records in stale:
        if records == 0:  # remembered, so that the day is not counted again at every run
            names: list[str] = []
            aggregate = daily_aggregate(np.empty((0, 0)))
        else:
            names, aggregate = await aggregate_day(database, sql, key, source, day, schema_names)
        await database.transaction(
            "storing daily aggregates", store.store_day, sql, (gateway, asset, day, source),
            records, names, aggregate,
        )  # fmt: skip
    return len(stale)


async def aggregate_day(
    database: Database,
    sql: DriftSql,
    key: tuple[str, str],
    source: str,
    day: int,
    schema_names: dict[int, tuple[str, ...]],
) -> tuple[list[str], DailyAggregate]:
    gateway, asset = key
    if source == "scores":
        errors = await database.transaction(
            "reading scores", store.score_errors, sql, gateway, asset, day
        )
        names = [score_series(model_id) for model_id in errors]
        columns = [daily_aggregate(np.array(e).reshape(-1, 1)) for e in errors.values()]
        return names, DailyAggregate(
            np.concatenate([c.median for c in columns]) if columns else np.empty(0),
            np.concatenate([c.p95 for c in columns]) if columns else np.empty(0),
            np.concatenate([c.count for c in columns]) if columns else np.empty(0, np.int64),
        )
    rows = await database.features(gateway, asset, day * 86400.0, (day + 1) * 86400.0)
    for schema_id in {row.schema_id for row in rows} - schema_names.keys():
        schema_names[schema_id] = await database.schema_names(schema_id)
    names, matrix = feature_matrix(rows, schema_names)
    return names, daily_aggregate(matrix)


def feature_matrix(
    rows: Sequence[StoredFeature], schema_names: dict[int, tuple[str, ...]]
) -> tuple[list[str], np.ndarray[Any, np.dtype[np.float64]]]:
    """Rows x the union of their schemas' names (NaN where a row's schema lacks a name)."""
    names = list(dict.fromkeys(name for row in rows for name in schema_names[row.schema_id]))
    column = {name: index for index, name in enumerate(names)}
    matrix = np.full((len(rows), len(names)), np.nan)
    for index, row in enumerate(rows):
        columns = [column[name] for name in schema_names[row.schema_id]]
        matrix[index, columns] = row.values[: len(columns)]
    return names, matrix


def finding_event(key: tuple[str, str], change: Change, finding_id: int, now: float) -> Event:
    """The JSON a webhook receives for one finding change."""
    gateway, asset = key
    event: Event = {
        "type": "drift_finding",
        "action": change.action,
        "severity": "info",
        "finding_id": finding_id,
        "gateway": gateway,
        "asset": asset,
        "cause": change.cause,
        "t": now,
    }
    detection = change.detection
    if detection is not None:
        event.update(
            features=list(detection.features),
            rate_pct_per_week=detection.rate_pct_per_week,
            since=day_text(detection.since_day),
            weeks=round(detection.weeks, 1),
            summary=summary(detection),
            recommendation=recommendation(detection),
            evidence=store.evidence(detection),
        )
    else:
        event["summary"] = f"{asset}: the drift of {change.cause} went away; finding closed"
    return event


def last_complete_day(now: float) -> int:
    """Yesterday (UTC): a day's aggregates are taken once it is over."""
    return day_of(now) - 1


async def drift_forever(
    database: Database,
    settings: DriftSettings,
    notify: Callable[[Event], object],
    clock: Callable[[], float] = time.time,
) -> None:
    """The receiver's periodic task: a run every `settings.every_s`, its events to `notify`."""
    while True:
        now = clock()
        started = time.monotonic()
        try:
            run = await run_drift(database, settings.params, last_day=last_complete_day(now),
                                  now=now)  # fmt: skip
        except DatabaseError as exc:
            log.warning("drift_run_failed", reason=str(exc))
        except Exception:  # never end the periodic task: the next run may do better
            log.exception("drift_run_failed")
        else:
            for event in run.events:
                notify(event)
            log.info("drift_run", assets=run.assets, days_updated=run.days_updated,
                     events=len(run.events), failures=run.failures,
                     seconds=round(time.monotonic() - started, 2))  # fmt: skip
        await asyncio.sleep(settings.every_s)
