"""The status board's snapshot on a hand-built board (the stages' own status objects, no event
loop), the summary rendered from it, and the board's change event."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.capture.i2c import I2cStats, SensorStats
from appliance.capture.serial_link import SerialStats
from appliance.detect.acks import AlertAcks
from appliance.detect.routing import AlertRouter, run_alert_stage
from appliance.ota.manager import ModelsStatus, Outcome
from appliance.records import Alert, FeatureVector, Score
from appliance.sms.modem import ModemHealth
from appliance.sms.policy import PolicyCounts
from appliance.sms.sender import SmsStatus
from appliance.status import StatusBoard, UplinkStatus
from appliance.status_snapshot import AckSnapshot, overview, snapshot
from appliance.store import StoredRecord, StoreStats
from appliance.summary import SummaryPrinter
from appliance.web.metrics import metrics_registry, render_metrics
from appliance.web.snapshot import WebState

T0 = 1_700_000_000.0
RAISED = Alert("pump-1", T0 + 5, "critical", "anomaly_raised", "pump-1 anomalous")
FLATLINE = Alert("pump-1", T0 + 6, "warning", "flatline_raised", "stuck", channel="temp")


def built_board() -> StatusBoard:
    """A board as the composition root would fill it, every stage's entry written by hand."""
    board = StatusBoard("gw-1", started_utc=T0)
    pump = board.asset("pump-1")
    pump.samples.update(vib=1000, temp=10)
    pump.vectors, pump.scores, pump.anomalous_windows = 7, 6, 2
    pump.latest_score = Score("pump-1", T0 + 5, "m-1", 0.9, 0.5, True, ("vib.rms",))
    pump.alarm = "critical"
    pump.sensor_faults["temp"] = ["flatline"]
    router = AlertRouter("gw-1", ["pump-1/vib", "pump-1/temp"], ["pump-1"])
    router.route(T0 + 6, [RAISED, FLATLINE])
    board.alerts = router
    acks = AlertAcks()
    asyncio.run(acks.acknowledge("pump-1||anomaly", RAISED, "anna", T0 + 7))
    board.acks = acks
    board.serial["mcu0"] = SerialStats(frames=40, crc_errors=1, connected=True)
    board.i2c["bus1"] = I2cStats({"bme": SensorStats("bme", reads=9, read_errors=1)})
    board.store = StoreStats(rows_written=12, bytes=4096, evicted_by_age=2, evicted_by_size=1)
    board.queues["vectors"] = queue = asyncio.Queue[int]()
    queue.put_nowait(1)
    board.queue_full["store"] = 3
    board.uplink = UplinkStatus("mqtt://broker:1883", "receiver", connections=3, last_seq=9)
    board.uplink.backlog_records, board.uplink.backlog_oldest_utc = 4, T0 + 10
    modem = ModemHealth(path="/dev/ttyUSB2", connected=True, registration=1, signal_rssi=20)
    board.sms = SmsStatus(modem, recipients=1, queued=1, sent=2, policy=PolicyCounts(alerts=3))
    models = ModelsStatus(installs=1)
    models.active["pump-1"], models.origin["pump-1"] = "m-1", "config"
    models.outcomes.append(Outcome(True, "install", "inbox", "pump-1", "m-1", "ok", at=T0))
    board.models = models
    return board


def test_snapshot_copies_every_stage_entry() -> None:
    status = snapshot(built_board(), T0 + 30)

    assert (status.gateway_id, status.now, status.uptime_s) == ("gw-1", T0 + 30, 30.0)
    (pump,) = status.assets
    assert pump.samples == {"vib": 1000, "temp": 10} and pump.scores == 6
    assert pump.sensor_faults == {"temp": ("flatline",)} and pump.alarm == "critical"
    assert status.alerts is not None
    opened = {a.id: a for a in status.alerts.open}
    assert set(opened) == {"pump-1||anomaly", "pump-1|temp|flatline"}
    assert opened["pump-1||anomaly"].ack == AckSnapshot("anna", T0 + 7, RAISED.t)
    assert opened["pump-1|temp|flatline"].ack is None
    assert status.alerts.counts == {"anomaly_raised": 1, "flatline_raised": 1}
    assert status.serial["mcu0"].frames == 40 and status.serial["mcu0"].connected
    assert [(s.name, s.reads, s.errors) for s in status.i2c["bus1"]] == [("bme", 9, 1)]
    assert status.store is not None and status.store.evicted == 3
    assert status.queues == {"vectors": 1} and status.queue_full == {"store": 3}
    assert status.uplink is not None
    assert (status.uplink.reconnects, status.uplink.backlog_age_s) == (2, 20.0)
    assert status.sms is not None and status.sms.modem.ready
    assert (status.sms.modem.signal_dbm, status.sms.modem.registration) == (-73, "home")
    assert status.sms.policy is not None and status.sms.policy.alerts == 3
    assert status.models is not None and status.models.active == {"pump-1": "m-1"}


def test_snapshot_is_a_copy_the_board_does_not_change() -> None:
    board = built_board()
    status = snapshot(board, T0 + 30)
    board.asset("pump-1").samples["vib"] += 500
    board.asset("pump-1").sensor_faults["temp"].append("dropout")
    assert board.store is not None and board.uplink is not None
    board.store.rows_written = 99
    board.uplink.connected = True
    assert isinstance(board.alerts, AlertRouter)
    board.alerts.route(T0 + 40, [Alert("pump-1", T0 + 40, "critical", "anomaly_cleared", "ok")])

    assert status.assets[0].samples["vib"] == 1000
    assert status.assets[0].sensor_faults["temp"] == ("flatline",)
    assert status.store is not None and status.store.rows_written == 12
    assert status.uplink is not None and not status.uplink.connected
    assert status.alerts is not None and len(status.alerts.open) == 2
    with pytest.raises(AttributeError):
        status.uptime_s = 0.0  # type: ignore[misc]


def test_snapshot_of_a_bare_board() -> None:
    status = snapshot(StatusBoard("gw-2", started_utc=T0), T0 + 1)
    assert status.assets == () and status.serial == {} and status.i2c == {}
    assert status.alerts is None and status.store is None and status.uplink is None
    assert status.sms is None and status.models is None


def test_summary_renders_the_snapshot() -> None:
    board = built_board()
    text = SummaryPrinter(board, io.StringIO()).render_snapshot(snapshot(board, T0 + 30), 1.0)
    assert text.startswith("── gw-1  up 30 s ─")
    assert "alerts: 2 open, 2 since start" in text
    assert "[acknowledged by anna]" in text and "[not acknowledged]" in text
    assert "ALARM: score 0.900 over threshold 0.500 while temp flatline" in text
    assert "store: rows 12  4.1 kB  evicted 3" in text
    assert "backlog 4 records, oldest 20 s old" in text
    assert "queues: vectors 1  (full waits: {'store': 3})" in text
    assert "sms: modem /dev/ttyUSB2 up (home" in text


def test_summary_says_states_in_the_pages_words_and_values_with_their_units() -> None:
    """The terminal says what the page's header and cards say (status_snapshot's states and
    overview), with the config's units on the sample rates and the features, and times with
    their date and zone."""
    board = built_board()
    pump = board.asset("pump-1")
    pump.units.update(vib="g", temp="degC")
    names = ("vib.rms", "vib.peak", "vib.crest_factor", "temp.mean")
    pump.latest = FeatureVector("pump-1", T0 + 5, names, np.array([0.512, 1.37, 2.7, 41.25]))
    fan = board.asset("fan-3")
    fan.samples["vib"] = 5
    fan.model = "commissioning (12 of 600 windows)"
    fan.latest = FeatureVector("fan-3", T0 + 29, ("vib.rms",), np.array([0.1]))
    printer = SummaryPrinter(board, io.StringIO())
    status = snapshot(board, T0 + 30)
    lines = printer.render_snapshot(status, 10.0).splitlines()

    states = {asset.name: asset.state for asset in status.assets}
    assert lines[1] == f"ALARM: {overview(status).headline}" == "ALARM: 1 machine in alarm: pump-1"
    for name in ("pump-1", "fan-3"):
        line = next(line for line in lines if line.startswith(name))
        assert line.split(None, 1)[1] == f"{states[name].words.upper()}: {states[name].reason}"
    assert states["fan-3"].condition == "commissioning"
    assert "    vectors 7  vib (g) 100/s  temp (°C) 1.0/s" in lines
    assert "    vib            rms 0.512 g  peak 1.37 g  crest factor 2.70" in lines
    assert "    temp           mean 41.2 °C" in lines
    assert any(re.match(r"  open \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC critical", x) for x in lines)
    final = printer.render_snapshot(status, None)
    assert "── gw-1  final 30 s" in final and "vib (g) 1000 samples" in final


async def test_wait_changed_returns_after_the_next_change() -> None:
    board = StatusBoard("gw-3")
    waiter = asyncio.create_task(board.wait_changed())
    await asyncio.sleep(0)  # the waiter is waiting now
    assert not waiter.done()
    board.changed()
    await asyncio.wait_for(waiter, 1.0)

    later = asyncio.create_task(board.wait_changed())  # a change before it began does not count
    await asyncio.sleep(0)
    assert not later.done()
    board.changed()
    await asyncio.wait_for(later, 1.0)


async def test_wait_for_checks_the_condition_at_each_change() -> None:
    board = StatusBoard("gw-4")
    pump = board.asset("pump-1")
    waiting = asyncio.create_task(board.wait_for(lambda: pump.scores >= 2))
    for _ in range(2):
        await asyncio.sleep(0)
        assert not waiting.done()
        pump.scores += 1
        board.changed()
    await asyncio.wait_for(waiting, 1.0)


def test_page_json_and_metrics_render_the_same_snapshot(tmp_path: Path) -> None:
    board = built_board()
    state = WebState(board, tmp_path, token_set=False)
    page = state.snapshot()
    text = render_metrics(metrics_registry(state)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}

    ids = {a["id"]: a["ack"] for a in page["alerts"]["open"]}
    assert ids == {
        "pump-1||anomaly": {
            "by": "anna",
            "at": T0 + 7,
            "alert_t": RAISED.t,
            "at_text": "2023-11-14 22:13:27 UTC",
        },
        "pump-1|temp|flatline": None,
    }
    assert [a["id"] for a in page["assets"][0]["alerts"]] == list(ids)
    assert page["assets"][0]["sensor_faults"] == {"temp": ["flatline"]}
    assert page["store"]["evicted"] == 3 and page["queues"] == {"vectors": 1}
    assert page["sms"]["registration"] == "home" and page["models"]["installs"] == 1
    assert isinstance(board.models, ModelsStatus)  # the page shows what MQTT answers
    assert page["models"]["outcomes"] == [
        {**o.to_dict(), "at_text": "2023-11-14 22:13:20 UTC"} for o in board.models.outcomes
    ]
    assert families["appliance_alerts_open"].samples[0].value == 2
    assert families["appliance_alerts_acknowledged"].samples[0].value == 1
    assert families["appliance_store_rows_written"].samples[0].value == 12
    assert families["appliance_modem_signal_dbm"].samples[0].value == -73


async def test_the_alert_stage_signals_each_routed_batch() -> None:
    board = StatusBoard("gw-5")
    router = AlertRouter("gw-5", ["pump-1/vib"], ["pump-1"])
    board.alerts = router
    alerts_in: asyncio.Queue[Alert] = asyncio.Queue()
    out: asyncio.Queue[StoredRecord] = asyncio.Queue()
    stage = asyncio.create_task(run_alert_stage(router, alerts_in, out, on_routed=board.changed))
    try:
        shown = asyncio.create_task(board.wait_for(lambda: bool(router.open)))
        await asyncio.sleep(0)  # it checked once and waits for a change
        assert not shown.done()
        alerts_in.put_nowait(RAISED)
        await asyncio.wait_for(shown, 5.0)
        status = snapshot(board, T0 + 10)
        assert status.alerts is not None
        assert [a.id for a in status.alerts.open] == ["pump-1||anomaly"]
    finally:
        stage.cancel()
        await asyncio.gather(stage, return_exceptions=True)
