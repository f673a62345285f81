"""`appliance-receiver drift`: one run, its changes (optionally POSTed to the webhooks), and the
open findings."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from receiver.db import Database
from receiver.drift import store
from receiver.drift.run import last_complete_day, run_drift
from receiver.drift.settings import DriftSettings
from receiver.webhooks import WebhookSender, WebhookSettings


async def drift_once(
    database: Database,
    settings: DriftSettings,
    webhooks: WebhookSettings | None,
    *,
    as_of: int | None,
    gateways: str,
    list_open: bool,
) -> list[dict[str, Any]]:
    """Run the analysis once: a summary line, the events, then (if asked) the open findings."""
    now = time.time()
    last_day = last_complete_day(now) if as_of is None else as_of
    run = await run_drift(database, settings.params, last_day=last_day, now=now,
                          gateways=gateways)  # fmt: skip
    summary: dict[str, Any] = {
        "type": "drift_run",
        "last_day": last_day,
        "assets": run.assets,
        "days_updated": run.days_updated,
        "events": len(run.events),
        "failures": run.failures,
    }
    if webhooks is not None:
        summary["webhooks"] = await notify(webhooks, run.events)
    lines = [summary, *run.events]
    if list_open:
        sql = store.drift_sql(database.dialect.name)
        found = await database.transaction("reading findings", store.findings, sql, False)
        lines.extend({"type": "open_finding", **finding} for finding in found)
    return lines


async def notify(settings: WebhookSettings, events: list[dict[str, Any]]) -> dict[str, Any]:
    """POST the events and wait until each is delivered or dead-lettered; per URL its counts."""
    sender = WebhookSender(settings)
    for event in events:
        sender.offer(event)
    task = asyncio.create_task(sender.run())
    try:
        await sender.drain()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return {url: vars(stats) for url, stats in sender.stats.items()}
