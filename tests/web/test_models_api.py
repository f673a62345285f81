"""Model bundles uploaded to the status page of a running appliance with a [models] table:
refused without the right token (nothing installed), refused with the failed check named,
installed, shown in /api/status and /metrics, and rolled back."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ota_helpers import archive
from waiting import wait_until
from web_helpers import TOKEN, metric_families, running_rig

from appliance.ota.archive import MAX_ARCHIVE_BYTES

ASSET = "pump-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def post(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None, **body: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, headers=headers, **body) as response:
        return response.status, await response.json()


async def test_upload_and_rollback_over_http(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    good = archive(tmp_path / "bundles", "ota-2", key)
    unsigned = archive(tmp_path / "bundles", "unsigned", None)
    async with (
        running_rig(tmp_path / "rig", [], models_key=key) as (url, board),
        aiohttp.ClientSession() as http,
    ):
        await wait_until(lambda: board.asset(ASSET).scores >= 8, "8 windows for the canary")
        models = board.models
        configured = models.active[ASSET]
        upload, rollback = url + "api/models", url + "api/models/rollback"

        status, answer = await post(http, upload, data=good)
        assert status == 401 and "token" in answer["error"]
        wrong = {"Authorization": "Bearer not-the-token"}
        assert (await post(http, upload, wrong, data=good))[0] == 401
        assert models.installs == 0 and not models.outcomes
        assert models.active[ASSET] == configured

        status, answer = await post(
            http, upload, AUTH, data=io.BytesIO(b"x" * (MAX_ARCHIVE_BYTES + 1))
        )
        assert status == 413 and "too big" in answer["error"]
        status, answer = await post(http, upload, AUTH, json={"bundle": "no"})
        assert status == 415 and "application/x-tar" in answer["error"]
        assert not models.outcomes

        status, answer = await post(http, upload, AUTH, data=unsigned)
        assert status == 422 and answer["accepted"] is False
        assert answer["error"].startswith("signature: unsigned"), answer
        assert models.active[ASSET] == configured

        status, installed = await post(http, upload, AUTH, data=good)
        assert status == 200, installed
        assert installed["accepted"] is True and installed["asset"] == ASSET
        assert installed["model"].startswith("ota-2-") and installed["source"] == "http:127.0.0.1"
        assert models.active[ASSET] == installed["model"] and models.installs == 1
        await check_status_and_metrics(http, url, installed["model"])

        status, answer = await post(http, rollback, AUTH, json={"asset": ASSET})
        assert status == 200 and answer["accepted"] is True, answer
        assert "rollback requested on the status page" in answer["message"]
        assert models.active[ASSET] == configured and models.previous[ASSET] is None

        status, answer = await post(http, rollback, AUTH, json={"asset": ASSET})
        assert status == 409 and "nothing to roll back" in answer["error"]
        assert (await post(http, rollback, json={"asset": ASSET}))[0] == 401
        assert (models.installs, models.rollbacks, models.refusals) == (1, 1, 2)


async def check_status_and_metrics(http: aiohttp.ClientSession, url: str, model: str) -> None:
    """After one refused and one accepted upload."""
    async with http.get(url + "api/status") as response:
        shown = (await response.json())["models"]
    assert shown["enabled"] is True
    assert shown["assets"][ASSET] == {
        "active": model,
        "origin": "over the air",
        "previous": "config",
    }
    assert [(o["action"], o["accepted"]) for o in shown["outcomes"]] == [
        ("install", True),
        ("install", False),
    ]
    assert (shown["installs"], shown["refusals"], shown["rollbacks"]) == (1, 1, 0)

    by_name = await metric_families(http, url)
    totals = {
        name: by_name[f"appliance_model_{name}"].samples[0].value
        for name in ("installs", "refusals", "rollbacks", "automatic_rollbacks")
    }
    assert totals == {"installs": 1, "refusals": 1, "rollbacks": 0, "automatic_rollbacks": 0}
    info = {s.labels["asset"]: s for s in by_name["appliance_model_info"].samples}
    assert set(info) == {"pump-1", "compressor-2"}
    assert info[ASSET].labels == {"asset": ASSET, "model": model, "origin": "over_the_air"}
    assert info[ASSET].value == 1
