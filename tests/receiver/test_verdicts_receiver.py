"""An operator's verdict travels over the uplink (issue 14, item 5): the appliance on the demo
rig, a real mosquitto and the real receiver on SQLite. The verdict reaches the receiver's
database exactly once, and its export labels the episode's windows by it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import aiohttp
from broker import Broker
from receiver_helpers import RunningReceiver, receiver_settings, wait_until
from waiting import running_page

from appliance.config import HttpConfig
from appliance.records import Alert
from appliance.rig.demo import demo_config, demo_uplink
from appliance.status import StatusBoard
from receiver.db import Database, open_database
from receiver.export import export_features
from receiver.service import Receiver

GATEWAY = "demo-gw"
ASSET = "compressor-2"
TOKEN = "test-token-0123456789abcdef"
DEADLINE_S = 90.0


def recent(board: StatusBoard) -> list[Alert]:
    assert board.alerts is not None
    return list(board.alerts.recent)


def open_raise(board: StatusBoard) -> Alert | None:
    raised = [a for a in recent(board) if a.asset == ASSET and a.kind == "anomaly_raised"]
    return raised[-1] if raised and board.asset(ASSET).alarm is not None else None


def cleared_by_verdict(board: StatusBoard) -> Alert | None:
    return next((a for a in recent(board) if "said it was not a fault" in a.message), None)


async def episode_stored(database: Database, raised_t: float, cleared_t: float, n: int) -> bool:
    """The receiver has the verdict and all n windows of the episode."""
    alerts = await database.judging_alerts(GATEWAY, ASSET)
    if not any(a.kind == "anomaly_not_a_fault" for a in alerts):
        return False
    features = await database.features(GATEWAY, ASSET, raised_t, cleared_t)
    return len(features) == n


async def test_a_verdict_reaches_the_receiver_and_labels_its_export(
    make_broker: Callable[..., Broker], tmp_path: Path
) -> None:
    broker = make_broker(users=(GATEWAY,))
    config = demo_config(
        tmp_path, ["imbalance=0.5"], demo_uplink(broker.url(GATEWAY), broker.ca_path)
    )
    config = config.model_copy(update={"http": HttpConfig(port=0, token=TOKEN)})
    settings = receiver_settings(broker, f"sqlite:///{tmp_path / 'receiver.db'}")
    database = await open_database(settings.db_url)
    receiver = RunningReceiver(Receiver(settings, database), database)
    await receiver.start()
    try:
        async with running_page(config) as (url, board), aiohttp.ClientSession() as http:
            await wait_until(lambda: open_raise(board) is not None, "an alarm", DEADLINE_S)
            raised = open_raise(board)
            assert raised is not None
            body = {"asset": ASSET, "t": raised.t, "verdict": "not_a_fault", "by": "anna"}
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with http.post(url + "api/alerts/verdict", json=body, headers=headers) as r:
                assert r.status == 200, await r.text()
            await wait_until(lambda: cleared_by_verdict(board) is not None, "the clear")
            cleared = cleared_by_verdict(board)
            assert cleared is not None
            learnt = re.search(r"learnt (\d+) of its windows", cleared.message)
            assert learnt is not None, cleared.message
            windows = int(learnt.group(1))
            await wait_until(
                lambda: episode_stored(database, raised.t, cleared.t, windows),
                "the verdict and the episode's windows at the receiver",
                DEADLINE_S,
            )
        export = await export_features(database, GATEWAY, ASSET, tmp_path / "c2.npz")
        verdict_alerts = [
            a
            for a in await database.judging_alerts(GATEWAY, ASSET)
            if a.kind.startswith("anomaly_n")
        ]
    finally:
        await receiver.stop()
        await database.close()

    [record] = verdict_alerts
    assert f"(t={raised.t!r}) was not a fault, said anna" in record.message
    labels = export.labels()
    in_episode = (export.window_end >= raised.t) & (export.window_end < cleared.t)
    assert int(in_episode.sum()) == windows > 0
    assert set(labels[in_episode]) == {"not_a_fault"}
    assert set(labels[export.window_end < raised.t]) <= {""}
    assert bool(export.anomalous[in_episode].all()), "the gateway scored them anomalous"
