"""The status page's HTTP API on the running demo rig: JSON, /metrics, the token."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from web_helpers import TOKEN, running_rig, wait_until


async def test_status_json_metrics_and_token(tmp_path: Path) -> None:
    async with running_rig(tmp_path, []) as (url, board), aiohttp.ClientSession() as http:
        await wait_until(
            lambda: all(a.latest_score is not None for a in board.assets.values()),
            "a score per asset",
        )
        async with http.get(url + "api/status") as response:
            assert response.status == 200
            status = await response.json()
        assert {a["name"] for a in status["assets"]} == {"pump-1", "compressor-2"}
        assert all(a["score"]["threshold"] > 0 for a in status["assets"])
        assert status["store"]["rows_written"] >= 0 and status["actions_enabled"] is True
        assert status["process"]["rss_bytes"] > 0

        async with http.get(url + "metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            families = list(text_string_to_metric_families(await response.text()))
        by_name = {f.name: f for f in families}
        assert {"appliance_samples", "appliance_anomaly_score", "appliance_store_bytes"} <= set(
            by_name
        )
        samples = by_name["appliance_samples"].samples
        assert {s.labels["asset"] for s in samples} == {"pump-1", "compressor-2"}
        for family in families:
            assert family.name.startswith("appliance_")
            if family.type == "counter":
                assert all(s.name.endswith("_total") for s in family.samples), family.name
            else:
                assert not any(s.name.endswith("_total") for s in family.samples), family.name
        assert len(by_name["appliance_samples"].samples) == 10  # 2 assets x 5 channels

        ack = url + "api/alerts/ack"
        async with http.post(ack, json={"id": "x", "by": "me"}) as response:
            assert response.status == 401
            assert "token" in (await response.json())["error"]
        wrong = {"Authorization": "Bearer not-the-token"}
        async with http.post(ack, json={"id": "x"}, headers=wrong) as response:
            assert response.status == 401
        right = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(ack, json={"id": "x"}, headers=right) as response:
            assert response.status == 404  # authorised, but no such open alert


async def test_without_a_token_actions_are_disabled(tmp_path: Path) -> None:
    async with running_rig(tmp_path, [], token=None) as (url, _), aiohttp.ClientSession() as http:
        async with http.get(url + "api/status") as response:
            assert (await response.json())["actions_enabled"] is False
        headers = {"Authorization": "Bearer anything-at-all-here"}
        async with http.post(url + "api/alerts/ack", json={"id": "x"}, headers=headers) as r:
            assert r.status == 403
            assert "disabled" in (await r.json())["error"]
