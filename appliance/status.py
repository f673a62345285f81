"""The status board: what each stage reports about itself; the summary and web page read it.

It is a plain object built by the composition root and handed to the stages; each stage owns and
writes only its own entries, readers never write. What a stage puts on the board is typed by a
read-only Protocol below (the stage's own stats object satisfies it), so the board needs no
import of the stages. Readers render appliance/status_snapshot.py's snapshot of it, not the
board itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any, Protocol

from appliance.diagnosis.live import Diagnosed
from appliance.records import Alert, EpisodeVerdict, FeatureVector, Score, Severity


@dataclass
class AssetStatus:
    """Each field is written by one stage only (feature stage, then detect stage, see below)."""

    name: str
    samples: dict[str, int] = field(default_factory=dict)
    """Samples received per channel since start."""
    units: dict[str, str] = field(default_factory=dict)
    """Channel -> unit from the config ("g", "degC"); written by the composition root."""
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
    diagnosis: Diagnosed | None = None
    """Written by the asset's diagnoser (appliance/diagnosis/live.py, in the feature stage):
    its latest diagnosis; None without an [assets.machine] table or before the first window."""


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


class SerialLinkView(Protocol):
    """A serial link's counters (appliance/capture/serial_link.py SerialStats)."""

    connected: bool
    frames: int
    crc_errors: int
    seq_gaps: int
    dropped_samples: int
    garbage_bytes: int
    resets: int
    reconnects: int


class I2cSensorView(Protocol):
    """One polled sensor's counters (appliance/capture/i2c.py SensorStats)."""

    name: str
    ident: str
    """Short identifier ("tmp117@0x48"), for metric labels; `name` is the sentence."""
    failed: bool
    reads: int
    read_errors: int
    invalid_values: int


class I2cBusView(Protocol):
    """An I2C poller's counters (appliance/capture/i2c.py I2cStats)."""

    @property
    def sensors(self) -> Mapping[str, I2cSensorView]: ...


class StoreView(Protocol):
    """The store's counters (StoreStats)."""

    bytes: int
    rows_written: int
    evicted_by_age: int
    evicted_by_size: int
    lost_before_delivery: int
    write_errors: int
    rejected_records: int


class AlertsView(Protocol):
    """The alert stage's open and recent alerts (appliance/detect/routing.py AlertRouter)."""

    @property
    def recent(self) -> Iterable[Alert]: ...

    @property
    def counts(self) -> Mapping[str, int]: ...

    def open_by_id(self) -> dict[str, Alert]:
        """The open alarms by id ("asset|channel|family"), a copy."""
        ...


class AckView(Protocol):
    @property
    def by(self) -> str: ...

    @property
    def at(self) -> float: ...

    @property
    def alert_t(self) -> float: ...


class AcksView(Protocol):
    """The acknowledgements of open alerts (appliance/detect/acks.py AlertAcks)."""

    def of(self, alert_id: str, alert: Alert) -> AckView | None: ...


class VerdictsView(Protocol):
    """Operators' verdicts on anomaly episodes (appliance/detect/verdicts.py EpisodeVerdicts)."""

    def of(self, asset: str, raised_t: float) -> EpisodeVerdict | None: ...


class ModemView(Protocol):
    """The modem's health (appliance/sms/health.py ModemHealth)."""

    path: str
    connected: bool
    reopens: int
    power_cycles: int
    last_error: str | None
    signal_rssi: int | None
    operator: str | None
    restarts_detected: int

    @property
    def ready(self) -> bool: ...

    @property
    def signal_dbm(self) -> int | None: ...

    def registration_text(self) -> str: ...


class SmsPolicyView(Protocol):
    """What the SMS policy did (appliance/sms/policy.py PolicyCounts)."""

    alerts: int
    queued: int
    not_eligible: int
    suppressed_hourly: int
    suppressed_daily: int


class DeliveredView(Protocol):
    def describe(self) -> str: ...


class SmsView(Protocol):
    """The SMS sender's status (appliance/sms/status.py SmsStatus)."""

    emulated: bool
    queued: int
    oldest_queued_utc: float | None
    sent: int
    given_up: int
    last_sent_utc: float | None
    last_sent_to: str | None
    last_given_up: str | None
    last_send_error: str | None
    failed_attempts: int
    pin_rejected: bool

    @property
    def modem(self) -> ModemView: ...

    @property
    def policy(self) -> SmsPolicyView | None: ...

    @property
    def would_have_sent(self) -> Iterable[DeliveredView]: ...


class OutcomeView(Protocol):
    """What became of one install or rollback (appliance/ota/outcomes.py Outcome)."""

    @property
    def accepted(self) -> bool: ...

    @property
    def action(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def asset(self) -> str | None: ...

    @property
    def model(self) -> str | None: ...

    @property
    def message(self) -> str: ...

    @property
    def at(self) -> float: ...


class ModelsView(Protocol):
    """The model manager's status (appliance/ota/outcomes.py ModelsStatus)."""

    installs: int
    refusals: int
    rollbacks: int
    automatic_rollbacks: int

    @property
    def active(self) -> Mapping[str, str]: ...

    @property
    def origin(self) -> Mapping[str, str]: ...

    @property
    def previous(self) -> Mapping[str, str | None]: ...

    @property
    def outcomes(self) -> Iterable[OutcomeView]: ...


class ReleaseView(Protocol):
    """The release manager's status (appliance/ota/release/manager.py)."""

    def describe(self) -> dict[str, Any]: ...


class QueueView(Protocol):
    def qsize(self) -> int: ...


@dataclass
class StatusBoard:
    gateway_id: str
    started_utc: float = field(default_factory=time.time)
    zone: tzinfo = UTC
    """The gateway's time zone ([gateway] timezone); written by the composition root."""
    assets: dict[str, AssetStatus] = field(default_factory=dict)
    serial: dict[str, SerialLinkView] = field(default_factory=dict)
    """Serial link name -> that link's own stats object."""
    i2c: dict[str, I2cBusView] = field(default_factory=dict)
    """I2C bus name -> that poller's own stats object."""
    store: StoreView | None = None
    """The store's own stats object."""
    alerts: AlertsView | None = None
    """The alert stage's open and recent alerts, counts by kind."""
    acks: AcksView | None = None
    """The acknowledgements of open alerts (durable); the page records one through its
    acknowledge(), nothing else writes them."""
    verdicts: VerdictsView | None = None
    """Operators' verdicts on anomaly episodes (durable); the page records them."""
    queues: dict[str, QueueView] = field(default_factory=dict)
    uplink: UplinkStatus | None = None
    """The uplink task's own status object; None when no uplink is configured."""
    queue_full: dict[str, int] = field(default_factory=dict)
    """Times a producer found a stage queue full and had to wait (back-pressure, not loss)."""
    sms: SmsView | None = None
    """The SMS sender's status; None without an [sms] table."""
    models: ModelsView | None = None
    """The model manager's status; None without a [models] table."""
    release: ReleaseView | None = None
    """The release manager's status; None without a [release] table."""
    _changed: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    def asset(self, name: str) -> AssetStatus:
        return self.assets.setdefault(name, AssetStatus(name))

    def changed(self) -> None:
        """Called after an update worth waiting for: by the detect stage after each window, the
        alert stage after each routed batch, the model manager after each install, refusal or
        rollback. Per-sample counters, the uplink and the SMS sender do not call it."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_changed(self) -> None:
        """Return after the next changed()."""
        await self._changed.wait()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds, checking it after each change (callers bound the
        wait, e.g. with asyncio.timeout)."""
        while not condition():
            await self.wait_changed()
