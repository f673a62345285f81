"""Appliance releases through the status page: refused without the token or as the wrong body,
installed with it (the appliance is asked to restart into the release), shown in /api/status,
and rolled back by the page's rollback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from release_helpers import release_wheels, seed
from web_helpers import TOKEN

from appliance.ota.release.bundle import pack_release
from appliance.ota.release.install import RESTART_EXIT
from appliance.ota.release.manager import ReleaseManager, ReleaseSettings
from appliance.ota.release.slots import CURRENT
from appliance.status import StatusBoard
from appliance.web.server import build_app
from appliance.web.snapshot import WebState

AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_release_upload_status_and_rollback(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    root = seed(tmp_path / "opt", key, release_wheels(tmp_path / "w1", "1.0"))
    _, data = pack_release(release_wheels(tmp_path / "w2", "2.0"), key)
    settings = ReleaseSettings(root.root, (key.public_key(),), tmp_path / "inbox", 1.0, 60.0,
                               3, 3, with_pip=False)  # fmt: skip
    board, stop = StatusBoard("gw"), asyncio.Event()
    manager = ReleaseManager(settings, board, stop)
    manager.open()
    board.release = manager.status
    app = build_app(WebState(board, tmp_path, token_set=True), TOKEN, None, releases=manager)
    async with TestClient(TestServer(app)) as http:

        async def post(url: str, headers: dict[str, str] | None = None, **body: Any) -> Any:
            async with http.post(url, headers=headers, **body) as response:
                return response.status, await response.json()

        status, answer = await post("/api/release", data=data)
        assert status == 401 and "token" in answer["error"]
        status, answer = await post("/api/release", AUTH, json={"release": "no"})
        assert status == 415
        assert root.linked(CURRENT) == "1.0" and not manager.status.outcomes

        status, answer = await post(
            "/api/release", {**AUTH, "Content-Type": "application/x-tar"}, data=data
        )
        assert (status, answer["accepted"]) == (200, True), answer
        assert stop.is_set() and manager.exit_status == RESTART_EXIT
        assert root.linked(CURRENT) == "2.0"
        async with http.get("/api/status") as response:
            shown = (await response.json())["release"]
        assert shown["trial"]["version"] == "2.0" and shown["release"] == "2.0"

        status, answer = await post("/api/release/rollback", AUTH, json={})
        assert status == 200 and "rolled back to 1.0" in answer["message"], answer
        assert root.linked(CURRENT) == "1.0"
        assert root.load().failed[-1]["reason"] == "rollback requested on the status page"
