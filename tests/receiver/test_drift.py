"""Drift analysis against a real database (SQLite, and PostgreSQL when a server can be started):
daily aggregates from stored records, a finding raised once and updated across runs, closed when
the trend stops, and nothing on a healthy asset with a daily load cycle."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import numpy as np
import pytest
from receiver_helpers import wait_until

from appliance.records import FeatureVector, Score
from appliance.uplink.schema import SeqRecord, split_range
from receiver.db import Database
from receiver.drift import run as run_module
from receiver.drift import store
from receiver.drift.findings import day_text
from receiver.drift.run import DriftRun, drift_forever, run_drift
from receiver.drift.settings import DriftSettings, TrendParams

DAY0 = 20_400  # 2025-11-08
NAMES = ("accel_y.spectral_energy", "accel_y.rms", "accel_y.excess_kurtosis", "temp.mean")
PER_DAY = 24
PARAMS = TrendParams()


def level(day: float, rise_from: int | None, rise_until: int | None) -> float:
    """The energy's level: flat, then +4 % of the early level a week, then flat again."""
    if rise_from is None or day < rise_from:
        return 1.0
    end = day if rise_until is None else min(day, rise_until)
    return 1.0 + 0.04 / 7.0 * (end - rise_from)


def day_rows(
    day: int, seq: int, rng: np.random.Generator, rise: tuple[int | None, int | None]
) -> list[SeqRecord]:
    """A day of hourly windows: a daily load cycle (+-20 %), noise, and the energy's level."""
    rows: list[SeqRecord] = []
    outlier = 3.0 if day == DAY0 + 14 else 1.0  # one wild day (a sensor knocked, a test run)
    for hour in range(PER_DAY):
        t = (day * 24 + hour) * 3600.0 + 60.0
        load = 1.0 + 0.2 * np.sin(2 * np.pi * hour / 24)
        noise = 1.0 + 0.03 * rng.standard_normal(len(NAMES))
        values = np.array([level(day, *rise) * outlier, 0.5, 0.1, 40.0]) * load * noise
        values[2] = 0.1 + 0.05 * rng.standard_normal()  # kurtosis near 0: relative % meaningless
        rows.append((seq + 2 * hour + 1, FeatureVector("pump-1", t, NAMES, values)))
        error = 0.4 * load * (1 + 0.1 * rng.standard_normal())
        rows.append((seq + 2 * hour + 2, Score("pump-1", t, "ae@sha256:01", error, 1.0, False)))
    return rows


async def store_days(
    db: Database, days: range, rise: tuple[int | None, int | None], gaps: set[int]
) -> None:
    rng = np.random.default_rng(7)
    for day in days:
        seq = (day - DAY0) * 2 * PER_DAY
        if day in gaps:
            continue
        rows = day_rows(day, seq, rng, rise)
        await db.ingest_many(split_range("gw-1", seq, seq + 2 * PER_DAY, rows), 0.0)


async def run_through(db: Database, days: range) -> list[DriftRun]:
    runs = []
    for day in days:
        runs.append(await run_drift(db, PARAMS, last_day=day, now=(day + 1) * 86400.0 + 600))
    return runs


async def findings(db: Database, closed: bool = True) -> list[dict[str, object]]:
    sql = store.drift_sql(db.dialect.name)
    return await db.transaction("reading findings", store.findings, sql, closed)


async def test_a_rise_of_4_percent_a_week_is_found_once_and_updated(db: Database) -> None:
    rise_from = DAY0 + 9
    await store_days(db, range(DAY0, DAY0 + 31), (rise_from, None), gaps={DAY0 + 12, DAY0 + 17})
    runs = await run_through(db, range(DAY0 + 10, DAY0 + 31))

    rows = await findings(db)
    assert [(row["cause"], row["status"]) for row in rows] == [("accel.vibration_level", "open")]
    finding = rows[0]
    assert "accel_y.spectral_energy" in finding["features"]  # type: ignore[operator]
    assert 2.5 <= float(finding["rate_pct_per_week"]) <= 6.0  # type: ignore[arg-type]
    assert abs(int(finding["since_day"]) - rise_from) <= 3  # type: ignore[call-overload]
    assert "inspect the bearing" in str(finding["summary"])
    assert "a week for" in str(finding["summary"])
    opened = [e for run in runs for e in run.events if e["action"] == "opened"]
    assert len(opened) == 1 and opened[0]["finding_id"] == finding["id"]
    assert opened[0]["since"] == day_text(int(finding["since_day"]))  # type: ignore[call-overload]
    assert not [e for run in runs for e in run.events if e["action"] == "closed"]


async def test_a_trend_that_stops_closes_its_finding(db: Database) -> None:
    rise = (DAY0 + 2, DAY0 + 23)
    await store_days(db, range(DAY0, DAY0 + 40), rise, gaps=set())
    runs = await run_through(db, range(DAY0 + 20, DAY0 + 40))

    actions = [e["action"] for run in runs for e in run.events if e["action"] != "updated"]
    assert actions == ["opened", "closed"]
    rows = await findings(db)
    assert [row["status"] for row in rows] == ["closed"]
    assert rows[0]["closed_at"] is not None


async def test_a_healthy_asset_with_a_daily_load_cycle_raises_nothing(db: Database) -> None:
    await store_days(db, range(DAY0, DAY0 + 30), (None, None), gaps={DAY0 + 5})
    runs = await run_through(db, range(DAY0 + 10, DAY0 + 30))

    assert await findings(db) == []
    assert not [e for run in runs for e in run.events]
    assert runs[-1].assets == 1


async def test_aggregates_are_updated_only_for_days_whose_records_changed(db: Database) -> None:
    await store_days(db, range(DAY0, DAY0 + 5), (None, None), gaps={DAY0 + 2})
    first = await run_drift(db, PARAMS, last_day=DAY0 + 4, now=(DAY0 + 5) * 86400.0)
    again = await run_drift(db, PARAMS, last_day=DAY0 + 4, now=(DAY0 + 5) * 86400.0)
    await store_days(db, range(DAY0 + 2, DAY0 + 3), (None, None), gaps=set())  # a late backlog
    late = await run_drift(db, PARAMS, last_day=DAY0 + 4, now=(DAY0 + 5) * 86400.0)

    # the window's 21 days x (features, scores) the first time, empty days included
    assert (first.days_updated, again.days_updated, late.days_updated) == (42, 0, 2)
    sql = store.drift_sql(db.dialect.name)
    series = await db.transaction("read", store.daily_series, sql, "gw-1", "pump-1", DAY0, DAY0 + 4)
    days, medians = series[("accel_y.spectral_energy", "median")]
    assert days == list(range(DAY0, DAY0 + 5))
    assert medians == pytest.approx([1.0] * 5, rel=0.05)
    assert ("anomaly_score@ae@sha256:01", "p95") in series  # per model


async def test_findings_list_as_json(db: Database) -> None:
    await store_days(db, range(DAY0, DAY0 + 25), (DAY0 + 3, None), gaps=set())
    await run_through(db, range(DAY0 + 24, DAY0 + 25))
    rows = await findings(db, closed=False)
    assert len(rows) == 1
    json.dumps(rows)  # what `appliance-receiver drift` prints


async def test_the_periodic_task_hands_its_events_over(db: Database) -> None:
    await store_days(db, range(DAY0, DAY0 + 25), (DAY0 + 3, None), gaps=set())
    events: list[dict[str, object]] = []
    settings = DriftSettings(PARAMS, every_s=3600.0)
    clock = lambda: (DAY0 + 25) * 86400.0 + 60  # noqa: E731 (the day after the data)
    task = asyncio.create_task(drift_forever(db, settings, events.append, clock))
    try:
        await wait_until(lambda: len(events) == 1, "the finding handed over")
    finally:
        task.cancel()
    assert (events[0]["action"], events[0]["cause"]) == ("opened", "accel.vibration_level")


async def test_one_assets_failure_leaves_the_others_analysed(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store_days(db, range(DAY0, DAY0 + 25), (DAY0 + 3, None), gaps=set())
    rows = day_rows(DAY0, 0, np.random.default_rng(1), (None, None))
    other = [(seq + 10_000, replace(record, asset="fan-2")) for seq, record in rows]
    await db.ingest_many(split_range("gw-1", 10_000, 10_000 + len(other), other), 0.0)
    detect = run_module.detect

    def failing(
        series: dict[tuple[str, str], tuple[list[int], list[float]]], params: TrendParams
    ) -> object:
        if all(len(days) == 1 for days, _ in series.values()):  # fan-2: one day of data
            raise ValueError("a bug of ours")
        return detect(series, params)

    monkeypatch.setattr(run_module, "detect", failing)
    run = await run_drift(db, PARAMS, last_day=DAY0 + 24, now=(DAY0 + 25) * 86400.0)
    assert (run.assets, run.failures) == (2, 1)
    assert [e["asset"] for e in run.events] == ["pump-1"]
