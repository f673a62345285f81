"""/metrics on a hand-built board: prometheus_client's output parsed back with its own parser,
every family's name, type, labels and values checked against what the board holds."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from appliance.capture.i2c import I2cPoller, PolledSensor, build_sensor
from appliance.capture.serial_link import SerialStats
from appliance.detect.routing import AlertRouter
from appliance.ota.manager import ModelsStatus
from appliance.records import Alert, SampleBlock, Score
from appliance.rig.i2c import EmulatedI2cBus
from appliance.status import StatusBoard, UplinkStatus
from appliance.store import StoreStats
from appliance.web.limits import ConnectionStats
from appliance.web.metrics import metrics_registry, render_metrics
from appliance.web.snapshot import WebState

T0 = 1_700_000_000.0
IDENTIFIER = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
"""What a label value is here: a short identifier, never a sentence."""


def i2c_stats() -> I2cPoller:
    """A poller over the emulated bus's TMP117 and INA219, polled once: real SensorStats."""
    bus = EmulatedI2cBus.with_default_chips()
    sensors = [
        PolledSensor(build_sensor("tmp117", bus, 0x48, "bus1"), {"temperature": ("p", "t")}),
        PolledSensor(build_sensor("ina219", bus, 0x40, "bus1"), {"current": ("p", "a")}),
    ]
    poller = I2cPoller(sensors, asyncio.Queue[SampleBlock]())

    async def poll() -> None:
        await poller.check()
        await poller.poll_once()

    asyncio.run(poll())
    return poller


def built_board() -> StatusBoard:
    board = StatusBoard("gw-1", started_utc=T0)
    pump = board.asset("pump-1")
    pump.samples.update(accel_x=1000, temp=10)
    pump.vectors, pump.scores, pump.anomalous_windows, pump.scoring_errors = 7, 6, 2, 1
    pump.latest_score = Score("pump-1", T0 + 5, "m-1", 0.9, 0.5, True)
    pump.alarm = "critical"
    pump.sensor_faults["temp"] = ["flatline"]
    board.asset("fan-2").samples.update(accel_x=5)  # nothing scored yet
    router = AlertRouter("gw-1", ["pump-1/accel_x", "pump-1/temp"], ["pump-1", "fan-2"])
    router.route(T0 + 6, [Alert("pump-1", T0 + 5, "critical", "anomaly_raised", "anomalous")])
    board.alerts = router
    board.serial["mcu0"] = SerialStats(frames=40, crc_errors=1, connected=True)
    board.i2c["bus1"] = i2c_stats().stats
    board.store = StoreStats(rows_written=12, bytes=4096, evicted_by_age=2, evicted_by_size=1)
    board.queues["vectors"] = queue = asyncio.Queue[int]()
    queue.put_nowait(1)
    board.uplink = UplinkStatus("mqtt://broker:1883", "receiver", connections=3, last_seq=9)
    models = ModelsStatus(installs=1)
    models.active["pump-1"], models.origin["pump-1"] = "m-1", "over the air"
    board.models = models
    return board


def scraped(board: StatusBoard, tmp_path: Path) -> dict[str, Metric]:
    state = WebState(board, tmp_path, token_set=False)
    connections = ConnectionStats(open=3, refused=1, malformed=2)
    text = render_metrics(metrics_registry(state, connections)).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: dict[str, Metric], name: str, **labels: str) -> Sample:
    [found] = [s for s in families[name].samples if s.labels == labels]
    return found


@pytest.mark.parametrize(
    ("family", "kind", "labels", "value"),
    [
        ("appliance_samples", "counter", {"asset": "pump-1", "channel": "accel_x"}, 1000),
        ("appliance_feature_vectors", "counter", {"asset": "pump-1"}, 7),
        ("appliance_scoring_errors", "counter", {"asset": "pump-1"}, 1),
        ("appliance_anomaly_score", "gauge", {"asset": "pump-1"}, 0.9),
        ("appliance_anomaly_threshold", "gauge", {"asset": "pump-1"}, 0.5),
        ("appliance_alarm", "gauge", {"asset": "pump-1"}, 1),
        ("appliance_alarm", "gauge", {"asset": "fan-2"}, 0),
        ("appliance_sensor_faults", "gauge", {"asset": "pump-1", "channel": "temp"}, 1),
        ("appliance_serial_connected", "gauge", {"link": "mcu0"}, 1),
        ("appliance_serial_crc_errors", "counter", {"link": "mcu0"}, 1),
        ("appliance_i2c_reads", "counter", {"bus": "bus1", "sensor": "tmp117@0x48"}, 1),
        ("appliance_i2c_read_errors", "counter", {"bus": "bus1", "sensor": "ina219@0x40"}, 0),
        ("appliance_i2c_sensor_failed", "gauge", {"bus": "bus1", "sensor": "tmp117@0x48"}, 0),
        ("appliance_alerts_open", "gauge", {}, 1),
        ("appliance_alerts", "counter", {"kind": "anomaly_raised"}, 1),
        ("appliance_store_bytes", "gauge", {}, 4096),
        ("appliance_store_evicted_rows", "counter", {"reason": "size"}, 1),
        ("appliance_queue_length", "gauge", {"queue": "vectors"}, 1),
        ("appliance_uplink_reconnects", "counter", {}, 2),
        ("appliance_model_installs", "counter", {}, 1),
        ("appliance_model_info", "gauge", {"asset": "pump-1", "model": "m-1",
                                           "origin": "over_the_air"}, 1),
        ("appliance_uptime_seconds", "gauge", {}, None),
        ("appliance_http_connections", "gauge", {}, 3),
        ("appliance_http_connections_refused", "counter", {}, 1),
        ("appliance_http_requests_malformed", "counter", {}, 2),
    ],
)  # fmt: skip
def test_each_family_has_its_type_labels_and_value(
    tmp_path: Path, family: str, kind: str, labels: dict[str, str], value: float | None
) -> None:
    families = scraped(built_board(), tmp_path)

    assert families[family].type == kind
    found = sample(families, family, **labels)
    assert found.name == (f"{family}_total" if kind == "counter" else family)
    if value is not None:
        assert found.value == value


def test_names_and_labels_follow_prometheus_conventions(tmp_path: Path) -> None:
    families = scraped(built_board(), tmp_path)

    for family in families.values():
        assert re.fullmatch(r"appliance_[a-z0-9_]+", family.name), family.name
        assert family.documentation, f"{family.name} has HELP text"
        for s in family.samples:
            assert s.name.endswith("_total") == (family.type == "counter"), s.name
            for name, value in s.labels.items():
                assert re.fullmatch(r"[a-z_]+", name), name
                assert IDENTIFIER.fullmatch(value), f"{s.name}{{{name}={value!r}}}"


def test_values_not_known_yet_are_left_out(tmp_path: Path) -> None:
    families = scraped(built_board(), tmp_path)
    bare = scraped(StatusBoard("gw-2", started_utc=T0), tmp_path)

    assert not any(
        s.labels["asset"] == "fan-2" for s in families["appliance_anomaly_score"].samples
    )
    assert "appliance_inference_seconds" not in families, "no score has timed inference yet"
    assert "appliance_uplink_backlog_age_seconds" not in families, "no backlog"
    assert "appliance_samples" not in bare and "appliance_store_bytes" not in bare
    assert {"appliance_uptime_seconds", "appliance_http_connections"} <= set(bare)


def test_each_page_has_its_own_registry_and_the_global_one_stays_empty(tmp_path: Path) -> None:
    first = WebState(built_board(), tmp_path, token_set=False)
    second = WebState(StatusBoard("gw-2", started_utc=T0), tmp_path, token_set=False)

    one, other = metrics_registry(first), metrics_registry(second)

    assert one is not other
    assert b'asset="pump-1"' in render_metrics(one)
    assert b'asset="pump-1"' not in render_metrics(other)
    assert b"appliance_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)
