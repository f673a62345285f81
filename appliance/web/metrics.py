"""/metrics in the Prometheus text format (0.0.4), written by prometheus_client: a collector
turns the board's snapshot into metric families at each scrape, in the page's own
CollectorRegistry (never the library's global one), beside the page's connection counters
(limits.py ConnectionStats).

Names follow Prometheus conventions: base units in the name (_bytes, _seconds), counters end in
_total, gauges do not. Label values are short identifiers (asset, channel, link, bus, sensor
"tmp117@0x48", kind, reason); the sentences behind them are on the page and in /api/status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance.diagnosis.live import Diagnosed
from appliance.status_snapshot import (
    AlertsSnapshot,
    AssetSnapshot,
    ModelsSnapshot,
    SerialSnapshot,
    SmsSnapshot,
    StatusSnapshot,
    StoreSnapshot,
    UplinkSnapshot,
)
from appliance.web.snapshot import WebState, disk_free, rss_bytes

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The text format generate_latest writes."""


def metrics_registry(state: WebState, *more: Collector) -> CollectorRegistry:
    """The page's registry: the board's collector and `more` (the connection counters)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BoardCollector(state))
    for collector in more:
        registry.register(collector)
    return registry


METRICS: web.AppKey[CollectorRegistry] = web.AppKey("metrics", CollectorRegistry)


def render_metrics(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class BoardCollector(Collector):
    """The board as metric families, from one snapshot taken at each scrape."""

    def __init__(self, state: WebState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        return iter(board_families(self._state.status(), self._state.store_dir))


class Families:
    """Metric families by name, each made at its first sample with that sample's label names;
    a sample whose value is None (not known yet) is left out."""

    def __init__(self) -> None:
        self._by_name: dict[str, Metric] = {}

    def gauge(self, name: str, help_text: str, value: float | None, /, **labels: str) -> None:
        self._add(GaugeMetricFamily, name, help_text, value, labels)

    def counter(self, name: str, help_text: str, value: float | None, /, **labels: str) -> None:
        self._add(CounterMetricFamily, name, help_text, value, labels)

    def _add(
        self,
        kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
        name: str,
        help_text: str,
        value: float | None,
        labels: dict[str, str],
    ) -> None:
        if value is None:
            return
        family = self._by_name.get(name)
        if family is None:
            family = self._by_name[name] = kind(name, help_text, labels=list(labels))
        assert isinstance(family, kind), f"{name} is a {family.type}"
        family.add_metric(list(labels.values()), float(value))

    def all(self) -> list[Metric]:
        return list(self._by_name.values())


def board_families(status: StatusSnapshot, store_dir: Path) -> list[Metric]:
    m = Families()
    m.gauge("appliance_uptime_seconds", "Seconds since start.", status.uptime_s)
    for a in status.assets:
        _asset_metrics(m, a)
    for link, s in status.serial.items():
        _serial_metrics(m, link, s)
    for bus, sensors in status.i2c.items():
        for sensor in sensors:
            labels = {"bus": bus, "sensor": sensor.ident or label_value(sensor.name)}
            m.counter("appliance_i2c_reads_total", "I2C sensor reads.", sensor.reads, **labels)
            m.counter("appliance_i2c_read_errors_total", "Failed or invalid I2C reads.",
                      sensor.errors, **labels)  # fmt: skip
            m.gauge("appliance_i2c_sensor_failed", "1 while the sensor is marked failed.",
                    int(sensor.failed), **labels)  # fmt: skip
    if status.alerts is not None:
        _alert_metrics(m, status.alerts)
    if status.store is not None:
        _store_metrics(m, status.store)
    for name, depth in status.queues.items():
        m.gauge("appliance_queue_length", "Items waiting in a stage queue.", depth, queue=name)
    if status.uplink is not None:
        _uplink_metrics(m, status.uplink)
    if status.sms is not None:
        _sms_metrics(m, status.sms)
    if status.models is not None:
        _model_metrics(m, status.models)
    m.gauge("appliance_process_resident_memory_bytes", "Resident memory.", rss_bytes())
    m.gauge("appliance_disk_free_bytes", "Free space where the store lives.",
            disk_free(store_dir))  # fmt: skip
    return m.all()


def label_value(text: str) -> str:
    """A short identifier from a name that may hold spaces ("over the air" -> "over_the_air")."""
    return "_".join(text.lower().split())


def _asset_metrics(m: Families, a: AssetSnapshot) -> None:
    for channel, count in a.samples.items():
        m.counter("appliance_samples_total", "Samples received.", count,
                  asset=a.name, channel=channel)  # fmt: skip
    m.counter("appliance_feature_vectors_total", "Feature windows computed.",
              a.vectors, asset=a.name)  # fmt: skip
    m.counter("appliance_scored_windows_total", "Windows scored by the model.",
              a.scores, asset=a.name)  # fmt: skip
    m.counter("appliance_anomalous_windows_total", "Windows scored anomalous.",
              a.anomalous_windows, asset=a.name)  # fmt: skip
    m.counter("appliance_scoring_errors_total", "Windows the model failed to score.",
              a.scoring_errors, asset=a.name)  # fmt: skip
    if a.latest_score is not None:
        m.gauge("appliance_anomaly_score", "Latest anomaly score (reconstruction error).",
                a.latest_score.error, asset=a.name)  # fmt: skip
        m.gauge("appliance_anomaly_threshold", "Threshold of the latest score.",
                a.latest_score.threshold, asset=a.name)  # fmt: skip
    m.gauge("appliance_alarm", "1 while the asset's anomaly alarm is raised.",
            int(a.alarm is not None), asset=a.name)  # fmt: skip
    m.gauge("appliance_inference_seconds", "Time the latest score took.",
            a.inference_s, asset=a.name)  # fmt: skip
    if a.diagnosis is not None:
        _diagnosis_metrics(m, a.name, a.diagnosis)
    for channel in a.samples:
        m.gauge("appliance_sensor_faults", "Sensor-health rules alarming on a channel.",
                len(a.sensor_faults.get(channel, ())), asset=a.name, channel=channel)  # fmt: skip


ZONE_NUMBERS = {"A": 1, "B": 2, "C": 3, "D": 4}
"""ISO 20816-3 zones as gauge values (A good ... D damage occurs)."""


def _diagnosis_metrics(m: Families, asset: str, diagnosed: Diagnosed) -> None:
    for channel, found in diagnosed.diagnosis.channels.items():
        m.gauge("appliance_velocity_rms_mm_per_second",
                "Vibration velocity RMS, 10-1000 Hz, of the latest diagnosis.",
                found.velocity_mm_s, asset=asset, channel=channel)  # fmt: skip
        m.gauge("appliance_iso_zone", "ISO 20816-3 zone of that velocity: 1 A ... 4 D.",
                ZONE_NUMBERS[found.zone], asset=asset, channel=channel)  # fmt: skip
    finding = diagnosed.diagnosis.finding
    m.gauge("appliance_diagnosis_info", "The latest diagnosis's verdict (always 1).", 1,
            asset=asset, verdict=finding.verdict)  # fmt: skip
    m.gauge("appliance_diagnosis_confidence", "Share of the verdict's lines found.",
            finding.confidence, asset=asset)  # fmt: skip


def _serial_metrics(m: Families, link: str, s: SerialSnapshot) -> None:
    m.gauge("appliance_serial_connected", "1 while the serial link is open.",
            int(s.connected), link=link)  # fmt: skip
    for field, value in (
        ("frames", s.frames),
        ("crc_errors", s.crc_errors),
        ("seq_gaps", s.seq_gaps),
        ("dropped_samples", s.dropped_samples),
        ("garbage_bytes", s.garbage_bytes),
        ("resets", s.resets),
        ("reconnects", s.reconnects),
    ):
        help_text = f"Serial link {field.replace('_', ' ')}."
        m.counter(f"appliance_serial_{field}_total", help_text, value, link=link)


def _alert_metrics(m: Families, alerts: AlertsSnapshot) -> None:
    m.gauge("appliance_alerts_open", "Alarms raised and not cleared.", len(alerts.open))
    acked = sum(1 for a in alerts.open if a.ack is not None)
    m.gauge("appliance_alerts_acknowledged", "Open alarms acknowledged by someone.", acked)
    for kind, count in alerts.counts.items():
        m.counter("appliance_alerts_total", "Alerts passed on, by kind.", count, kind=kind)


def _store_metrics(m: Families, st: StoreSnapshot) -> None:
    m.gauge("appliance_store_bytes", "Size of the store.", st.bytes)
    m.counter("appliance_store_rows_written_total", "Rows written.", st.rows_written)
    for reason, count in (("age", st.evicted_by_age), ("size", st.evicted_by_size)):
        m.counter("appliance_store_evicted_rows_total", "Rows evicted, by reason.", count,
                  reason=reason)  # fmt: skip
    m.counter("appliance_store_write_errors_total", "Failed writes.", st.write_errors)


def _uplink_metrics(m: Families, up: UplinkSnapshot) -> None:
    m.gauge("appliance_uplink_connected", "1 while connected to the broker.", int(up.connected))
    m.gauge("appliance_uplink_backlog_records", "Records not yet acknowledged.",
            up.backlog_records)  # fmt: skip
    m.gauge("appliance_uplink_backlog_age_seconds", "Age of the oldest of them.",
            up.backlog_age_s)  # fmt: skip
    m.counter("appliance_uplink_published_records_total", "Records published.",
              up.published_records)  # fmt: skip
    m.counter("appliance_uplink_published_bytes_total", "Bytes published.", up.published_bytes)
    m.counter("appliance_uplink_reconnects_total", "Reconnections.", up.reconnects)


def _sms_metrics(m: Families, sms: SmsSnapshot) -> None:
    m.gauge("appliance_sms_queued_messages", "SMS waiting to be sent.", sms.queued)
    m.counter("appliance_sms_sent_total", "SMS sent.", sms.sent)
    m.counter("appliance_sms_given_up_total", "SMS given up.", sms.given_up)
    m.gauge("appliance_modem_ready", "1 while the modem can send.", int(sms.modem.ready))
    m.gauge("appliance_modem_signal_dbm", "Modem signal strength.", sms.modem.signal_dbm)
    m.counter("appliance_modem_silent_restarts_total",
              "Modem restarts without RDY noticed and set up again.",
              sms.modem.restarts_detected)  # fmt: skip


def _model_metrics(m: Families, models: ModelsSnapshot) -> None:
    for name, help_text, count in (
        ("installs", "Model bundles installed.", models.installs),
        ("refusals", "Model installs and rollbacks refused.", models.refusals),
        ("rollbacks", "Model rollbacks (requested or automatic).", models.rollbacks),
        ("automatic_rollbacks", "Models rolled back after failing probation.",
         models.automatic_rollbacks),
    ):  # fmt: skip
        m.counter(f"appliance_model_{name}_total", help_text, count)
    for asset, model in models.active.items():
        origin = label_value(models.origin.get(asset, "unknown"))
        m.gauge("appliance_model_info", "The model each asset scores with (always 1).", 1,
                asset=asset, model=model, origin=origin)  # fmt: skip
