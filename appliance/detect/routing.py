"""The alert stage: the one owner of alert state.

Alerts come from the detect stage (anomaly_*) and the sensor-health checks (<rule>_*, one channel
each). Here they are collapsed when most channels or most assets alarm at once (one systemic
alert instead of a storm), an anomaly on an asset whose sensors are reporting faults says so (a
stuck or unplugged sensor makes the model see an "anomaly" too), and what remains is kept as the
open and recent alerts for the status page, then handed to the store and the SMS intake.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence

import structlog

from appliance.detect.alarms import SystemicCheck, SystemicSettings
from appliance.records import Alert
from appliance.store import StoredRecord

log = structlog.get_logger(__name__)

RECENT_ALERTS = 50
AlertSink = Callable[[Sequence[Alert]], Awaitable[None]]
"""Takes routed alerts and returns once it has them safe (the SMS intake)."""
AlertKey = tuple[str, str | None, str]
"""(asset, channel, family): family is the kind without _raised/_escalated/_cleared."""


def alert_family(kind: str) -> str:
    return kind.rsplit("_", 1)[0]


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

    def sensor_faults(self, asset: str) -> list[str]:
        """'accel_x flatline' for every sensor alarm open on the asset."""
        return [
            f"{channel} {family.replace('_', ' ')}"
            for (owner, channel, family) in sorted(self._seen_open, key=str)
            if owner == asset and channel is not None and family != "drift"
        ]

    def _annotate(self, alert: Alert) -> Alert:
        if alert.kind not in ("anomaly_raised", "anomaly_escalated"):
            return alert
        faults = self.sensor_faults(alert.asset)
        if not faults:
            return alert
        note = f" - while {', '.join(faults)}: check those sensors before the machine"
        return Alert(alert.asset, alert.t, alert.severity, alert.kind, alert.message + note)

    @staticmethod
    def _track(table: dict[AlertKey, Alert], alert: Alert) -> None:
        key = (alert.asset, alert.channel, alert_family(alert.kind))
        if alert.kind.endswith("_cleared"):
            table.pop(key, None)
        else:
            table[key] = alert


async def run_alert_stage(
    router: AlertRouter,
    alerts_in: asyncio.Queue[Alert],
    out: asyncio.Queue[StoredRecord],
    sms: AlertSink | None = None,
) -> None:
    """Route alerts as they come (each with whatever else is already queued) until cancelled.

    The routed alerts go to the store queue and, if given, to `sms` (the SMS intake: policy and
    durable queue); the batch is marked done only after `sms` returned, so `alerts_in.join()`
    means "every alert is queued for the store and, if it goes by SMS, committed to the SMS
    queue"."""
    while True:
        batch = [await alerts_in.get()]
        while not alerts_in.empty():
            batch.append(alerts_in.get_nowait())
        try:
            routed = router.route(max(a.t for a in batch), batch)
            for alert in routed:
                log.warning(
                    alert.kind,
                    asset=alert.asset,
                    channel=alert.channel,
                    severity=alert.severity,
                    message=alert.message,
                )
                await out.put(alert)
            if sms is not None and routed:
                await sms(routed)
        finally:
            for _ in batch:
                alerts_in.task_done()
