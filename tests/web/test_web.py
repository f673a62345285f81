"""The status page's HTTP API on the running demo rig: JSON, /metrics, the token (model
uploads: test_models_api.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from waiting import wait_until
from web_helpers import DEADLINE_S, TOKEN, metric_families, running_rig

DEMO_I2C = (("tmp117", 0x48), ("ina219", 0x40), ("tmp117", 0x49), ("ina219", 0x41))


async def test_status_json_metrics_and_token(tmp_path: Path) -> None:
    async with running_rig(tmp_path, []) as (url, board), aiohttp.ClientSession() as http:
        scored = board.wait_for(
            lambda: all(a.latest_score is not None for a in board.assets.values())
        )
        await asyncio.wait_for(scored, DEADLINE_S)  # woken by each scored window, no polling
        async with http.get(url + "api/status") as response:
            assert response.status == 200
            status = await response.json()
        assert {a["name"] for a in status["assets"]} == {"pump-1", "compressor-2"}
        assert all(a["score"]["threshold"] > 0 for a in status["assets"])
        assert status["store"]["rows_written"] >= 0 and status["actions_enabled"] is True
        assert status["process"]["rss_bytes"] > 0

        assert status["models"] == {"enabled": False}

        by_name = await metric_families(http, url)
        assert {"appliance_samples", "appliance_anomaly_score", "appliance_store_bytes"} <= set(
            by_name
        )
        samples = by_name["appliance_samples"].samples
        assert {s.labels["asset"] for s in samples} == {"pump-1", "compressor-2"}
        assert len(by_name["appliance_samples"].samples) == 10  # 2 assets x 5 channels
        assert not any(name.startswith("appliance_model_") for name in by_name)
        i2c = {
            (s.labels["bus"], s.labels["sensor"]) for s in by_name["appliance_i2c_reads"].samples
        }
        assert i2c == {("bus1", f"{chip}@0x{a:02x}") for chip, a in DEMO_I2C}, "short labels"

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
        async with http.post(url + "api/models", data=b"bundle", headers=right) as response:
            assert response.status == 403
            assert "no [models] table" in (await response.json())["error"]

        test_sms = url + "api/sms/test"
        async with http.post(test_sms, json={"by": "anna"}) as response:
            assert response.status == 401
        async with http.post(test_sms, json={"by": "anna"}, headers=right) as response:
            assert response.status == 200
            assert (await response.json())["queued"] == 1
        await wait_until(
            lambda: any(s.text.startswith("TEST demo-gw: ") for s in board.sms.would_have_sent),
            "the test SMS at the emulated modem",
        )


async def test_without_a_token_actions_are_disabled(tmp_path: Path) -> None:
    async with running_rig(tmp_path, [], token=None) as (url, _), aiohttp.ClientSession() as http:
        async with http.get(url + "api/status") as response:
            assert (await response.json())["actions_enabled"] is False
        headers = {"Authorization": "Bearer anything-at-all-here"}
        async with http.post(url + "api/alerts/ack", json={"id": "x"}, headers=headers) as r:
            assert r.status == 403
            assert "disabled" in (await r.json())["error"]
