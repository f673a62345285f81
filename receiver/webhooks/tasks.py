"""The receiver service's cloud-side tasks beside ingest: the periodic drift analysis and the
webhook sender, with the gateway alerts handed over from the ingest path (never blocking it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from appliance.records import Alert
from appliance.uplink.schema import Part
from receiver.db import open_database
from receiver.service import Receiver
from receiver.settings import ReceiverSettings
from receiver.webhooks.sender import WebhookSender

log = structlog.get_logger(__name__)


def start_drift_and_webhooks(
    receiver: Receiver, settings: ReceiverSettings
) -> list[asyncio.Task[None]]:
    """Start what the settings ask for; the tasks, for the caller to cancel."""
    tasks = []
    sender = WebhookSender(settings.webhooks) if settings.webhooks.routes else None
    if sender is not None:
        tasks.append(asyncio.create_task(sender.run()))
        if settings.webhooks.wants_alerts:
            receiver.on_alerts = lambda part: offer_alerts(sender, part)
    if settings.drift.every_s > 0:
        notify = sender.offer if sender is not None else log_event
        tasks.append(asyncio.create_task(drift_on_own_connection(settings, notify)))
    return tasks


async def drift_on_own_connection(
    settings: ReceiverSettings, notify: Callable[[dict[str, Any]], object]
) -> None:
    """The periodic drift analysis on a connection (and database thread) of its own: reading a
    day of records must not hold up the ingest path's transactions."""
    from receiver.drift.run import drift_forever

    database = await open_database(settings.db_url)
    try:
        await drift_forever(database, settings.drift, notify)
    finally:
        await database.close()


def offer_alerts(sender: WebhookSender, part: Part) -> None:
    for seq, record in part.records:
        if isinstance(record, Alert):
            sender.offer(alert_event(part.gateway, seq, record))


def alert_event(gateway: str, seq: int, alert: Alert) -> dict[str, Any]:
    """The JSON a webhook receives for one gateway alert."""
    return {
        "type": "gateway_alert",
        "gateway": gateway,
        "asset": alert.asset,
        "seq": seq,
        "t": alert.t,
        "severity": alert.severity,
        "kind": alert.kind,
        "message": alert.message,
        "channel": alert.channel,
    }


def log_event(event: dict[str, Any]) -> int:
    """Without webhooks a finding's change is still logged for whoever reads the logs."""
    log.info("drift_finding", **{k: v for k, v in event.items() if k != "evidence"})
    return 0
