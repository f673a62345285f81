"""The page's JSON, rendered from the board's snapshot (appliance/status_snapshot.py), plus what
only the web layer keeps: a bounded history of each asset's scores, measured sample rates, CPU
use and, when the board has no durable ones, in-memory acknowledgements."""

from __future__ import annotations

import math
import os
import shutil
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appliance.detect.acks import Ack, AlertAcks
from appliance.records import Alert, FeatureVector
from appliance.status import OutcomeView, StatusBoard
from appliance.status_snapshot import (
    AssetSnapshot,
    ModelsSnapshot,
    OpenAlert,
    SmsSnapshot,
    StatusSnapshot,
    StoreSnapshot,
    UplinkSnapshot,
    snapshot,
)
from appliance.summary import VIBRATION_SHOWN
from appliance.web.verdicts import add_verdicts

HISTORY_POINTS = 300
"""Scores kept per asset for the chart (5 minutes at one window per second)."""
RECENT_ALERTS_SHOWN = 10
RECENT_MODEL_OUTCOMES_SHOWN = 10


@dataclass
class WebState:
    """Owned by the web layer; the board is never written, but for one thing: a board without
    durable acknowledgements is given the page's in-memory ones (the page is their only writer)."""

    board: StatusBoard
    store_dir: Path
    token_set: bool
    history: dict[str, deque[tuple[float, float, float]]] = field(default_factory=dict)
    unsaved_acks: AlertAcks = field(default_factory=AlertAcks)
    """Used only when the board has no durable acknowledgements (a page without a store)."""
    rates: dict[tuple[str, str], float] = field(default_factory=dict)
    cpu_percent: float | None = None
    _last_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    _last_at: float | None = None
    _last_cpu: float = 0.0

    def __post_init__(self) -> None:
        if self.board.acks is None:  # the page is the only writer of acknowledgements
            self.board.acks = self.unsaved_acks

    def sample(self) -> None:
        """Called about once a second: record new scores, sample rates and CPU use."""
        now = time.monotonic()
        cpu = _cpu_seconds()
        elapsed = None if self._last_at is None else now - self._last_at
        self._record_scores()
        for asset in self.board.assets.values():
            for channel, count in asset.samples.items():
                key = (asset.name, channel)
                before = self._last_counts.get(key)
                if elapsed and before is not None and elapsed > 0:
                    self.rates[key] = (count - before) / elapsed
                self._last_counts[key] = count
        if elapsed:
            self.cpu_percent = 100.0 * (cpu - self._last_cpu) / elapsed
        self._last_at, self._last_cpu = now, cpu

    def _record_scores(self) -> None:
        for asset in self.board.assets.values():
            ring = self.history.setdefault(asset.name, deque(maxlen=HISTORY_POINTS))
            score = asset.latest_score
            if score is not None and (not ring or ring[-1][0] != score.t):
                ring.append((score.t, score.error, score.threshold))

    async def ack(self, alert_id: str, by: str) -> Ack | None:
        """Acknowledge an open alert (kept in the store and sent over the uplink); None if no
        open alert has that id. ValueError if `by` is not a short printable name, StoreError
        if it could not be saved."""
        alerts = self.board.alerts
        alert = alerts.open_by_id().get(alert_id) if alerts is not None else None
        if alert is None:
            return None
        return await self.acks.acknowledge(alert_id, alert, by, time.time())

    @property
    def acks(self) -> AlertAcks:
        acks = self.board.acks
        return acks if isinstance(acks, AlertAcks) else self.unsaved_acks

    def status(self) -> StatusSnapshot:
        """The board now (the scores seen so far recorded for the chart first)."""
        self._record_scores()
        return snapshot(self.board, time.time())

    def snapshot(self) -> dict[str, Any]:
        """The page's JSON (/api/status and /events)."""
        status = self.status()
        alerts = status.alerts
        open_alerts = [_open_alert(a) for a in alerts.open] if alerts is not None else []
        recent = list(alerts.recent)[-RECENT_ALERTS_SHOWN:] if alerts is not None else []
        out: dict[str, Any] = clean(
            {
                "gateway": status.gateway_id,
                "now": status.now,
                "uptime_s": status.uptime_s,
                "actions_enabled": self.token_set,
                "assets": [
                    self._asset(a, [x for x in open_alerts if x["asset"] == a.name])
                    for a in status.assets
                ],
                "alerts": {
                    "open": open_alerts,
                    "recent": [_alert_dict(a) for a in reversed(recent)],
                    "counts": dict(alerts.counts) if alerts is not None else {},
                },
                "serial": {name: asdict(s) for name, s in status.serial.items()},
                "i2c": {
                    name: [
                        {"sensor": s.name, "failed": s.failed, "reads": s.reads, "errors": s.errors}
                        for s in sensors
                    ]
                    for name, sensors in status.i2c.items()
                },
                "store": _store(status.store),
                "queues": dict(status.queues),
                "uplink": _uplink(status.uplink),
                "sms": _sms(status.sms),
                "models": _models(status.models),
                "process": {
                    "cpu_percent": self.cpu_percent,
                    "rss_bytes": rss_bytes(),
                    "disk_free_bytes": disk_free(self.store_dir),
                },
            }
        )
        add_verdicts([*out["alerts"]["open"], *out["alerts"]["recent"]], self.board)
        return out

    def _asset(self, asset: AssetSnapshot, alerts: list[dict[str, Any]]) -> dict[str, Any]:
        score = asset.latest_score
        return {
            "name": asset.name,
            "model": asset.model,
            "alarm": asset.alarm,
            "score": None
            if score is None
            else {
                "t": score.t,
                "error": score.error,
                "threshold": score.threshold,
                "anomalous": score.anomalous,
                "model_id": score.model_id,
                "contributors": list(score.contributors),
            },
            "history": [list(p) for p in self.history.get(asset.name, ())],
            "vectors": asset.vectors,
            "scores": asset.scores,
            "anomalous_windows": asset.anomalous_windows,
            "scoring_errors": asset.scoring_errors,
            "inference_s": asset.inference_s,
            "features": shown_features(asset.latest),
            "channels": {
                channel: {"samples": count, "rate_hz": self.rates.get((asset.name, channel))}
                for channel, count in asset.samples.items()
            },
            "sensor_faults": {ch: list(rules) for ch, rules in asset.sensor_faults.items()},
            "late_samples": asset.late_samples,
            "alerts": alerts,
        }


def _open_alert(open_alert: OpenAlert) -> dict[str, Any]:
    out = _alert_dict(open_alert.alert)
    out["id"] = open_alert.id
    out["ack"] = asdict(open_alert.ack) if open_alert.ack is not None else None
    return out


def shown_features(latest: FeatureVector | None) -> dict[str, float]:
    if latest is None:
        return {}
    values = latest.as_dict()
    return {
        name: value
        for name, value in values.items()
        if (feature := name.partition(".")[2]) in VIBRATION_SHOWN[:3]
        or (feature == "mean" and f"{name.partition('.')[0]}.rms" not in values)
    }


def _alert_dict(alert: Alert) -> dict[str, Any]:
    return {
        "asset": alert.asset,
        "channel": alert.channel,
        "severity": alert.severity,
        "kind": alert.kind,
        "message": alert.message,
        "t": alert.t,
    }


def _store(st: StoreSnapshot | None) -> dict[str, Any] | None:
    if st is None:
        return None
    return {
        "bytes": st.bytes,
        "rows_written": st.rows_written,
        "evicted": st.evicted,
        "lost_before_delivery": st.lost_before_delivery,
        "write_errors": st.write_errors,
    }


def _uplink(up: UplinkSnapshot | None) -> dict[str, Any] | None:
    if up is None:
        return None
    return {
        "broker": up.broker,
        "connected": up.connected,
        "state": up.state,
        "backlog_records": up.backlog_records,
        "backlog_age_s": up.backlog_age_s,
        "acked_seq": up.acked_seq,
        "last_seq": up.last_seq,
        "reconnects": up.reconnects,
        "last_error": up.last_error,
    }


def _sms(sms: SmsSnapshot | None) -> dict[str, Any] | None:
    if sms is None:
        return None
    modem = sms.modem
    return {
        "emulated": sms.emulated,
        "queued": sms.queued,
        "sent": sms.sent,
        "given_up": sms.given_up,
        "modem_ready": modem.ready,
        "registration": modem.registration,
        "signal_dbm": modem.signal_dbm,
        "operator": modem.operator,
        "last_error": sms.last_send_error or modem.last_error,
    }


def _models(status: ModelsSnapshot | None) -> dict[str, Any]:
    """Which model each asset uses and where from, what a rollback restores, the counters and
    the newest outcomes first."""
    if status is None:
        return {"enabled": False}
    outcomes = list(status.outcomes)[-RECENT_MODEL_OUTCOMES_SHOWN:]
    return {
        "enabled": True,
        "assets": {
            asset: {
                "active": model,
                "origin": status.origin.get(asset),
                "previous": status.previous.get(asset),
            }
            for asset, model in status.active.items()
        },
        "installs": status.installs,
        "refusals": status.refusals,
        "rollbacks": status.rollbacks,
        "automatic_rollbacks": status.automatic_rollbacks,
        "outcomes": [_outcome(o) for o in reversed(outcomes)],
    }


def _outcome(o: OutcomeView) -> dict[str, Any]:
    return {
        "accepted": o.accepted,
        "action": o.action,
        "source": o.source,
        "asset": o.asset,
        "model": o.model,
        "message": o.message,
        "at": o.at,
    }


def clean(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def rss_bytes() -> int | None:
    """Resident set size from /proc/self/status (Linux), None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def disk_free(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None
