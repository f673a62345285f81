"""The demo's compact live summary, rendered from a snapshot of the status board."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import tzinfo
from typing import TextIO

from appliance.records import Alert, FeatureVector
from appliance.status import SmsView, StatusBoard
from appliance.status_snapshot import (
    AlertsSnapshot,
    AssetSnapshot,
    SmsSnapshot,
    StatusSnapshot,
    UplinkSnapshot,
    overview,
    sms_snapshot,
    snapshot,
)
from appliance.status_snapshot.humanize import (
    duration,
    feature_unit,
    number,
    quantity,
    rate,
    size,
    time_text,
    unit_shown,
)

RECENT_SHOWN = 5
VIBRATION_SHOWN = ("rms", "peak", "crest_factor", "excess_kurtosis", "dominant_freq_hz")


class SummaryPrinter:
    """Owns the previous sample counts so it can show measured rates between two prints.

    `heading`, when given, starts every summary's first line (the demo's status page URL and
    where its token is, so they never scroll away)."""

    def __init__(
        self, board: StatusBoard, out: TextIO, heading: Callable[[], str] | None = None
    ) -> None:
        self._board = board
        self._out = out
        self._heading = heading
        self._previous: dict[tuple[str, str], int] = {}
        self._previous_at = time.monotonic()

    async def run(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            self.print_once()

    def print_once(self, *, final: bool = False) -> None:
        """Print the board; `final` shows sample totals instead of rates since the last print."""
        now = time.monotonic()
        elapsed = None if final else max(now - self._previous_at, 1e-9)
        self._out.write(self.render(elapsed) + "\n")
        self._out.flush()
        self._previous_at = now

    def render(self, elapsed_s: float | None) -> str:
        return self.render_snapshot(snapshot(self._board, time.time()), elapsed_s)

    def render_snapshot(self, status: StatusSnapshot, elapsed_s: float | None) -> str:
        """`status` as text; `elapsed_s` None shows sample totals instead of rates. States in
        the page's words (status_snapshot/states.py), values with the config's units."""
        title = "final" if elapsed_s is None else "up"
        heading = f"{self._heading()}  " if self._heading is not None else ""
        uptime = duration(status.uptime_s)
        lines = [f"{heading}── {status.gateway_id}  {title} {uptime} " + "─" * 40]
        lines.append(_overview_line(status))
        for asset in status.assets:
            lines.append(f"{asset.name:14s} {asset.state.words.upper()}: {asset.state.reason}")
            samples = "  ".join(self._samples(asset, elapsed_s))
            lines.append(f"    vectors {asset.vectors}  {samples}")
            lines.append("    " + _score_line(asset))
            if asset.diagnosis is not None:
                lines.append(f"    diagnosis: {asset.diagnosis.text}")
            if asset.latest is not None:
                lines.extend("    " + line for line in _feature_lines(asset.latest, asset.units))
        if status.alerts is not None:
            lines.extend(_alert_lines(status.alerts, status.zone))
        if status.sms is not None:
            lines.extend(sms_lines(status.sms, final=elapsed_s is None, now=status.now))
        lines.extend(_link_lines(status))
        return "\n".join(lines)

    def _samples(self, asset: AssetSnapshot, elapsed_s: float | None) -> list[str]:
        """Each channel, its unit, and its samples: the rate since the last print, or (final)
        the total."""
        shown = []
        for channel, count in asset.samples.items():
            before = self._previous.get((asset.name, channel), 0)
            self._previous[(asset.name, channel)] = count
            unit = unit_shown(asset.units.get(channel, ""))
            name = f"{channel} ({unit})" if unit else channel
            if elapsed_s is None:
                shown.append(f"{name} {count} samples")
            else:
                shown.append(f"{name} {rate((count - before) / elapsed_s)}")
        return shown


def _overview_line(status: StatusSnapshot) -> str:
    """The page's header in one line: "ALARM: 1 machine in alarm: compressor-2"."""
    view = overview(status)
    problems = f"  gateway: {'; '.join(view.problems)}" if view.problems else ""
    return f"{view.words.upper()}: {view.headline}{problems}"


def _score_line(asset: AssetSnapshot) -> str:
    score = asset.latest_score
    if score is None:  # e.g. just after a restart: the state above already says an alarm
        return asset.model
    because = f"  top: {', '.join(score.contributors)}" if score.contributors else ""
    latency = (
        f"  (scored in {asset.inference_s * 1e3:.2f} ms)" if asset.inference_s is not None else ""
    )
    return (
        f"{asset.model}  score {number(score.error)} / threshold {number(score.threshold)}  "
        f"anomalous windows {asset.anomalous_windows}/{asset.scores}{latency}{because}"
    )


def _alert_lines(alerts: AlertsSnapshot, zone: tzinfo) -> list[str]:
    lines = [f"alerts: {len(alerts.open)} open, {alerts.passed_on} since start"]
    for shown in alerts.open:
        by = f"acknowledged by {shown.ack.by}" if shown.ack is not None else "not acknowledged"
        lines.append(f"  open {_alert_line(shown.alert, zone)}  [{by}]")
    for alert in alerts.recent[-RECENT_SHOWN:]:
        lines.append(f"    {_alert_line(alert, zone)}")
    return lines


def _alert_line(alert: Alert, zone: tzinfo) -> str:
    return f"{time_text(alert.t, zone)} {alert.severity:8s} {alert.kind:22s} {alert.message}"


def sms_lines(
    sms: SmsSnapshot | SmsView, *, final: bool = False, now: float | None = None
) -> list[str]:
    """Modem health, the queue, what was sent, given up and held back; with an emulated modem
    the SMS it received (the last few, or all kept on the final summary)."""
    if not isinstance(sms, SmsSnapshot):
        sms = sms_snapshot(sms)
    now = time.time() if now is None else now
    modem = sms.modem
    if modem.ready:
        dbm = modem.signal_dbm
        radio = f"{modem.registration}, {modem.operator or 'operator ?'}, " + (
            f"signal {dbm} dBm" if dbm is not None else "signal ?"
        )
        state = f"up ({radio})"
    elif modem.connected:
        state = f"waiting for network ({modem.registration}, CSQ {modem.signal_rssi})"
    else:
        state = "stopped" if final else "DOWN"
    kind = "emulated modem" if sms.emulated else f"modem {modem.path}"
    last = ""
    if sms.last_sent_utc is not None:
        clock = time.strftime("%H:%M:%S", time.localtime(sms.last_sent_utc))
        last = f" (last {clock}" + (f" to {sms.last_sent_to})" if sms.last_sent_to else ")")
    lines = [
        f"sms: {kind} {state}  queued {sms.queued}  sent {sms.sent}{last}  "
        f"given up {sms.given_up}  failed attempts {sms.failed_attempts}  "
        f"reopens {modem.reopens}  power cycles {modem.power_cycles}  "
        f"silent restarts {modem.restarts_detected}"
    ]
    policy = sms.policy
    if policy is not None:
        lines.append(
            f"    policy: {policy.queued} messages from {policy.alerts} alerts, "
            f"{policy.not_eligible} not for SMS, held back by rate limits "
            f"{policy.suppressed_hourly}/h {policy.suppressed_daily}/day"
        )
    if sms.pin_rejected:
        lines.append("    SIM PIN REFUSED: not tried again until the configured PIN changes")
    if sms.oldest_queued_utc is not None and sms.queued:
        age = max(0.0, now - sms.oldest_queued_utc)
        lines.append(f"    oldest queued {duration(age)} ago")
    if sms.last_given_up is not None:
        lines.append(f"    GIVEN UP: {sms.last_given_up}")
    problem = sms.last_send_error or (modem.last_error if not modem.ready else None)
    if problem:
        lines.append(f"    last error: {problem}")
    if sms.emulated:
        shown = sms.would_have_sent if final else sms.would_have_sent[-RECENT_SHOWN:]
        if shown:
            lines.append("    SMS that would have been sent (emulated modem):")
            lines.extend(f"      {described}" for described in shown)
    return lines


def _feature_lines(vector: FeatureVector, units: Mapping[str, str]) -> list[str]:
    """Per channel, its main features with their units: "accel_x  rms 0.512 g  peak 1.37 g"."""
    values = vector.as_dict()
    channels: dict[str, list[str]] = {}
    for name, value in values.items():
        channel, _, feature = name.partition(".")
        if feature in VIBRATION_SHOWN or (feature == "mean" and f"{channel}.rms" not in values):
            unit = feature_unit(feature, units.get(channel, ""))
            words = feature.removesuffix("_hz").replace("_", " ")  # its unit says Hz
            channels.setdefault(channel, []).append(f"{words} {quantity(value, unit)}")
    return [f"{channel:14s} " + "  ".join(parts) for channel, parts in channels.items()]


def _link_lines(status: StatusSnapshot) -> list[str]:
    lines = []
    for name, s in status.serial.items():
        state = "up" if s.connected else "DOWN"
        lines.append(
            f"serial {name}: {state}  frames {s.frames}  gaps {s.seq_gaps} "
            f"(dropped samples {s.dropped_samples})  crc {s.crc_errors}  "
            f"garbage bytes {s.garbage_bytes}  resets {s.resets}  reconnects {s.reconnects}"
        )
    for name, sensors in status.i2c.items():
        shown = "  ".join(
            f"{sensor.name} {'FAILED' if sensor.failed else 'ok'} "
            f"(reads {sensor.reads}, errors {sensor.errors})"
            for sensor in sensors
        )
        lines.append(f"i2c {name}: {shown}")
    if status.store is not None:
        st = status.store
        lines.append(
            f"store: rows {st.rows_written}  {size(st.bytes)}  evicted "
            f"{st.evicted}  write errors {st.write_errors}  "
            f"refused {st.rejected_records}"
        )
    if status.uplink is not None:
        lines.extend(_uplink_lines(status.uplink))
    waits = {k: v for k, v in status.queue_full.items() if v}
    depths = "  ".join(f"{k} {depth}" for k, depth in status.queues.items())
    lines.append(f"queues: {depths}" + (f"  (full waits: {waits})" if waits else ""))
    return lines


def _uplink_lines(up: UplinkSnapshot) -> list[str]:
    state = "connected" if up.connected else f"DOWN ({up.state})"
    age = up.backlog_age_s
    oldest = f", oldest {duration(age)} old" if age is not None and up.backlog_records else ""
    lines = [
        f"uplink {up.broker}: {state}  backlog {up.backlog_records} records{oldest}  "
        f"acked seq {up.acked_seq} of {up.last_seq} (ack by {up.ack_mode})",
        f"    sent {up.published_records} records in {up.published_ranges} ranges "
        f"({up.published_messages} messages, {size(up.published_bytes)})  "
        f"reconnects {up.reconnects}  resends {up.resends}  "
        f"lost before delivery {up.lost_before_delivery}",
    ]
    if up.last_error and up.connected:
        lines.append(f"    last error: {up.last_error}")
    return lines
