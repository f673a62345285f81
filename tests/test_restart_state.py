"""What the operator sees survives a restart (issue 12, part 3): an alarm open at shutdown is
shown at once after a start on the same database (status board, /api/status, /metrics, open
alerts with their acknowledgement), without a new raise or a second SMS; acknowledgements are
kept in the store and leave over the uplink."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from broker import Broker
from uplink_helpers import FakeReceiver, running
from waiting import running_page, wait_until

from appliance.config import ApplianceConfig, HttpConfig
from appliance.detect.routing import alert_id
from appliance.records import Alert
from appliance.rig.demo import demo_config, demo_uplink
from appliance.status import StatusBoard
from appliance.store import Store, StoreSettings
from appliance.summary import SummaryPrinter

TOKEN = "test-token-0123456789abcdef"
ASSET = "compressor-2"
ALERT_ID = f"{ASSET}||anomaly"
FAULTS = ["imbalance=0.5"]


def rig_config(
    tmp_path: Path, uplink: dict[str, Any] | None = None, *, models: bool = False
) -> ApplianceConfig:
    config = demo_config(tmp_path, FAULTS, uplink, models=models)
    return config.model_copy(update={"http": HttpConfig(port=0, token=TOKEN)})


@dataclass
class AtStart:
    """The board as the page starts listening, before any stage runs (so before any window)."""

    alarm: str | None = None
    open_alerts: list[str] = field(default_factory=list)
    summary: str = ""


@contextlib.asynccontextmanager
async def running_rig(
    config: ApplianceConfig, at_start: AtStart | None = None
) -> AsyncIterator[tuple[str, StatusBoard]]:
    """The appliance with its page on a free port; yields (URL, board) once the page listens.
    `at_start` gets what the board showed at that moment."""

    def started(board: StatusBoard) -> None:
        if at_start is not None:
            at_start.alarm = board.asset(ASSET).alarm
            at_start.open_alerts = [alert_id(a) for a in board.alerts.open.values()]
            at_start.summary = SummaryPrinter(board, io.StringIO()).render(1.0)

    async with running_page(config, started) as (url, board):
        yield url, board


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200
        return await response.json()


async def metric_lines(http: aiohttp.ClientSession, url: str) -> list[str]:
    async with http.get(url + "metrics") as response:
        return (await response.text()).splitlines()


def in_alarm(board: StatusBoard) -> bool:
    router = board.alerts
    return board.asset(ASSET).alarm is not None and router is not None and bool(router.open)


async def post_ack(http: aiohttp.ClientSession, url: str, by: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"id": ALERT_ID, "by": by}
    async with http.post(url + "api/alerts/ack", json=body, headers=headers) as response:
        return response.status, await response.json()


async def acknowledge(http: aiohttp.ClientSession, url: str, by: str) -> Any:
    status, answer = await post_ack(http, url, by)
    assert status == 200, answer
    return answer


async def stored_alerts(path: Path) -> list[tuple[int, Alert]]:
    async with await Store.open(StoreSettings(path=path)) as store:
        return [
            (seq, record)
            for seq, record in await store.history.outbox(limit=1_000_000)
            if isinstance(record, Alert)
        ]


async def sms_counts(path: Path) -> tuple[int, int, int]:
    """(sent, queued, given up) over the whole SMS queue."""
    async with await Store.open(StoreSettings(path=path)) as store:
        stats = await store.sms_queue.sms_stats()
    return stats.sent, stats.queued, stats.given_up


async def test_an_alarm_open_at_shutdown_is_shown_at_once_after_a_restart(
    tmp_path: Path,
) -> None:
    config = rig_config(tmp_path)
    db = Path(config.store.path)
    async with running_rig(config) as (url, board), aiohttp.ClientSession() as http:
        await wait_until(lambda: in_alarm(board), f"{ASSET} in alarm", deadline_s=90.0)
        before = await get_json(http, url + "api/status")
        refused = await post_ack(http, url, "anna\x1b[2J")
        ack = await acknowledge(http, url, "anna")
        await wait_until(lambda: board.sms.sent >= 1, "the alarm's SMS sent")
    assert refused[0] == 400 and refused[1]["error"].startswith("by: ")
    [raised] = [a for a in before["alerts"]["open"] if a["id"] == ALERT_ID]
    severity = next(a["alarm"] for a in before["assets"] if a["name"] == ASSET)

    at_start = AtStart()
    async with running_rig(config, at_start) as (url, board), aiohttp.ClientSession() as http:
        status = await get_json(http, url + "api/status")
        metrics = await metric_lines(http, url)
        await wait_until(lambda: board.asset(ASSET).scores >= 3, "three windows scored again")
        later = await get_json(http, url + "api/status")

    asset = next(a for a in status["assets"] if a["name"] == ASSET)
    assert (at_start.alarm, at_start.open_alerts) == (severity, [ALERT_ID]), "before any window"
    assert asset["alarm"] == severity
    assert f'appliance_alarm{{asset="{ASSET}"}} 1.0' in metrics
    assert {"appliance_alerts_open 1.0", "appliance_alerts_acknowledged 1.0"} <= set(metrics)
    [reopened] = [a for a in status["alerts"]["open"] if a["id"] == ALERT_ID]
    assert (reopened["t"], reopened["kind"], reopened["message"]) == (
        raised["t"],
        raised["kind"],
        raised["message"],
    )
    shown_ack = {key: value for key, value in reopened["ack"].items() if key != "at_text"}
    assert shown_ack == {"by": "anna", "at": ack["at"], "alert_t": raised["t"]}
    state_words = "ALARM" if severity == "critical" else "WARNING"  # the page's words
    assert f"{ASSET:14s} {state_words}: " in at_start.summary
    assert "[acknowledged by anna]" in at_start.summary
    assert next(a["alarm"] for a in later["assets"] if a["name"] == ASSET) is not None
    assert [a["ack"]["by"] for a in later["alerts"]["open"] if a["id"] == ALERT_ID] == ["anna"]

    alerts = [alert for _, alert in await stored_alerts(db)]
    assert [a.kind for a in alerts if a.kind == "anomaly_raised"] == ["anomaly_raised"]
    [acked] = [a for a in alerts if a.kind == "anomaly_acknowledged"]
    assert acked.asset == ASSET and acked.t == ack["at"] and "acknowledged by anna" in acked.message
    assert ALERT_ID in acked.message
    assert await sms_counts(db) == (1, 0, 0), "one SMS for the episode, none after the restart"


async def test_a_restart_from_a_store_without_saved_alerts_rebuilds_them_from_the_detector(
    tmp_path: Path,
) -> None:
    """A database written before the alert state was saved (an upgrade), or whose row is
    unreadable: the open alarm comes back from the detector's episode, with its raise time."""
    config = rig_config(tmp_path)
    db = Path(config.store.path)
    async with running_rig(config) as (url, board):
        await wait_until(lambda: in_alarm(board), f"{ASSET} in alarm", deadline_s=90.0)
        raised_t = board.alerts.open[(ASSET, None, "anomaly")].t
    async with await Store.open(StoreSettings(path=db)) as store:
        await store.detector_states.delete_state("", "alert_router")

    async with running_rig(config) as (url, board), aiohttp.ClientSession() as http:
        status = await get_json(http, url + "api/status")

    [reopened] = [a for a in status["alerts"]["open"] if a["id"] == ALERT_ID]
    assert reopened["t"] == raised_t and "found open at a restart" in reopened["message"]
    assert next(a["alarm"] for a in status["assets"] if a["name"] == ASSET) is not None


async def test_an_acknowledgement_reaches_the_receiver_over_the_uplink(
    make_broker: Callable[..., Broker], tmp_path: Path
) -> None:
    broker = make_broker(users=("demo-gw",))
    config = rig_config(tmp_path, demo_uplink(broker.url("demo-gw"), broker.ca_path))
    receiver = FakeReceiver(broker, gateway="demo-gw")
    async with (
        running(receiver.run()),
        running_rig(config) as (url, board),
        aiohttp.ClientSession() as http,
    ):
        await wait_until(lambda: in_alarm(board), f"{ASSET} in alarm", deadline_s=90.0)
        await acknowledge(http, url, "bob")

        def received() -> list[Alert]:
            return [
                r
                for r in receiver.records.values()
                if isinstance(r, Alert) and r.kind == "anomaly_acknowledged"
            ]

        await wait_until(lambda: bool(received()), "the acknowledgement at the receiver")
    [acked] = received()
    assert acked.asset == ASSET and "acknowledged by bob" in acked.message


def saved_open_alerts(db: Path) -> list[str]:
    """The ids of the open alerts in the saved alert-router state (read-only, while it runs)."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        try:
            rows = connection.execute(
                "SELECT state_json FROM detector_state WHERE asset = '' AND kind = 'alert_router'"
            ).fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []
    if not rows:
        return []
    state = json.loads(rows[0][0])
    return [
        f"{a['asset']}|{a['channel'] or ''}|{a['kind'].rsplit('_', 1)[0]}" for a in state["open"]
    ]


async def test_after_a_crash_just_after_the_raise_the_alarm_is_neither_lost_nor_raised_again(
    tmp_path: Path,
) -> None:
    """SIGKILL seconds after the raise, long before the next detector-state save (every 60 s):
    the alert stage saved what it passed on, so the restarted detector continues the episode
    instead of raising it again (a second alert record and a second SMS for the same episode)."""
    db = tmp_path / "appliance.db"
    command = [sys.executable, "-m", "appliance.cli", "demo", "--data-dir", str(tmp_path)]
    command += ["--http", "127.0.0.1:0", "--summary-every", "60", "--fault", FAULTS[0]]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_until(
            lambda: ALERT_ID in saved_open_alerts(db) or process.returncode is not None,
            "the raise saved by the alert stage",
            deadline_s=90.0,
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
    assert process.returncode == -9, "killed, not stopped"

    config = rig_config(tmp_path, models=True)
    async with running_rig(config) as (url, board), aiohttp.ClientSession() as http:
        status = await get_json(http, url + "api/status")
        await wait_until(lambda: board.asset(ASSET).scores >= 5, "five windows scored again")
        assert board.asset(ASSET).alarm is not None

    assert next(a["alarm"] for a in status["assets"] if a["name"] == ASSET) is not None
    assert [a["id"] for a in status["alerts"]["open"]] == [ALERT_ID]
    alerts = [alert for _, alert in await stored_alerts(db)]
    kinds = [a.kind for a in alerts if a.asset == ASSET]
    follow_ups = kinds.count("anomaly_diagnosed")  # the diagnosis naming the fault later
    assert [kind for kind in kinds if kind != "anomaly_diagnosed"] == ["anomaly_raised"]
    sent, queued, given_up = await sms_counts(db)
    assert sent + queued + given_up == 1 + follow_ups, "one SMS for the raise"
