"""After a restart: show at once the alarms that were open, and make the detectors agree.

The alert router's state (open alerts, those held back as systemic, the recent ones) is stored
with the alerts of every routed batch, in one transaction, and with the detector states; the
detectors' alarm episodes and the sensor-health latches are saved every minute and at shutdown.
At start:

- with a saved router state, it is the record of what was passed on (it is never older than a
  detector state): an alarm episode or health latch saved before its last raise or clear is
  aligned with it, without an event. An open alarm whose source is gone (the asset or channel
  was removed, or the asset is no longer scored) is dropped with a log line;
- without one (first start after an upgrade, or an unreadable row), the open alarms are rebuilt
  from the detectors (raise time: the episode's start) and health latches (time: now);
- each asset's alarm and sensor faults go on the status board before the first window.

Nothing is passed on again: no new alert record. SMS after a restart: `renotify_open_alarms`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import replace

import structlog

from appliance.detect.acks import AlertAcks
from appliance.detect.assets import AssetScoring, States
from appliance.detect.health import AssetHealth
from appliance.detect.routing import ROUTER_STATE, AlertRouter, alert_family, alert_id
from appliance.records import Alert, Severity
from appliance.sms.sender import SmsIntake
from appliance.status import StatusBoard
from appliance.store import SmsQueue

log = structlog.get_logger(__name__)

STILL_OPEN_NOTE = " (still open after a restart)"


def restore_alerts(
    router: AlertRouter,
    states: States,
    scorings: Mapping[str, AssetScoring],
    monitors: Mapping[str, AssetHealth],
    board: StatusBoard,
    now: float,
) -> None:
    """Restore the open alarms (see the module docstring) and show them on the board."""
    if _restore_router(router, states.get(ROUTER_STATE)):
        _align_detectors(router, scorings)
        _align_health(router, monitors)
    else:
        _reopen_from_sources(router, scorings, monitors, now)
    for asset, scoring in scorings.items():
        detector = scoring.detector
        board.asset(asset).alarm = detector.alarm.severity if detector is not None else None
    for asset, monitor in monitors.items():
        board.asset(asset).sensor_faults = monitor.active_faults()
    if router.open:
        log.info("open_alerts_restored", alerts=sorted(alert_id(a) for a in router.open.values()))


def _restore_router(router: AlertRouter, state: Mapping[str, object] | None) -> bool:
    if state is None:
        return False
    try:
        router.restore(state)
    except ValueError as exc:
        log.warning("alert_state_ignored", reason=str(exc))
        return False
    return True


def _align_detectors(router: AlertRouter, scorings: Mapping[str, AssetScoring]) -> None:
    held = router.held_open()
    for asset, scoring in scorings.items():
        key = (asset, None, "anomaly")
        alert = held.get(key)
        if scoring.detector is None:
            if alert is not None:
                _drop(router, alert, "the asset is not scored now")
            continue
        if alert is None:
            scoring.detector.alarm.align(None, math.nan)
        else:
            scoring.detector.alarm.align(alert.severity, alert.t)
    for (asset, channel, family), alert in held.items():
        if family == "anomaly" and channel is None and asset not in scorings:
            _drop(router, alert, "the asset is not configured now")


def _align_health(router: AlertRouter, monitors: Mapping[str, AssetHealth]) -> None:
    wanted: dict[str, dict[tuple[str, str], Severity]] = {asset: {} for asset in monitors}
    for (asset, channel, family), alert in router.held_open().items():
        if channel is None:
            continue
        if asset not in monitors or not monitors[asset].has_channel(channel):
            _drop(router, alert, "the channel is not configured now")
            continue
        wanted[asset][channel, family] = alert.severity
    for asset, monitor in monitors.items():
        monitor.align_alarms(wanted[asset])


def _drop(router: AlertRouter, alert: Alert, reason: str) -> None:
    router.drop((alert.asset, alert.channel, alert_family(alert.kind)))
    log.warning("open_alert_dropped_at_restart", alert=alert_id(alert), reason=reason)


def _reopen_from_sources(
    router: AlertRouter,
    scorings: Mapping[str, AssetScoring],
    monitors: Mapping[str, AssetHealth],
    now: float,
) -> None:
    for asset, scoring in scorings.items():
        alarm = scoring.detector.alarm if scoring.detector is not None else None
        if alarm is not None and alarm.severity is not None:
            since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(alarm.since))
            message = f"{asset}: anomaly open since {since} (found open at a restart)"
            router.reopen(Alert(asset, alarm.since, alarm.severity, "anomaly_raised", message))
    for asset, monitor in monitors.items():
        for (channel, rule), severity in monitor.open_alarms().items():
            message = f"{asset}: {channel} {rule.replace('_', ' ')} (found open at a restart)"
            router.reopen(Alert(asset, now, severity, f"{rule}_raised", message, channel))


async def renotify_open_alarms(
    router: AlertRouter, acks: AlertAcks, sms_queue: SmsQueue, intake: SmsIntake, now: float
) -> list[Alert]:
    """Offer the SMS policy, once more, each open alert that is not acknowledged and whose SMS
    is neither sent nor still queued (queued ones that will give up by `now` do not count: the
    gateway was down longer than the SMS give-up time). The alert keeps its kind and time, so a
    message queued now counts at the next restart; its text says it is still open. An alarm
    whose SMS went out (or is still on its way) is not sent again. Returns the alerts offered."""
    offered = []
    for alert in list(router.open.values()):
        if acks.of(alert_id(alert), alert) is not None:
            continue
        if await sms_queue.sms_for_alert(alert, now) > 0:
            continue
        offered.append(replace(alert, message=alert.message + STILL_OPEN_NOTE))
    if offered:
        log.info("open_alerts_offered_for_sms", alerts=[alert_id(a) for a in offered])
        await intake.accept(offered)
    return offered
