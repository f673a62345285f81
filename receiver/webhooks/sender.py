"""Webhook delivery: each event routed to the routes that want it, a bounded queue and one worker
per route (a dead endpoint delays only its own events), a JSON POST signed with HMAC-SHA256,
retries with exponential backoff and jitter, and a dead-letter count once they are exhausted.
`offer()` never blocks and never raises: the ingest path and the drift task hand events over
and go on.

The receiving end checks: X-Appliance-Signature == "sha256=" + hex(HMAC-SHA256(secret,
X-Appliance-Timestamp + "." + body)); the timestamp lets it refuse replays, and
X-Appliance-Delivery (one id per event, the same on every retry) lets it drop duplicates."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from appliance.net.backoff import Backoff
from receiver.webhooks.settings import Route, WebhookSettings

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Appliance-Signature"
TIMESTAMP_HEADER = "X-Appliance-Timestamp"
DELIVERY_HEADER = "X-Appliance-Delivery"


@dataclass
class RouteStats:
    delivered: int = 0
    retries: int = 0
    dead_letters: int = 0
    """Events given up after max_attempts POSTs."""
    dropped: int = 0
    """Events refused because the route's queue was full."""


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class WebhookSender:
    """`offer(event)` from anywhere on the loop; `await run()` delivers until cancelled."""

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.stats = {route.url: RouteStats() for route in settings.routes}
        self._queues: dict[str, asyncio.Queue[tuple[str, bytes]]] = {
            route.url: asyncio.Queue(settings.queue_size) for route in settings.routes
        }
        self._clock = clock
        self._rng = rng or random.Random()

    def offer(self, event: Mapping[str, Any]) -> int:
        """Queue the event for every route that wants it; how many took it."""
        body: bytes | None = None
        taken = 0
        for route in self.settings.routes:
            if not route.wants(event):
                continue
            body = body or json.dumps(event, separators=(",", ":"), default=str).encode()
            try:
                self._queues[route.url].put_nowait((str(uuid.uuid4()), body))
                taken += 1
            except asyncio.QueueFull:
                self.stats[route.url].dropped += 1
                log.warning("webhook_queue_full", url=route.url, event_type=event.get("type"),
                            queue_size=self.settings.queue_size)  # fmt: skip
        return taken

    def pending(self) -> int:
        return sum(queue.qsize() for queue in self._queues.values())

    async def drain(self) -> None:
        """Until every event queued so far is delivered or dead-lettered (run() must run)."""
        for queue in self._queues.values():
            await queue.join()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session, asyncio.TaskGroup() as tasks:
            for route in self.settings.routes:
                tasks.create_task(self._work(session, route))

    async def _work(self, session: aiohttp.ClientSession, route: Route) -> None:
        queue = self._queues[route.url]
        while True:
            delivery, body = await queue.get()
            await self._deliver(session, route, delivery, body)
            queue.task_done()

    async def _deliver(
        self, session: aiohttp.ClientSession, route: Route, delivery: str, body: bytes
    ) -> None:
        stats = self.stats[route.url]
        backoff = Backoff(self.settings.initial_backoff_s, self.settings.max_backoff_s, self._rng)
        for attempt in range(1, self.settings.max_attempts + 1):
            failure = await self._post(session, route, delivery, body)
            if failure is None:
                stats.delivered += 1
                return
            if attempt == self.settings.max_attempts:
                break
            stats.retries += 1
            delay = backoff.next_delay()
            log.warning("webhook_retry", url=route.url, attempt=attempt, reason=failure,
                        retry_in_s=round(delay, 2))  # fmt: skip
            await asyncio.sleep(delay)
        stats.dead_letters += 1
        log.error("webhook_dead_letter", url=route.url, delivery=delivery, reason=failure,
                  attempts=self.settings.max_attempts)  # fmt: skip

    async def _post(
        self, session: aiohttp.ClientSession, route: Route, delivery: str, body: bytes
    ) -> str | None:
        """None once the endpoint took it (2xx); else why not."""
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(route.secret, timestamp, body),
            DELIVERY_HEADER: delivery,
        }
        try:
            async with session.post(route.url, data=body, headers=headers) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # whatever else: this event's failure, not the worker's end
            log.exception("webhook_post_failed", url=route.url)
            return f"{type(exc).__name__}: {exc}"
