"""The page's JSON, rendered from the board's snapshot (appliance/status_snapshot/), plus what
only the web layer keeps: a bounded history of each asset's scores, measured sample rates, CPU
use and, when the board has no durable ones, in-memory acknowledgements."""

from __future__ import annotations

import math
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appliance.detect.acks import Ack, AlertAcks
from appliance.records import FeatureVector
from appliance.status import StatusBoard
from appliance.status_snapshot import AssetSnapshot, StatusSnapshot, overview, snapshot
from appliance.status_snapshot.humanize import (
    NOTHING,
    duration,
    feature_unit,
    number,
    quantity,
    rate,
    size,
    time_text,
    unit_shown,
)
from appliance.summary import VIBRATION_SHOWN
from appliance.web.envelope import diagnosis_json
from appliance.web.json_parts import (
    alert_json,
    models_json,
    open_alert_json,
    overview_json,
    sms_json,
    store_json,
    uplink_json,
    zone_json,
)
from appliance.web.verdicts import add_verdicts

HISTORY_POINTS = 300
"""Scores kept per asset for the chart (5 minutes at one window per second)."""
RECENT_ALERTS_SHOWN = 10
RATE_WINDOW_S = 10.0
"""Sample rates are measured over this long, so a 1 Hz sensor polled at whole seconds reads
"1.0/s" rather than jumping between 0 and 2."""
FEATURE_WORDS = {"rms": "RMS", "crest_factor": "crest factor", "mean": "mean"}


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
    clock: Callable[[], float] = time.time
    """Wall time for the snapshot's ages and times (a test sets it)."""
    _counts: dict[tuple[str, str], deque[tuple[float, int]]] = field(default_factory=dict)
    """(monotonic time, samples so far) per channel over the last RATE_WINDOW_S."""
    _last_at: float | None = None
    _last_cpu: float = 0.0

    def __post_init__(self) -> None:
        if self.board.acks is None:  # the page is the only writer of acknowledgements
            self.board.acks = self.unsaved_acks

    def sample(self, now: float | None = None) -> None:
        """Called about once a second (`now`: monotonic time): record new scores, sample rates
        over the last RATE_WINDOW_S, and CPU use since the last call."""
        now = time.monotonic() if now is None else now
        cpu = _cpu_seconds()
        self._record_scores()
        for asset in self.board.assets.values():
            for channel, count in asset.samples.items():
                self._measure_rate((asset.name, channel), now, count)
        elapsed = None if self._last_at is None else now - self._last_at
        if elapsed:
            self.cpu_percent = 100.0 * (cpu - self._last_cpu) / elapsed
        self._last_at, self._last_cpu = now, cpu

    def _measure_rate(self, key: tuple[str, str], now: float, count: int) -> None:
        seen = self._counts.setdefault(key, deque())
        seen.append((now, count))
        while len(seen) > 2 and now - seen[1][0] >= RATE_WINDOW_S:
            seen.popleft()
        then, before = seen[0]
        if now > then:
            self.rates[key] = (count - before) / (now - then)

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
        return await self.acks.acknowledge(alert_id, alert, by, self.clock())

    @property
    def acks(self) -> AlertAcks:
        acks = self.board.acks
        return acks if isinstance(acks, AlertAcks) else self.unsaved_acks

    def status(self) -> StatusSnapshot:
        """The board now (the scores seen so far recorded for the chart first)."""
        self._record_scores()
        return snapshot(self.board, self.clock())

    def snapshot(self) -> dict[str, Any]:
        """The page's JSON (/api/status and /events): raw values, and beside them the text a
        person reads (units, human durations and sizes, times in the gateway's zone)."""
        status = self.status()
        zone, alerts = status.zone, status.alerts
        open_alerts = [open_alert_json(a, zone) for a in alerts.open] if alerts is not None else []
        recent = list(alerts.recent)[-RECENT_ALERTS_SHOWN:] if alerts is not None else []
        worst_first = sorted(status.assets, key=lambda a: a.state.rank)
        out: dict[str, Any] = clean(
            {
                "gateway": status.gateway_id,
                "now": status.now,
                "now_text": time_text(status.now, zone),
                "timezone": zone_json(zone, status.now),
                "uptime_s": status.uptime_s,
                "uptime_text": duration(status.uptime_s),
                "actions_enabled": self.token_set,
                "overview": overview_json(overview(status), zone),
                "assets": [
                    self._asset(a, [x for x in open_alerts if x["asset"] == a.name])
                    for a in worst_first
                ],
                "alerts": {
                    "open": open_alerts,
                    "recent": [alert_json(a, zone) for a in reversed(recent)],
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
                "store": store_json(status.store),
                "queues": dict(status.queues),
                "uplink": uplink_json(status.uplink),
                "sms": sms_json(status.sms),
                "models": models_json(status.models, zone),
                "version": status.version,
                "release": status.release if status.release is not None else {"enabled": False},
                "process": self._process(),
            }
        )
        add_verdicts([*out["alerts"]["open"], *out["alerts"]["recent"]], self.board)
        return out

    def _process(self) -> dict[str, Any]:
        rss, free = rss_bytes(), disk_free(self.store_dir)
        return {
            "cpu_percent": self.cpu_percent,
            "cpu_text": NOTHING if self.cpu_percent is None else f"{self.cpu_percent:.0f} %",
            "rss_bytes": rss,
            "rss_text": size(rss),
            "disk_free_bytes": free,
            "disk_free_text": f"{size(free)} free" if free is not None else NOTHING,
        }

    def _asset(self, asset: AssetSnapshot, alerts: list[dict[str, Any]]) -> dict[str, Any]:
        score = asset.latest_score
        return {
            "name": asset.name,
            "state": {
                "condition": asset.state.condition,
                "words": asset.state.words,
                "reason": asset.state.reason,
            },
            "model": asset.model,
            "alarm": asset.alarm,
            "score": None
            if score is None
            else {
                "t": score.t,
                "error": score.error,
                "threshold": score.threshold,
                "error_text": number(score.error),
                "threshold_text": number(score.threshold),
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
            "readings": readings(shown_features(asset.latest), asset.units),
            "units": {channel: unit_shown(unit) for channel, unit in asset.units.items()},
            "channels": {
                channel: {
                    "samples": count,
                    "rate_hz": (per_s := self.rates.get((asset.name, channel))),
                    "rate_text": rate(per_s),
                    "unit": unit_shown(asset.units.get(channel, "")),
                }
                for channel, count in asset.samples.items()
            },
            "sensor_faults": {ch: list(rules) for ch, rules in asset.sensor_faults.items()},
            "late_samples": asset.late_samples,
            "diagnosis": diagnosis_json(asset.diagnosis),
            "alerts": alerts,
        }


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


def readings(features: dict[str, float], units: Mapping[str, str]) -> list[dict[str, Any]]:
    """Each shown feature with its label and unit: "accel_x RMS" "0.512 g"."""
    out = []
    for name, value in features.items():
        channel, _, feature = name.partition(".")
        unit = feature_unit(feature, units.get(channel, ""))
        label = f"{channel} {FEATURE_WORDS.get(feature, feature.replace('_', ' '))}"
        out.append(
            {
                "name": name,
                "label": label,
                "value": value,
                "unit": unit,
                "text": quantity(value, unit),
            }
        )
    return out


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
