"""The fleet page's JSON API (receiver/web/) on a real SQLite database filled through the
receiver's own ingest and status paths: a few gateways (one offline, one in alarm, one with an
open drift finding, one with a hole), asserting what the API says, its order and search, and that
hostile input is refused with a reason. The fill functions serve test_fleet_page.py and
bench/bench_fleet_page.py too."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from receiver_helpers import score, vector

from appliance.records import Alert
from appliance.uplink.schema import SeqRecord, encode_status, split_range
from receiver.db import Database, open_database
from receiver.web.server import build_app
from receiver.web.status_watch import store_status

NOW = 1_767_225_600.0 + 40 * 86400
MODELS = {"pump-1": "ae@sha256:01", "fan-2": "ae@sha256:02"}
FEW = {
    "gw-ok": {},
    "gw-offline": {"state": "offline"},
    "gw-alarm": {"alarm": True},
    "gw-finding": {"finding": True},
    "gw-hole": {"hole": True},
}


def records(lo: int, hi: int, t_end: float, alarm: bool) -> list[SeqRecord]:
    """Seqs lo+1..hi, one a second ending at t_end: vectors and scores of pump-1 and fan-2,
    the last an anomaly_raised alert of pump-1 if `alarm`."""
    rows: list[SeqRecord] = []
    for seq in range(lo + 1, hi + 1):
        t, asset = t_end - (hi - seq), ("pump-1", "fan-2")[seq % 2]
        rows.append((seq, vector(t, asset) if seq % 4 < 2 else score(t, asset)))
    if alarm:
        rows[-1] = (hi, Alert("pump-1", t_end, "critical", "anomaly_raised", "pump-1 anomalous"))
    return rows


async def add_gateway(
    db: Database,
    gateway: str,
    now: float = NOW,
    *,
    state: str = "online",
    alarm: bool = False,
    hole: bool = False,
    finding: bool = False,
    lag_s: float = 30.0,
) -> None:
    """A gateway as the receiver would know it: records ingested, its retained status kept."""
    newest = now - lag_s
    await db.ingest_many(split_range(gateway, 0, 20, records(0, 20, newest - 100, alarm)), now)
    if hole:
        await db.ingest_many(split_range(gateway, 30, 40, records(30, 40, newest, False)), now)
    status = encode_status(gateway, state, version="1.4.0", models=MODELS)
    assert await store_status(db, f"appliance/{gateway}/status", status, now) is None
    if finding:
        await add_finding(db, gateway, "pump-1", now)


async def add_finding(db: Database, gateway: str, asset: str, now: float) -> None:
    """An open drift finding on rms_x, with 8 weeks of daily medians rising 4 % a week."""
    today = int(now // 86400)
    daily = [(gateway, asset, day, "features", "rms_x", 1000, 1.04 ** ((day - today) / 7), 2.0)
             for day in range(today - 56, today)]  # fmt: skip
    finding = (gateway, asset, "vibration_rising", "open", now, now, today - 21, 4.0,
               json.dumps(["rms_x"]), "rms_x has risen 4 % a week for 3 weeks",
               "Inspect the bearing at the next stop", "[]")  # fmt: skip

    postgres = db.dialect.name == "postgresql"
    daily_sql = (
        "INSERT INTO drift_daily (gateway, asset, day, source, name, records, median, p95)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    finding_sql = (
        "INSERT INTO drift_findings (gateway, asset, cause, status, opened_at, updated_at,"
        " since_day, rate_pct_per_week, features_json, summary, recommendation, evidence_json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    if postgres:
        daily_sql = daily_sql.replace("?", "%s")
        finding_sql = (
            finding_sql.replace("features_json", "features")
            .replace("evidence_json", "evidence")
            .replace("?, ?, ?, ?, ?, ?,", "?, ?, ?, ?, to_timestamp(?), to_timestamp(?),")
            .replace("?", "%s")
        )

    def write(connection: Any) -> None:
        connection.cursor().executemany(daily_sql, daily)
        connection.execute(finding_sql, finding)

    await db.transaction("adding a finding", write)


async def fill(db: Database, gateways: dict[str, dict[str, Any]], now: float = NOW) -> None:
    for gateway, options in gateways.items():
        await add_gateway(db, gateway, now, **options)


@contextlib.asynccontextmanager
async def serving(db: Database, clock: Callable[[], float] = lambda: NOW,
                  **options: Any) -> AsyncIterator[str]:  # fmt: skip
    """The fleet page (build_app's `options`) on a free port of 127.0.0.1; its base URL."""
    runner = web.AppRunner(build_app(db, clock, **options))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def fleet_db(any_db_url: str) -> AsyncIterator[Database]:
    """The few gateways, on SQLite and on PostgreSQL."""
    db = await open_database(any_db_url)
    try:
        await fill(db, FEW)
        yield db
    finally:
        await db.close()


@pytest.fixture
async def base_url(fleet_db: Database) -> AsyncIterator[str]:
    async with serving(fleet_db) as url:
        yield url


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json(content_type=None)


def ids(rows: Sequence[dict[str, Any]]) -> list[str]:
    return [row["gateway"] for row in rows]


async def test_the_fleet_lists_every_gateway_worst_first(base_url: str) -> None:
    status, body = await get(f"{base_url}/api/fleet")
    assert status == 200
    assert body["totals"] == {"gateways": 5, "online": 4, "offline": 1, "unknown": 0,
                              "in_alarm": 1, "assets_in_alarm": 1, "open_findings": 1,
                              "with_holes": 1}  # fmt: skip
    assert ids(body["gateways"]) == ["gw-alarm", "gw-offline", "gw-finding", "gw-hole", "gw-ok"]
    rows = {row["gateway"]: row for row in body["gateways"]}
    assert rows["gw-alarm"]["alarm_assets"] == [{"asset": "pump-1", "since": NOW - 30 - 100}]
    assert rows["gw-offline"]["state"] == "offline"
    assert rows["gw-hole"]["holes"] == 1 and rows["gw-hole"]["missing_seqs"] == 10
    assert rows["gw-ok"]["lag_s"] == 30.0 + 100  # its newest record came 100 s before the hole's
    assert rows["gw-ok"]["models"] == MODELS and rows["gw-ok"]["version"] == "1.4.0"
    assert rows["gw-finding"]["open_findings"] == 1


async def test_search_and_pages(base_url: str) -> None:
    _, body = await get(f"{base_url}/api/fleet?q=OFF")
    assert ids(body["gateways"]) == ["gw-offline"] and body["matching"] == 1
    _, first = await get(f"{base_url}/api/fleet?per_page=2")
    _, third = await get(f"{base_url}/api/fleet?per_page=2&page=3")
    assert (first["pages"], len(first["gateways"]), ids(third["gateways"])) == (3, 2, ["gw-ok"])


async def test_a_gateway_with_its_assets_findings_and_weekly_trend(base_url: str) -> None:
    status, body = await get(f"{base_url}/api/gateways/gw-finding")
    assert status == 200
    assert [asset["asset"] for asset in body["assets"]] == ["fan-2", "pump-1"]
    [finding] = body["findings"]
    assert finding["asset"] == "pump-1" and finding["features"] == ["rms_x"]
    weekly = finding["weekly"]["rms_x"]
    assert len(weekly) == 8
    assert all(a["median"] < b["median"] for a, b in itertools.pairwise(weekly))


async def test_an_alarm_shows_on_the_gateway(base_url: str) -> None:
    _, body = await get(f"{base_url}/api/gateways/gw-alarm")
    assert [a["asset"] for a in body["gateway"]["alarm_assets"]] == ["pump-1"]
    assert body["alerts"][0]["kind"] == "anomaly_raised"


async def test_a_status_is_refused_when_it_names_another_gateway(fleet_db: Database) -> None:
    payload = encode_status("gw-ok", "offline")
    assert await store_status(fleet_db, "appliance/gw-alarm/status", payload, NOW) == (
        "gateway_mismatch"
    )
    assert await store_status(fleet_db, "appliance/gw-ok/status", b"{", NOW) is not None


async def test_an_offline_status_keeps_the_models_last_named(fleet_db: Database) -> None:
    will = encode_status("gw-ok", "offline", version="1.4.0")
    assert await store_status(fleet_db, "appliance/gw-ok/status", will, NOW) is None
    async with serving(fleet_db) as url:
        _, body = await get(f"{url}/api/gateways/gw-ok")
    assert (body["gateway"]["state"], body["gateway"]["models"]) == ("offline", MODELS)


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/api/gateways/no-such-gateway", 404, "no gateway 'no-such-gateway'"),
        ("/api/gateways/" + "g" * 200, 400, "at most 128"),
        ("/api/gateways/bad%23id", 400, "must not contain '#'"),
        ("/gateways/bad%00id", 400, "gateway id"),
        ("/api/fleet?page=0", 400, "page: '0' is not a whole number from 1"),
        ("/api/fleet?page=-1", 400, "page"),
        ("/api/fleet?per_page=100000", 400, "per_page"),
        ("/api/fleet?page=1e3", 400, "page"),
        ("/api/fleet?sort=evil", 400, "unknown parameter(s) sort"),
        ("/api/fleet?q=" + "x" * 100, 400, "at most 64"),
        ("/api/fleet?q=" + "x" * 600, 414, "at most 512"),
    ],
)
async def test_hostile_input_is_refused_with_a_reason(
    base_url: str, path: str, status: int, reason: str
) -> None:
    got, body = await get(base_url + path)
    assert got == status
    assert reason in body["error"]


async def test_a_huge_request_line_is_refused(base_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/api/fleet?q={'x' * 20000}") as response:
            assert response.status in (400, 414)
        async with session.post(f"{base_url}/api/fleet", data=b"x") as response:
            assert response.status == 405  # read-only: nothing to write
