"""/metrics in the Prometheus text format (0.0.4), written by hand from the board's snapshot.

Names follow Prometheus conventions: base units in the name (_bytes, _seconds), counters end in
_total, gauges do not."""

from __future__ import annotations

from appliance.status_snapshot import (
    AlertsSnapshot,
    AssetSnapshot,
    ModelsSnapshot,
    SerialSnapshot,
    SmsSnapshot,
    StoreSnapshot,
    UplinkSnapshot,
)
from appliance.web.snapshot import WebState, disk_free, rss_bytes

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Text:
    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[str]]] = {}

    def add(
        self, name: str, kind: str, help_text: str, value: float | None, /, **labels: str
    ) -> None:
        if value is None:
            return
        _, _, lines = self._families.setdefault(name, (kind, help_text, []))
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        sample = f"{name}{{{label_text}}}" if labels else name
        lines.append(f"{sample} {float(value)!r}")

    def render(self) -> str:
        out = []
        for name, (kind, help_text, lines) in self._families.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *lines]
        return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(state: WebState) -> str:
    status = state.status()
    m = _Text()
    m.add("appliance_uptime_seconds", "gauge", "Seconds since start.", status.uptime_s)
    for a in status.assets:
        _asset_metrics(m, a)
    for link, s in status.serial.items():
        _serial_metrics(m, link, s)
    for bus, sensors in status.i2c.items():
        for sensor in sensors:
            m.add("appliance_i2c_reads_total", "counter", "I2C sensor reads.", sensor.reads,
                  bus=bus, sensor=sensor.name)  # fmt: skip
            m.add("appliance_i2c_read_errors_total", "counter", "Failed or invalid I2C reads.",
                  sensor.errors, bus=bus, sensor=sensor.name)  # fmt: skip
    if status.alerts is not None:
        _alert_metrics(m, status.alerts)
    if status.store is not None:
        _store_metrics(m, status.store)
    for name, depth in status.queues.items():
        m.add("appliance_queue_length", "gauge", "Items waiting in a stage queue.",
              depth, queue=name)  # fmt: skip
    if status.uplink is not None:
        _uplink_metrics(m, status.uplink)
    if status.sms is not None:
        _sms_metrics(m, status.sms)
    if status.models is not None:
        _model_metrics(m, status.models)
    m.add("appliance_process_resident_memory_bytes", "gauge", "Resident memory.", rss_bytes())
    m.add("appliance_disk_free_bytes", "gauge", "Free space where the store lives.",
          disk_free(state.store_dir))  # fmt: skip
    return m.render()


def _asset_metrics(m: _Text, a: AssetSnapshot) -> None:
    for channel, count in a.samples.items():
        m.add("appliance_samples_total", "counter", "Samples received.", count,
              asset=a.name, channel=channel)  # fmt: skip
    m.add("appliance_feature_vectors_total", "counter", "Feature windows computed.",
          a.vectors, asset=a.name)  # fmt: skip
    m.add("appliance_scored_windows_total", "counter", "Windows scored by the model.",
          a.scores, asset=a.name)  # fmt: skip
    m.add("appliance_anomalous_windows_total", "counter", "Windows scored anomalous.",
          a.anomalous_windows, asset=a.name)  # fmt: skip
    m.add("appliance_scoring_errors_total", "counter", "Windows the model failed to score.",
          a.scoring_errors, asset=a.name)  # fmt: skip
    if a.latest_score is not None:
        m.add("appliance_anomaly_score", "gauge", "Latest anomaly score (reconstruction "
              "error).", a.latest_score.error, asset=a.name)  # fmt: skip
        m.add("appliance_anomaly_threshold", "gauge", "Threshold of the latest score.",
              a.latest_score.threshold, asset=a.name)  # fmt: skip
    m.add("appliance_alarm", "gauge", "1 while the asset's anomaly alarm is raised.",
          int(a.alarm is not None), asset=a.name)  # fmt: skip
    m.add("appliance_inference_seconds", "gauge", "Time the latest score took.",
          a.inference_s, asset=a.name)  # fmt: skip
    for channel in a.samples:
        m.add("appliance_sensor_faults", "gauge", "Sensor-health rules alarming on a channel.",
              len(a.sensor_faults.get(channel, ())), asset=a.name, channel=channel)  # fmt: skip


def _serial_metrics(m: _Text, link: str, s: SerialSnapshot) -> None:
    m.add("appliance_serial_connected", "gauge", "1 while the serial link is open.",
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
        m.add(f"appliance_serial_{field}_total", "counter", f"Serial link {field}.",
              value, link=link)  # fmt: skip


def _alert_metrics(m: _Text, alerts: AlertsSnapshot) -> None:
    m.add("appliance_alerts_open", "gauge", "Alarms raised and not cleared.", len(alerts.open))
    acked = sum(1 for a in alerts.open if a.ack is not None)
    m.add("appliance_alerts_acknowledged", "gauge", "Open alarms acknowledged by someone.",
          acked)  # fmt: skip
    for kind, count in alerts.counts.items():
        m.add("appliance_alerts_total", "counter", "Alerts passed on, by kind.", count,
              kind=kind)  # fmt: skip


def _store_metrics(m: _Text, st: StoreSnapshot) -> None:
    m.add("appliance_store_bytes", "gauge", "Size of the store.", st.bytes)
    m.add("appliance_store_rows_written_total", "counter", "Rows written.", st.rows_written)
    m.add("appliance_store_evicted_rows_total", "counter", "Rows evicted, by reason.",
          st.evicted_by_age, reason="age")  # fmt: skip
    m.add("appliance_store_evicted_rows_total", "counter", "Rows evicted, by reason.",
          st.evicted_by_size, reason="size")  # fmt: skip
    m.add("appliance_store_write_errors_total", "counter", "Failed writes.", st.write_errors)


def _uplink_metrics(m: _Text, up: UplinkSnapshot) -> None:
    m.add("appliance_uplink_connected", "gauge", "1 while connected to the broker.",
          int(up.connected))  # fmt: skip
    m.add("appliance_uplink_backlog_records", "gauge", "Records not yet acknowledged.",
          up.backlog_records)  # fmt: skip
    m.add("appliance_uplink_backlog_age_seconds", "gauge", "Age of the oldest of them.",
          up.backlog_age_s)  # fmt: skip
    m.add("appliance_uplink_published_records_total", "counter", "Records published.",
          up.published_records)  # fmt: skip
    m.add("appliance_uplink_published_bytes_total", "counter", "Bytes published.",
          up.published_bytes)  # fmt: skip
    m.add("appliance_uplink_reconnects_total", "counter", "Reconnections.", up.reconnects)


def _sms_metrics(m: _Text, sms: SmsSnapshot) -> None:
    m.add("appliance_sms_queued_messages", "gauge", "SMS waiting to be sent.", sms.queued)
    m.add("appliance_sms_sent_total", "counter", "SMS sent.", sms.sent)
    m.add("appliance_sms_given_up_total", "counter", "SMS given up.", sms.given_up)
    m.add("appliance_modem_ready", "gauge", "1 while the modem can send.",
          int(sms.modem.ready))  # fmt: skip
    m.add("appliance_modem_signal_dbm", "gauge", "Modem signal strength.",
          sms.modem.signal_dbm)  # fmt: skip
    m.add("appliance_modem_silent_restarts_total", "counter",
          "Modem restarts without RDY noticed and set up again.",
          sms.modem.restarts_detected)  # fmt: skip


def _model_metrics(m: _Text, models: ModelsSnapshot) -> None:
    for name, help_text, count in (
        ("installs", "Model bundles installed.", models.installs),
        ("refusals", "Model installs and rollbacks refused.", models.refusals),
        ("rollbacks", "Model rollbacks (requested or automatic).", models.rollbacks),
        ("automatic_rollbacks", "Models rolled back after failing probation.",
         models.automatic_rollbacks),
    ):  # fmt: skip
        m.add(f"appliance_model_{name}_total", "counter", help_text, count)
    for asset, model in models.active.items():
        m.add("appliance_model_info", "gauge", "The model each asset scores with (always 1).", 1,
              asset=asset, model=model, origin=models.origin.get(asset, ""))  # fmt: skip
