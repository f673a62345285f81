"""Keeps each gateway's retained status (`<prefix>/<gateway>/status`; its last will says
offline) in gateway_states, for the fleet page. Every receiver instance subscribes on a client
of its own without sharing: the status is tiny and an upsert, so each instance storing it is
harmless, and a shared subscription would not get the retained messages. A status that does not
decode, or names another gateway than its topic, is counted and logged, never stored."""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from collections import Counter
from typing import Any

import aiomqtt
import structlog

from appliance.net.backoff import Backoff
from appliance.net.cancellation import raise_if_cancelling
from appliance.uplink.schema import SchemaError, decode_status
from receiver.db import Database
from receiver.db.dialect import DbApiConnection
from receiver.errors import DatabaseError
from receiver.settings import ReceiverSettings

log = structlog.get_logger(__name__)

SELECT_FIELDS = "SELECT fields_json FROM gateway_states WHERE gateway = ?"
UPSERT_STATE = (
    "INSERT INTO gateway_states (gateway, state, fields_json, received_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (gateway) DO UPDATE SET state = excluded.state,"
    " fields_json = excluded.fields_json, received_at = excluded.received_at"
)


def status_subscription(prefix: str) -> str:
    return f"{prefix}/+/status"


def gateway_of_status_topic(topic: str) -> str:
    return topic.rsplit("/", 2)[-2]


async def store_status(
    database: Database, topic: str, payload: bytes, received_at: float
) -> str | None:
    """Store one status message; None if stored, else why it was refused."""
    if not payload:
        return "empty"  # a retained status being cleared: keep the last one known
    try:
        status = decode_status(payload)
    except SchemaError as exc:
        return exc.reason
    if status.gateway != gateway_of_status_topic(topic):
        return "gateway_mismatch"
    postgres = database.dialect.name == "postgresql"
    sql = [text.replace("?", "%s") if postgres else text for text in (SELECT_FIELDS, UPSERT_STATE)]
    row = (status.gateway, status.state, dict(status.fields), received_at)
    await database.transaction(f"storing the status of {status.gateway}", upsert, sql, row)
    return None


def upsert(
    db: DbApiConnection, sql: list[str], row: tuple[str, str, dict[str, Any], float]
) -> None:
    """Store the status; one without `models` (the last will names none) keeps the models of
    the status before, so an offline gateway still shows what it last ran."""
    gateway, state, fields, received_at = row
    if "models" not in fields:
        before = db.execute(sql[0], (gateway,)).fetchone()
        models = json.loads(before[0]).get("models") if before else None
        if models is not None:
            fields = {**fields, "models": models}
    db.execute(sql[1], (gateway, state, json.dumps(fields), received_at))


class StatusWatch:
    """`await run()` until cancelled; `refused` counts statuses not stored, by reason."""

    def __init__(self, settings: ReceiverSettings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self.refused: Counter[str] = Counter()
        self.stored = 0
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        backoff = Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s,
                          random.Random())  # fmt: skip
        while True:
            try:
                await self._session(backoff)
            except aiomqtt.MqttError as exc:
                raise_if_cancelling()
                log.warning("status_watch_disconnected", reason=str(exc))
            self.subscribed.clear()
            await asyncio.sleep(backoff.next_delay())

    async def _session(self, backoff: Backoff) -> None:
        settings = self.settings
        tls = None
        if settings.broker.tls:
            tls = ssl.create_default_context(cafile=str(settings.ca_path) if settings.ca_path
                                             else None)  # fmt: skip
        async with aiomqtt.Client(
            settings.broker.host,
            settings.broker.port,
            username=settings.broker.username,
            password=settings.broker.password,
            identifier=f"{settings.effective_client_id}-status",
            clean_session=True,
            keepalive=settings.keepalive_s,
            tls_context=tls,
        ) as client:
            await client.subscribe(status_subscription(settings.prefix), qos=1)
            backoff.reset()
            self.subscribed.set()
            async for message in client.messages:
                await self._handle(message.topic.value, message.payload)

    async def _handle(self, topic: str, payload: object) -> None:
        data = payload if isinstance(payload, bytes) else str(payload or "").encode()
        try:
            reason = await store_status(self.database, topic, data, time.time())
        except DatabaseError as exc:
            reason = "db_error"
            log.warning("status_not_stored", topic=topic, error=str(exc))
        if reason is None:
            self.stored += 1
        else:
            self.refused[reason] += 1
            log.warning("status_refused", topic=topic, reason=reason, payload_bytes=len(data))
