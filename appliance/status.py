"""The status board: what each stage reports about itself; the summary and web page read it.

It is a plain object built by the composition root and handed to the stages; each stage owns and
writes only its own entries, readers never write.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from appliance.records import FeatureVector, Score, Severity


@dataclass
class AssetStatus:
    """Each field is written by one stage only (feature stage, then detect stage, see below)."""

    name: str
    samples: dict[str, int] = field(default_factory=dict)
    """Samples received per channel since start."""
    vectors: int = 0
    latest: FeatureVector | None = None
    rejected_blocks: int = 0
    """Blocks whose channel the asset's feature engine did not know (counted, not processed)."""
    model: str = "no model configured: features are stored, not scored"
    """Written by the composition root: which model scores this asset, or why none does."""
    latest_score: Score | None = None
    """Written by the detect stage from here on."""
    scores: int = 0
    anomalous_windows: int = 0
    scoring_errors: int = 0
    inference_s: float | None = None
    alarm: Severity | None = None
    sensor_faults: dict[str, list[str]] = field(default_factory=dict)
    """Written by the health stage: channel -> rules alarming on it (flatline, dropout, ...)."""
    late_samples: int = 0
    """Samples that arrived after their health window had closed (not checked by the rules)."""


@dataclass
class UplinkStatus:
    """Written only by the uplink task (appliance/uplink/publisher.py); readers never write."""

    broker: str
    """Where it sends, without credentials, e.g. mqtts://broker.example.com:8883."""
    ack_mode: str
    """"receiver" (end-to-end) or "broker" (PUBACK only, weaker)."""
    connected: bool = False
    state: str = "starting"
    """What it is doing now, in words (connected, waiting to reconnect and why, stopped)."""
    last_error: str | None = None
    """The last reason a connection failed or was lost, kept after reconnecting."""
    last_error_utc: float | None = None
    connected_since_utc: float | None = None
    connections: int = 0
    """Successful connections since start (reconnects = connections - 1)."""
    connect_failures: int = 0
    backlog_records: int = 0
    """Records stored and not yet acknowledged (refreshed every few seconds)."""
    backlog_oldest_utc: float | None = None
    """Time of the oldest of them (window end, score or alert time)."""
    last_seq: int = 0
    acked_seq: int = 0
    acked_utc: float | None = None
    lost_before_delivery: int = 0
    """Records evicted from the store before they were acknowledged (since it was created)."""
    published_ranges: int = 0
    """Ranges whose every part the broker acknowledged (PUBACK)."""
    published_records: int = 0
    published_messages: int = 0
    published_bytes: int = 0
    resends: int = 0
    """Times the receiver's acknowledgement stalled and the unacknowledged records were resent."""

    @property
    def reconnects(self) -> int:
        return max(0, self.connections - 1)

    def backlog_age_s(self, now_utc: float) -> float | None:
        if self.backlog_oldest_utc is None:
            return None
        return max(0.0, now_utc - self.backlog_oldest_utc)


@dataclass
class StatusBoard:
    gateway_id: str
    started_utc: float = field(default_factory=time.time)
    assets: dict[str, AssetStatus] = field(default_factory=dict)
    serial: dict[str, Any] = field(default_factory=dict)
    """Serial link name -> that link's own SerialStats object."""
    i2c: dict[str, Any] = field(default_factory=dict)
    """I2C bus name -> that poller's own stats object."""
    store: Any = None
    """The store's own StoreStats object."""
    alerts: Any = None
    """The alert stage's AlertRouter: open and recent alerts, counts by kind."""
    acks: Any = None
    """The acknowledgements of open alerts (appliance/detect/acks.py AlertAcks, durable); the
    page records one through its acknowledge(), nothing else writes them."""
    queues: dict[str, asyncio.Queue[Any]] = field(default_factory=dict)
    uplink: UplinkStatus | None = None
    """The uplink task's own status object; None when no uplink is configured."""
    queue_full: dict[str, int] = field(default_factory=dict)
    """Times a producer found a stage queue full and had to wait (back-pressure, not loss)."""
    sms: Any = None
    """The SMS sender's SmsStatus (appliance/sms/sender.py); None without an [sms] table."""
    models: Any = None
    """The model manager's ModelsStatus (appliance/ota/manager.py); None without [models]."""

    def asset(self, name: str) -> AssetStatus:
        return self.assets.setdefault(name, AssetStatus(name))
