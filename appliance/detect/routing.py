"""The alert stage: the one owner of alert state.

Alerts come from the detect stage (anomaly_*) and the sensor-health checks (<rule>_*, one channel
each). Here they are collapsed when most channels or most assets alarm at once (one systemic
alert instead of a storm), an anomaly on an asset whose sensors are reporting faults says so (a
stuck or unplugged sensor makes the model see an "anomaly" too), and what remains is kept as the
open and recent alerts for the status page, then handed to the store and the SMS intake.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence

import structlog

from appliance.detect.alarms import SystemicCheck, SystemicSettings
from appliance.detect.thresholds import STATE_VERSION, check_state_header, is_number
from appliance.errors import ApplianceError
from appliance.records import Alert
from appliance.store import StoredRecord

log = structlog.get_logger(__name__)

RECENT_ALERTS = 50
AlertSink = Callable[[Sequence[Alert]], Awaitable[None]]
"""Takes routed alerts and returns once it has them safe (the SMS intake)."""
AlertKey = tuple[str, str | None, str]
"""(asset, channel, family): family is the kind without _raised/_escalated/_cleared."""
StoreRouted = Callable[[Sequence[Alert]], Awaitable[None]]
"""Stores routed alerts together with the router's state (AlertRouter.to_state), in one
transaction: the alerts passed on and what the operator was told are durable together."""
ROUTER_STATE = ("", "alert_router")
"""Its (asset, kind) in the store's detector_state table: gateway-wide, so no asset."""
ALERT_FIELDS = ("asset", "t", "severity", "kind", "message", "channel")


def alert_family(kind: str) -> str:
    return kind.rsplit("_", 1)[0]


def alert_id(alert: Alert) -> str:
    """The router's key as one string, "asset|channel|family" (the page's and the store's)."""
    return f"{alert.asset}|{alert.channel or ''}|{alert_family(alert.kind)}"


def channel_member(alert: Alert) -> str:
    return f"{alert.asset}/{alert.channel}" if alert.channel is not None else ""


def asset_member(alert: Alert) -> str:
    return alert.asset if alert.kind.startswith("anomaly_") else ""


class AlertRouter:
    def __init__(
        self,
        gateway_id: str,
        channels: Collection[str],
        assets: Collection[str],
        settings: SystemicSettings | None = None,
    ) -> None:
        """`channels`: the monitored channels as "asset/channel"; `assets`: the scored assets."""
        self.channels = frozenset(channels)
        self.assets = frozenset(assets)
        self._by_channel = SystemicCheck(f"{gateway_id} sensors", settings, channel_member)
        self._by_asset = SystemicCheck(gateway_id, settings, asset_member)
        self.open: dict[AlertKey, Alert] = {}
        """Alarms raised and not yet cleared (after collapsing), for the status page."""
        self.recent: deque[Alert] = deque(maxlen=RECENT_ALERTS)
        self.counts: dict[str, int] = {}
        """Alerts passed on, by kind, since start."""
        self._seen_open: dict[AlertKey, Alert] = {}
        """Every alarm open at the source, including those held back as systemic."""
        self.diagnosis: Callable[[str], tuple[str, bool] | None] = lambda asset: None
        """An asset's latest diagnosis in words (appliance/diagnosis/live.py) and whether it
        names a fault; None without one. A fault leads an anomaly alarm's text; "no known
        pattern, velocity ... zone B" follows the anomaly's numbers."""

    def route(self, t: float, alerts: Sequence[Alert]) -> list[Alert]:
        """This batch's alerts after collapsing and annotating, in order; updates open/recent."""
        for alert in alerts:
            self._track(self._seen_open, alert)
        channel_alarming = {channel_member(a) for a in self._seen_open.values() if a.channel}
        asset_alarming = {asset_member(a) for a in self._seen_open.values()} - {""}
        passed = self._by_channel.filter(t, channel_alarming, self.channels, alerts)
        passed = self._by_asset.filter(t, asset_alarming, self.assets, passed)
        out = [self._annotate(alert) for alert in passed]
        for alert in out:
            self._track(self.open, alert)
            self.recent.append(alert)
            self.counts[alert.kind] = self.counts.get(alert.kind, 0) + 1
        return out

    def reopen(self, alert: Alert) -> None:
        """Show `alert` as open without passing it on (an alarm found open at a restart)."""
        self._track(self._seen_open, alert)
        self._track(self.open, alert)

    def drop(self, key: AlertKey) -> None:
        """Forget an open alarm without passing anything on (its source no longer exists)."""
        self._seen_open.pop(key, None)
        self.open.pop(key, None)

    def open_anomaly(self, asset: str) -> Alert | None:
        """The asset's open anomaly alarm as the operator was told it (raised or escalated)."""
        return self.open.get((asset, None, "anomaly"))

    def open_by_id(self) -> dict[str, Alert]:
        """The open alarms by id (alert_id), a copy: the status board's view."""
        return {alert_id(a): a for a in list(self.open.values())}

    def held_open(self) -> dict[AlertKey, Alert]:
        """Every alarm open at the source, including those held back as systemic."""
        return dict(self._seen_open)

    def to_state(self) -> dict[str, object]:
        """What the operator was told, to be shown again after a restart (counts restart)."""
        return {
            "version": STATE_VERSION,
            "kind": "alert_router",
            "open": [alert_to_state(a) for a in self.open.values()],
            "held_open": [alert_to_state(a) for a in self._seen_open.values()],
            "recent": [alert_to_state(a) for a in self.recent],
            "systemic": {
                name: {"active": check.active, "silenced": sorted(check.silenced)}
                for name, check in self._checks().items()
            },
        }

    def restore(self, state: Mapping[str, object]) -> None:
        """Continue from `to_state()`; ValueError naming the field if anything is off (then
        nothing changes)."""
        check_state_header(state, "alert_router")
        opened = _alerts_from_state(state, "open")
        held = _alerts_from_state(state, "held_open")
        recent = _alerts_from_state(state, "recent")
        systemic = state.get("systemic")
        if not isinstance(systemic, dict):
            raise ValueError("systemic: must be an object")
        checks = {
            name: _systemic_from_state(systemic.get(name), f"systemic.{name}")
            for name in self._checks()
        }
        self.open.clear()
        self._seen_open.clear()
        for alert in held:
            self._track(self._seen_open, alert)
        for alert in opened:
            self._track(self.open, alert)
        self.recent.clear()
        self.recent.extend(recent)
        for name, check in self._checks().items():
            check.set_state(*checks[name])

    def _checks(self) -> dict[str, SystemicCheck]:
        return {"channels": self._by_channel, "assets": self._by_asset}

    def sensor_faults(self, asset: str) -> list[str]:
        """'accel_x flatline' for every sensor alarm open on the asset."""
        return [
            f"{channel} {family.replace('_', ' ')}"
            for (owner, channel, family) in sorted(self._seen_open, key=str)
            if owner == asset and channel is not None and family != "drift"
        ]

    def _annotate(self, alert: Alert) -> Alert:
        """An anomaly alarm leads with the diagnosis ("pump-1: outer-race defect likely (...),
        velocity 7.1 mm/s zone C; anomaly: ...") and names the sensors alarming on the asset."""
        if alert.kind not in ("anomaly_raised", "anomaly_escalated"):
            return alert
        message = alert.message
        diagnosis = self.diagnosis(alert.asset)
        if diagnosis is not None and diagnosis[1]:
            rest = message.removeprefix(f"{alert.asset}:").strip()
            message = f"{alert.asset}: {diagnosis[0]}; {rest}"
        elif diagnosis is not None:
            message += f"; {diagnosis[0]}"
        faults = self.sensor_faults(alert.asset)
        if faults:
            message += f" - while {', '.join(faults)}: check those sensors before the machine"
        return Alert(alert.asset, alert.t, alert.severity, alert.kind, message)

    @staticmethod
    def _track(table: dict[AlertKey, Alert], alert: Alert) -> None:
        key = (alert.asset, alert.channel, alert_family(alert.kind))
        if alert.kind.endswith("_diagnosed"):
            return  # a follow-up to the open alarm (appliance/diagnosis/followup.py), not one
        if alert.kind.endswith("_cleared"):
            table.pop(key, None)
        else:
            table[key] = alert


def alert_to_state(alert: Alert) -> dict[str, object]:
    return {name: getattr(alert, name) for name in ALERT_FIELDS}


def alert_from_state(value: object, where: str) -> Alert:
    """An Alert from `alert_to_state()`; ValueError naming the field if anything is off."""
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be an object")
    missing = [name for name in ALERT_FIELDS if name not in value]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    texts = {name: value[name] for name in ("asset", "kind", "message")}
    for name, text in texts.items():
        if not isinstance(text, str) or not text:
            raise ValueError(f"{where}.{name}: must be a non-empty string")
    t, severity, channel = value["t"], value["severity"], value["channel"]
    if not (is_number(t) and math.isfinite(t)):
        raise ValueError(f"{where}.t: must be a finite number")
    if severity != "warning" and severity != "critical":
        raise ValueError(f"{where}.severity: must be 'warning' or 'critical'")
    if channel is not None and not (isinstance(channel, str) and channel):
        raise ValueError(f"{where}.channel: must be null or a non-empty string")
    return Alert(texts["asset"], float(t), severity, texts["kind"], texts["message"], channel)


def _alerts_from_state(state: Mapping[str, object], name: str) -> list[Alert]:
    value = state.get(name)
    if not isinstance(value, list):
        raise ValueError(f"{name}: must be a list")
    return [alert_from_state(item, f"{name}[{i}]") for i, item in enumerate(value)]


def _systemic_from_state(value: object, where: str) -> tuple[bool, list[str]]:
    if not isinstance(value, dict) or not isinstance(value.get("active"), bool):
        raise ValueError(f"{where}.active: must be true or false")
    silenced = value.get("silenced")
    if not isinstance(silenced, list) or not all(isinstance(m, str) for m in silenced):
        raise ValueError(f"{where}.silenced: must be a list of names")
    return bool(value["active"]), silenced


async def run_alert_stage(
    router: AlertRouter,
    alerts_in: asyncio.Queue[Alert],
    out: asyncio.Queue[StoredRecord],
    sms: AlertSink | None = None,
    store_routed: StoreRouted | None = None,
    on_routed: Callable[[], None] | None = None,
) -> None:
    """Route alerts as they come (each with whatever else is already queued) until cancelled;
    `on_routed` is called once the open and recent alerts show a batch (the status board's
    change event).

    The routed alerts go to the store queue and, if given, to `sms` (the SMS intake: policy and
    durable queue); the batch is marked done only after `sms` returned, so `alerts_in.join()`
    means "every alert is queued for the store and, if it goes by SMS, committed to the SMS
    queue".

    With `store_routed`, the routed alerts are stored at once together with the router's state
    (what the operator was told, for a restart), before the SMS intake: a crash then loses
    neither, and an alarm whose SMS was not queued yet is offered again at the restart
    (appliance/detect/restart.py). If that fails, the alerts go to the store queue instead
    (logged; the state is saved with the next batch or the periodic save)."""
    while True:
        batch = [await alerts_in.get()]
        while not alerts_in.empty():
            batch.append(alerts_in.get_nowait())
        try:
            routed = router.route(max(a.t for a in batch), batch)
            if on_routed is not None:
                on_routed()
            for alert in routed:
                log.warning(
                    alert.kind,
                    asset=alert.asset,
                    channel=alert.channel,
                    severity=alert.severity,
                    message=alert.message,
                )
            await _store(routed, out, store_routed)
            if sms is not None and routed:
                await sms(routed)
        finally:
            for _ in batch:
                alerts_in.task_done()


async def _store(
    routed: Sequence[Alert], out: asyncio.Queue[StoredRecord], store_routed: StoreRouted | None
) -> None:
    if store_routed is not None:
        try:
            await store_routed(routed)
            return
        except (ApplianceError, ValueError) as exc:
            log.warning("alert_state_save_failed", reason=str(exc), alerts=len(routed))
    for alert in routed:
        await out.put(alert)
