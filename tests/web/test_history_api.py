"""GET /api/history over real HTTP on a real SQLite store (records written through the store
writer's Recorder): downsampled series keep each bucket's min and max, a range without data is
an empty series, a wrong asset, range, feature or number is refused naming it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from appliance.errors import StoreError
from appliance.features.from_config import build_feature_engines
from appliance.features.spectra import Spectra
from appliance.records import Alert, FeatureVector, Score
from appliance.rig.demo import demo_config
from appliance.status import StatusBoard
from appliance.store import Store, StoreSettings
from appliance.web.history import ChartSources, SharedAnswers
from appliance.web.server import build_app
from appliance.web.snapshot import WebState

ASSET = "pump-1"


@contextlib.asynccontextmanager
async def history_server(tmp_path: Path) -> AsyncIterator[tuple[str, Store, tuple[str, ...]]]:
    """The page's app with its chart routes over a store in tmp_path; yields (base URL, store,
    the pump's feature names)."""
    config = demo_config(tmp_path, [])
    engines = build_feature_engines(config)
    names = {name: engine.feature_names for name, engine in engines.items()}
    async with await Store.open(StoreSettings(tmp_path / "store.db")) as store:
        charts = ChartSources(
            store.history_query,
            Spectra(engines),
            {asset.name: asset for asset in config.assets},
            names,
            ZoneInfo("Europe/Berlin"),
        )
        state = WebState(StatusBoard("gw"), tmp_path, token_set=False)
        server = TestServer(build_app(state, None, None, charts=charts))
        await server.start_server()
        try:
            yield str(server.make_url("/")), store, names[ASSET]
        finally:
            await server.close()


def named(anomalous: object) -> tuple[str, ...]:
    """What an anomalous score names (the alarm text's feature)."""
    return ("accel_y.rms",) if anomalous else ()


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_history_json_keeps_peaks_with_units_episodes_and_alerts(tmp_path: Path) -> None:
    now = time.time()
    async with history_server(tmp_path) as (url, store, names), aiohttp.ClientSession() as http:
        start = now - 3000  # one window a second for the last 50 minutes
        errors = np.full(3000, 1.0)
        errors[1234] = 80.0
        scores = [
            Score(ASSET, start + i, "ae@1", float(e), 3.0, bool(e > 3.0), named(e > 3.0))
            for i, e in enumerate(errors)
        ]
        rms = np.full(3000, 0.05)
        rms[2000] = 1.5
        vectors = [
            FeatureVector(ASSET, start + i, names, np.where(np.arange(len(names)) == 2, v, 0.2))
            for i, v in enumerate(rms)
        ]
        raised = Alert(ASSET, start + 1234, "critical", "anomaly_raised", "pump-1: anomaly")
        cleared = Alert(ASSET, start + 1300, "critical", "anomaly_cleared", "pump-1: normal")
        await store.recorder.add_records([*scores, raised, cleared])
        await store.recorder.add_features(vectors)

        status, body = await get(http, url + "api/history/pump-1?range=1h")
        assert status == 200, body
        assert body["range"] == "1h" and body["end"] - body["start"] == 3600
        assert body["timezone"] == "Europe/Berlin" and body["zone_label"] in ("CET", "CEST")
        score = body["score"]
        assert len(score["t"]) <= 500 and sum(score["windows"]) == 3000
        assert max(score["max"]) == 80.0 and min(score["min"]) == 1.0
        assert set(score["threshold"]) == {3.0}
        features = {f["name"]: f for f in body["features"]}
        # The alarm's named feature first, then RMS per vibration channel and slow means.
        assert list(features) == [
            "accel_y.rms",
            "accel_x.rms",
            "accel_z.rms",
            "bearing_temp.mean",
            "motor_current.mean",
        ]
        assert features["accel_x.rms"]["unit"] == "g"
        assert features["bearing_temp.mean"]["unit"] == "degC"
        assert max(features["accel_x.rms"]["max"]) == 1.5  # 7 windows per point: all read
        assert not body["features_sampled"]
        assert body["episodes"] == [
            {"start": start + 1234, "end": start + 1300, "severity": "critical"}
        ]
        assert [a["kind"] for a in body["alerts"]] == ["anomaly_cleared", "anomaly_raised"]

        status, body = await get(http, url + "api/history/pump-1?range=7d&features=accel_x.peak")
        assert status == 200 and [f["name"] for f in body["features"]] == ["accel_x.peak"]
        assert body["features"][0]["unit"] == "g" and sum(body["score"]["windows"]) == 3000

        status, body = await get(http, url + f"api/history/pump-1?range=24h&end={start - 7200}")
        assert status == 200
        assert body["score"]["t"] == [] and all(f["t"] == [] for f in body["features"])

        status, index = await get(http, url + "api/history")
        assert status == 200 and index["ranges"] == ["1h", "24h", "7d"]
        pump = next(a for a in index["assets"] if a["name"] == ASSET)
        assert pump["units"]["motor_current"] == "A" and "accel_x.rms" in pump["features"]


async def test_history_refuses_what_it_cannot_answer(tmp_path: Path) -> None:
    async with history_server(tmp_path) as (url, _, _), aiohttp.ClientSession() as http:
        refusals = {
            "api/history/pump-9": (404, "no asset 'pump-9' on this gateway"),
            "api/history/pump-1?range=2h": (400, "range: '2h' is not one of 1h, 24h, 7d"),
            "api/history/pump-1?features=accel_x.rms,nope": (400, "'nope' is not a feature"),
            "api/history/pump-1?buckets=5000": (400, "buckets: '5000' is not a number from 10"),
            "api/history/pump-1?end=nan": (400, "end: 'nan' is not a number"),
            "api/spectrum/pump-1/bearing_temp": (404, "no vibration channel 'bearing_temp'"),
            "api/spectrum/pump-9/accel_x": (404, "no asset 'pump-9'"),
        }
        for path, (expected, reason) in refusals.items():
            status, body = await get(http, url + path)
            assert status == expected, (path, body)
            assert reason in body["error"], (path, body)


async def test_clients_asking_the_same_share_one_read() -> None:
    reads: list[int] = []
    release = asyncio.Event()

    async def read() -> bytes:
        reads.append(1)
        await release.wait()
        return b"read %d" % len(reads)

    shared = SharedAnswers()
    waiting = [asyncio.create_task(shared.get("1h", 3600.0, read)) for _ in range(100)]
    release.set()  # the read ends after every client has asked (tasks run in order)
    assert [await task for task in waiting] == [b"read 1"] * 100
    assert await shared.get("1h", 3600.0, read) == b"read 1"  # still fresh
    assert await shared.get("1h", -1.0, read) == b"read 2"  # stale: read again
    assert await shared.get("24h", 3600.0, read) == b"read 3"  # another question


async def test_a_failed_read_is_not_shared_afterwards() -> None:
    async def failing() -> bytes:
        raise StoreError("store x: reading the history of pump-1 failed: disk I/O error")

    async def working() -> bytes:
        return b"{}"

    shared = SharedAnswers()
    with pytest.raises(StoreError, match="disk I/O error"):
        await shared.get("1h", 3600.0, failing)
    assert await shared.get("1h", 3600.0, working) == b"{}"
