"""After a restart: the open alarms come back from the alert router's saved state, and the
detectors and health latches are aligned with it (appliance/detect/restart.py); the SMS rule for
an alarm still open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from appliance.config import ApplianceConfig
from appliance.detect.acks import AlertAcks
from appliance.detect.assets import AssetScoring, States, open_scorings
from appliance.detect.health import AssetHealth
from appliance.detect.restart import STILL_OPEN_NOTE, renotify_open_alarms, restore_alerts
from appliance.detect.routing import ROUTER_STATE, AlertRouter
from appliance.records import Alert
from appliance.rig.demo import demo_config
from appliance.sms.modem import ModemHealth
from appliance.sms.policy import SmsPolicy
from appliance.sms.sender import SmsIntake, SmsStatus
from appliance.sms.settings import sms_settings
from appliance.status import StatusBoard
from appliance.store import Store, StoreSettings
from appliance.wiring import build_health, build_router

RAISED = Alert("compressor-2", 1_000.0, "critical", "anomaly_raised", "compressor-2: anomaly")
FLATLINE = Alert(
    "pump-1", 990.0, "critical", "flatline_raised", "pump-1: accel_x flat", channel="accel_x"
)


@pytest.fixture
def config(tmp_path: Path) -> ApplianceConfig:
    return demo_config(tmp_path, [])


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(StoreSettings(path=tmp_path / "restart.db")) as opened:
        yield opened


class Start:
    """What app.py builds at a start, from `states`."""

    def __init__(self, config: ApplianceConfig) -> None:
        self.board = StatusBoard(config.gateway.id)
        self.router = build_router(config)
        self.health: dict[str, AssetHealth] = build_health(config)
        self.scorings: dict[str, AssetScoring] = {}

    async def open(self, config: ApplianceConfig, store: Store, states: States) -> None:
        self.scorings = await open_scorings(config, store.history, self.board, states)

    def restore(self, states: States) -> None:
        restore_alerts(self.router, states, self.scorings, self.health, self.board, 2_000.0)

    def alarm(self, asset: str) -> str | None:
        detector = self.scorings[asset].detector
        assert detector is not None
        return detector.alarm.severity


def router_state(config: ApplianceConfig, *alerts: Alert) -> States:
    router = build_router(config)
    router.route(max(a.t for a in alerts), list(alerts))
    return {ROUTER_STATE: router.to_state()}


async def test_an_alarm_the_router_passed_on_after_the_last_detector_save_is_kept_open(
    config: ApplianceConfig, store: Store
) -> None:
    """Crash after a raise, before the next detector save: the detector is told, so the next
    anomalous window does not raise (and text) it again, and a normal run clears it."""
    states = router_state(config, RAISED, FLATLINE)
    start = Start(config)
    await start.open(config, store, states)

    start.restore(states)

    assert start.alarm("compressor-2") == "critical"
    assert start.board.asset("compressor-2").alarm == "critical"
    assert start.board.asset("pump-1").sensor_faults == {"accel_x": ["flatline"]}
    assert start.health["pump-1"].open_alarms() == {("accel_x", "flatline"): "critical"}
    assert list(start.router.open.values()) == [RAISED, FLATLINE]


async def test_an_alarm_cleared_after_the_last_detector_save_stays_cleared(
    config: ApplianceConfig, store: Store
) -> None:
    cleared = Alert("compressor-2", 1_100.0, "critical", "anomaly_cleared", "cleared")
    states = router_state(config, RAISED, cleared)
    start = Start(config)
    await start.open(config, store, states)
    detector = start.scorings["compressor-2"].detector
    assert detector is not None
    detector.alarm.align("warning", 900.0)  # as restored from an older detector state

    start.restore(states)

    assert start.alarm("compressor-2") is None and start.board.asset("compressor-2").alarm is None
    assert start.router.open == {}


async def test_without_a_saved_router_state_the_open_alarms_come_from_the_detectors(
    config: ApplianceConfig, store: Store
) -> None:
    start = Start(config)
    await start.open(config, store, {})
    detector = start.scorings["compressor-2"].detector
    assert detector is not None
    detector.alarm.align("critical", 1_234.5)

    start.restore({})

    [alert] = start.router.open.values()
    assert (alert.asset, alert.t, alert.severity, alert.kind) == (
        "compressor-2", 1_234.5, "critical", "anomaly_raised",
    )  # fmt: skip
    assert "found open at a restart" in alert.message
    assert start.board.asset("compressor-2").alarm == "critical"


async def test_an_unreadable_router_state_is_logged_and_rebuilt_from_the_detectors(
    config: ApplianceConfig, store: Store
) -> None:
    states: States = {ROUTER_STATE: {"version": 1, "kind": "alert_router", "open": 7}}
    start = Start(config)
    await start.open(config, store, states)

    with capture_logs() as logs:
        start.restore(states)

    [ignored] = [e for e in logs if e["event"] == "alert_state_ignored"]
    assert "open: must be a list" in ignored["reason"]
    assert start.router.open == {}


async def test_an_open_alarm_whose_source_is_gone_is_dropped_with_a_log_line(
    config: ApplianceConfig, store: Store
) -> None:
    gone = Alert("press-9", 1_000.0, "warning", "anomaly_raised", "press-9: anomaly")
    unknown = Alert("pump-1", 1_000.0, "warning", "dropout_raised", "x", channel="vib_9")
    router = AlertRouter("demo-gw", ["pump-1/vib_9"], ["press-9"])
    router.route(1_000.0, [gone, unknown])
    states: States = {ROUTER_STATE: router.to_state()}
    start = Start(config)
    await start.open(config, store, states)

    with capture_logs() as logs:
        start.restore(states)

    dropped = [e["alert"] for e in logs if e["event"] == "open_alert_dropped_at_restart"]
    assert sorted(dropped) == ["press-9||anomaly", "pump-1|vib_9|dropout"]
    assert start.router.open == {} and start.router.held_open() == {}


# --- SMS after a restart ---------------------------------------------------------------------


def sms_intake(config: ApplianceConfig, store: Store) -> SmsIntake:
    assert config.sms is not None
    settings = sms_settings(config.gateway.id, config.sms)
    status = SmsStatus(ModemHealth(), len(settings.policy.recipients), emulated=True)
    policy = SmsPolicy(settings.policy, [])
    return SmsIntake(policy, store.sms_queue, settings.sender.give_up_after_s, lambda: None, status)


def open_router(config: ApplianceConfig, *alerts: Alert) -> AlertRouter:
    router = build_router(config)
    for alert in alerts:
        router.reopen(alert)
    return router


async def test_an_open_alarm_whose_sms_never_left_is_offered_once_more(
    config: ApplianceConfig, store: Store
) -> None:
    router = open_router(config, RAISED)
    acks = AlertAcks(store.detector_states)

    offered = await renotify_open_alarms(
        router, acks, store.sms_queue, sms_intake(config, store), 2_000.0
    )
    again = await renotify_open_alarms(
        router, acks, store.sms_queue, sms_intake(config, store), 2_100.0
    )

    assert [a.message for a in offered] == [RAISED.message + STILL_OPEN_NOTE]
    assert again == [], "the message queued at the first restart counts at the next one"
    [queued] = await store.sms_queue.pending_sms()
    assert (queued.alert_kind, queued.alert_t) == ("anomaly_raised", RAISED.t)
    assert "still open after a restart" in queued.text


async def test_an_open_alarm_with_its_sms_sent_or_still_due_is_not_sent_again(
    config: ApplianceConfig, store: Store
) -> None:
    intake = sms_intake(config, store)
    await intake.accept([RAISED])
    [queued] = await store.sms_queue.pending_sms()
    router = open_router(config, RAISED)

    still_due = await renotify_open_alarms(
        router, AlertAcks(store.detector_states), store.sms_queue, intake, 2_000.0
    )
    await store.sms_queue.mark_sms_sent(queued.id, 2_001.0)
    sent = await renotify_open_alarms(
        router, AlertAcks(store.detector_states), store.sms_queue, intake, 9e9
    )

    assert still_due == [] and sent == []


async def test_a_queued_sms_that_gives_up_during_the_downtime_is_replaced(
    config: ApplianceConfig, store: Store
) -> None:
    """Down longer than the SMS give-up time: the old message will give up; a new one goes."""
    intake = sms_intake(config, store)
    await intake.accept([RAISED])
    [queued] = await store.sms_queue.pending_sms()
    router = open_router(config, RAISED)

    offered = await renotify_open_alarms(
        router,
        AlertAcks(store.detector_states),
        store.sms_queue,
        sms_intake(config, store),
        queued.give_up_at + 1.0,
    )

    assert len(offered) == 1 and len(await store.sms_queue.pending_sms()) == 2


async def test_an_acknowledged_open_alarm_is_not_sent_again(
    config: ApplianceConfig, store: Store
) -> None:
    router = open_router(config, RAISED)
    acks = AlertAcks(store.detector_states)
    await acks.acknowledge("compressor-2||anomaly", RAISED, "anna", 1_500.0)

    offered = await renotify_open_alarms(
        router, acks, store.sms_queue, sms_intake(config, store), 2_000.0
    )

    assert offered == [] and await store.sms_queue.pending_sms() == []
