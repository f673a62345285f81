"""One frozen, typed copy of the status board at one moment: what the page's JSON API, /metrics
and the terminal summary all render from (none of them reads the live board or a stage)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import tzinfo
from typing import Any, TypeVar

from appliance import __version__
from appliance.diagnosis.live import Diagnosed
from appliance.records import Alert, FeatureVector, Score, Severity
from appliance.status import (
    AcksView,
    AlertsView,
    AssetStatus,
    I2cBusView,
    ModelsView,
    OutcomeView,
    SerialLinkView,
    SmsView,
    StatusBoard,
    StoreView,
    UplinkStatus,
)
from appliance.status_snapshot.states import AssetState, asset_state


@dataclass(frozen=True)
class AssetSnapshot:
    name: str
    model: str
    samples: Mapping[str, int]
    """Samples received per channel since start."""
    units: Mapping[str, str]
    """Channel -> unit, as configured ("g", "degC")."""
    vectors: int
    latest: FeatureVector | None
    latest_score: Score | None
    scores: int
    anomalous_windows: int
    scoring_errors: int
    inference_s: float | None
    alarm: Severity | None
    sensor_faults: Mapping[str, tuple[str, ...]]
    late_samples: int
    rejected_blocks: int
    state: AssetState
    diagnosis: Diagnosed | None = None
    """The latest vibration diagnosis (frozen, shared with the board, never changed)."""


@dataclass(frozen=True)
class AckSnapshot:
    by: str
    at: float
    alert_t: float


@dataclass(frozen=True)
class OpenAlert:
    id: str
    """The router's key as one string, "asset|channel|family"."""
    alert: Alert
    ack: AckSnapshot | None


@dataclass(frozen=True)
class AlertsSnapshot:
    open: tuple[OpenAlert, ...]
    recent: tuple[Alert, ...]
    """Oldest first."""
    counts: Mapping[str, int]
    """Alerts passed on, by kind, since start."""

    @property
    def passed_on(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class SerialSnapshot:
    connected: bool
    frames: int
    crc_errors: int
    seq_gaps: int
    dropped_samples: int
    garbage_bytes: int
    resets: int
    reconnects: int


@dataclass(frozen=True)
class I2cSensorSnapshot:
    name: str
    failed: bool
    reads: int
    errors: int
    """Failed reads plus invalid values."""
    ident: str = ""
    """Short identifier ("tmp117@0x48"), for metric labels."""


@dataclass(frozen=True)
class StoreSnapshot:
    bytes: int
    rows_written: int
    evicted_by_age: int
    evicted_by_size: int
    lost_before_delivery: int
    write_errors: int
    rejected_records: int

    @property
    def evicted(self) -> int:
        return self.evicted_by_age + self.evicted_by_size


@dataclass(frozen=True)
class UplinkSnapshot:
    broker: str
    ack_mode: str
    connected: bool
    state: str
    last_error: str | None
    backlog_records: int
    backlog_age_s: float | None
    last_seq: int
    acked_seq: int
    reconnects: int
    lost_before_delivery: int
    published_ranges: int
    published_records: int
    published_messages: int
    published_bytes: int
    resends: int


@dataclass(frozen=True)
class ModemSnapshot:
    path: str
    ready: bool
    connected: bool
    registration: str
    signal_dbm: int | None
    signal_rssi: int | None
    operator: str | None
    last_error: str | None
    reopens: int
    power_cycles: int
    restarts_detected: int


@dataclass(frozen=True)
class SmsPolicySnapshot:
    alerts: int
    queued: int
    not_eligible: int
    suppressed_hourly: int
    suppressed_daily: int


@dataclass(frozen=True)
class SmsSnapshot:
    modem: ModemSnapshot
    emulated: bool
    queued: int
    oldest_queued_utc: float | None
    sent: int
    given_up: int
    failed_attempts: int
    last_sent_utc: float | None
    last_sent_to: str | None
    last_given_up: str | None
    last_send_error: str | None
    pin_rejected: bool
    policy: SmsPolicySnapshot | None
    would_have_sent: tuple[str, ...]
    """Emulated modem only: the SMS it received, described, oldest first."""


@dataclass(frozen=True)
class ModelsSnapshot:
    active: Mapping[str, str]
    """Asset -> model id in use."""
    origin: Mapping[str, str]
    previous: Mapping[str, str | None]
    outcomes: tuple[OutcomeView, ...]
    """Oldest first."""
    installs: int
    refusals: int
    rollbacks: int
    automatic_rollbacks: int


@dataclass(frozen=True)
class StatusSnapshot:
    gateway_id: str
    now: float
    """Wall time the snapshot was taken at."""
    uptime_s: float
    zone: tzinfo
    """The gateway's time zone: times are shown in it."""
    assets: tuple[AssetSnapshot, ...]
    alerts: AlertsSnapshot | None
    """None without an alert stage."""
    serial: Mapping[str, SerialSnapshot]
    i2c: Mapping[str, tuple[I2cSensorSnapshot, ...]]
    store: StoreSnapshot | None
    queues: Mapping[str, int]
    """Items waiting in each stage queue."""
    queue_full: Mapping[str, int]
    uplink: UplinkSnapshot | None
    sms: SmsSnapshot | None
    models: ModelsSnapshot | None
    version: str
    """Of the appliance code running."""
    release: Mapping[str, Any] | None
    """The release manager's status (its own JSON-ready copy); None without [release]."""


def snapshot(board: StatusBoard, now: float) -> StatusSnapshot:
    """The board as it is now (`now`: wall time, for ages); reads it, never writes it."""
    return StatusSnapshot(
        gateway_id=board.gateway_id,
        now=now,
        uptime_s=now - board.started_utc,
        zone=board.zone,
        assets=tuple(asset_snapshot(a, now) for a in list(board.assets.values())),
        alerts=alerts_snapshot(board.alerts, board.acks),
        serial={name: serial_snapshot(s) for name, s in board.serial.items()},
        i2c={name: i2c_snapshot(bus) for name, bus in board.i2c.items()},
        store=store_snapshot(board.store) if board.store is not None else None,
        queues={name: q.qsize() for name, q in board.queues.items()},
        queue_full=dict(board.queue_full),
        uplink=uplink_snapshot(board.uplink, now) if board.uplink is not None else None,
        sms=sms_snapshot(board.sms) if board.sms is not None else None,
        models=models_snapshot(board.models) if board.models is not None else None,
        version=__version__,
        release=board.release.describe() if board.release is not None else None,
    )


def asset_snapshot(asset: AssetStatus, now: float) -> AssetSnapshot:
    return AssetSnapshot(
        name=asset.name,
        model=asset.model,
        samples=dict(asset.samples),
        units=dict(asset.units),
        vectors=asset.vectors,
        latest=asset.latest,
        latest_score=asset.latest_score,
        scores=asset.scores,
        anomalous_windows=asset.anomalous_windows,
        scoring_errors=asset.scoring_errors,
        inference_s=asset.inference_s,
        alarm=asset.alarm,
        sensor_faults={ch: tuple(rules) for ch, rules in asset.sensor_faults.items()},
        late_samples=asset.late_samples,
        rejected_blocks=asset.rejected_blocks,
        state=asset_state(asset, now),
        diagnosis=asset.diagnosis,
    )


def alerts_snapshot(alerts: AlertsView | None, acks: AcksView | None) -> AlertsSnapshot | None:
    if alerts is None:
        return None
    return AlertsSnapshot(
        open=tuple(
            OpenAlert(key, alert, _ack(acks, key, alert))
            for key, alert in alerts.open_by_id().items()
        ),
        recent=tuple(alerts.recent),
        counts=dict(alerts.counts),
    )


def _ack(acks: AcksView | None, key: str, alert: Alert) -> AckSnapshot | None:
    ack = acks.of(key, alert) if acks is not None else None
    return AckSnapshot(ack.by, ack.at, ack.alert_t) if ack is not None else None


Copy = TypeVar("Copy")


def copy_of(snapshot_type: type[Copy], source: object) -> Copy:
    """A frozen snapshot of `source`: each of the snapshot dataclass's fields read by its name."""
    values: dict[str, Any] = {f.name: getattr(source, f.name) for f in fields(snapshot_type)}  # type: ignore[arg-type]
    return snapshot_type(**values)


def serial_snapshot(s: SerialLinkView) -> SerialSnapshot:
    return copy_of(SerialSnapshot, s)


def i2c_snapshot(bus: I2cBusView) -> tuple[I2cSensorSnapshot, ...]:
    return tuple(
        I2cSensorSnapshot(s.name, s.failed, s.reads, s.read_errors + s.invalid_values, s.ident)
        for s in list(bus.sensors.values())
    )


def store_snapshot(st: StoreView) -> StoreSnapshot:
    return copy_of(StoreSnapshot, st)


def uplink_snapshot(up: UplinkStatus, now: float) -> UplinkSnapshot:
    return UplinkSnapshot(
        broker=up.broker,
        ack_mode=up.ack_mode,
        connected=up.connected,
        state=up.state,
        last_error=up.last_error,
        backlog_records=up.backlog_records,
        backlog_age_s=up.backlog_age_s(now),
        last_seq=up.last_seq,
        acked_seq=up.acked_seq,
        reconnects=up.reconnects,
        lost_before_delivery=up.lost_before_delivery,
        published_ranges=up.published_ranges,
        published_records=up.published_records,
        published_messages=up.published_messages,
        published_bytes=up.published_bytes,
        resends=up.resends,
    )


def sms_snapshot(sms: SmsView) -> SmsSnapshot:
    modem, policy = sms.modem, sms.policy
    return SmsSnapshot(
        modem=ModemSnapshot(
            path=modem.path,
            ready=modem.ready,
            connected=modem.connected,
            registration=modem.registration_text(),
            signal_dbm=modem.signal_dbm,
            signal_rssi=modem.signal_rssi,
            operator=modem.operator,
            last_error=modem.last_error,
            reopens=modem.reopens,
            power_cycles=modem.power_cycles,
            restarts_detected=modem.restarts_detected,
        ),
        emulated=sms.emulated,
        queued=sms.queued,
        oldest_queued_utc=sms.oldest_queued_utc,
        sent=sms.sent,
        given_up=sms.given_up,
        failed_attempts=sms.failed_attempts,
        last_sent_utc=sms.last_sent_utc,
        last_sent_to=sms.last_sent_to,
        last_given_up=sms.last_given_up,
        last_send_error=sms.last_send_error,
        pin_rejected=sms.pin_rejected,
        policy=None if policy is None else copy_of(SmsPolicySnapshot, policy),
        would_have_sent=tuple(d.describe() for d in list(sms.would_have_sent)),
    )


def models_snapshot(models: ModelsView) -> ModelsSnapshot:
    return ModelsSnapshot(
        active=dict(models.active),
        origin=dict(models.origin),
        previous=dict(models.previous),
        outcomes=tuple(models.outcomes),
        installs=models.installs,
        refusals=models.refusals,
        rollbacks=models.rollbacks,
        automatic_rollbacks=models.automatic_rollbacks,
    )
