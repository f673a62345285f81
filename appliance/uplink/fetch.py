"""Fetch on demand, the gateway's side (PROTOCOL.md, "Fetch on demand"): the data team asks on
the command topic for an asset's records of a time range; the gateway answers accepted (with
the count it will send) or refused (with the reason), sends the records in batches at the
replay rate on the `fetched` topics, each batch encoded as a range's parts are but outside the
ranges, the ledger and the acknowledged seq, and answers done once the broker acknowledged
every batch.

One fetch at a time: another one is refused while it runs (asking again with the same id only
repeats the answer: QoS 1 may deliver a command twice). The fetch outlives a connection (the
next one goes on from the last batch the broker acknowledged) but not a restart of the
gateway: the receiver's `fetch` command then asks again; records that landed meanwhile are
not duplicated (the receiver stores them by (gateway, seq)).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from appliance.errors import StoreError
from appliance.store import Delivery, OutboxRange
from appliance.uplink.commands import Command
from appliance.uplink.ranges import Pacer, Prepared, Sleep, encode_range
from appliance.uplink.schema import parse_data_topic
from appliance.uplink.schema.fetched import fetched_topic
from appliance.uplink.settings import UplinkSettings

log = structlog.get_logger(__name__)

Outcome = dict[str, Any]


class FetchLink(Protocol):
    """What a fetch sends with: one connection's senders (sending.Senders)."""

    def read_limit(self) -> int:
        """Records in one range, at most, for the link as measured now."""

    def range_bytes(self) -> int:
        """Bytes of one range, at most, for the link as measured now."""

    async def publish_aside(self, messages: list[tuple[str, bytes]]) -> None:
        """Publish messages outside the ranges and the ledger, each in its turn after live
        parts; returns once the broker acknowledged every one."""


Reply = Callable[[str, Outcome], Awaitable[None]]
"""Publish an answer with this command id on the reply topic."""


@dataclass
class FetchJob:
    id: str
    asset: str
    since: float
    until: float
    records: int
    first_seq: int
    last_seq: int
    after_seq: int
    """The broker acknowledged every batch up to this seq."""
    sent: int = 0

    def outcome(self, state: str) -> Outcome:
        return {
            "accepted": True,
            "action": "fetch_records",
            "state": state,
            "asset": self.asset,
            "records": self.records,
            "sent": self.sent,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "message": f"{state}: {self.sent} of {self.records} records of {self.asset} sent",
        }


def refused(message: str) -> Outcome:
    return {"accepted": False, "action": "fetch_records", "message": message}


class Fetches:
    """The fetch that is running, if any, across the uplink's connections."""

    def __init__(self, settings: UplinkSettings, delivery: Delivery, pace: Sleep) -> None:
        self._settings = settings
        self._delivery = delivery
        self._pace = pace
        self.job: FetchJob | None = None
        self._queued = asyncio.Event()
        self.accepted = 0
        self.refused = 0
        self.done = 0

    async def accept(self, command: Command) -> Outcome:
        """Check a fetch_records command and queue it; the answer to send back."""
        try:
            outcome = await self._accept(command)
        except StoreError as exc:
            outcome = refused(f"the gateway's store cannot be read: {exc}")
        if outcome["accepted"]:
            self.accepted += 1
            log.info("fetch_accepted", id=command.id, asset=command.asset,
                     records=outcome["records"])  # fmt: skip
        else:
            self.refused += 1
            log.warning("fetch_refused", id=command.id, reason=outcome["message"])
        return outcome

    async def _accept(self, command: Command) -> Outcome:
        assert command.asset is not None and command.since is not None
        assert command.until is not None
        job = self.job
        if job is not None:
            if job.id == command.id:  # delivered twice
                return job.outcome("sending")
            return refused(
                f"busy: fetch {job.id} of {job.asset} is sending ({job.sent} of {job.records} "
                "records sent); one fetch at a time, ask again when it is done"
            )
        bound = min(self._settings.fetch_max_records, command.max_records or math.inf)
        span = await self._delivery.fetch_span(command.asset, command.since, command.until)
        if span.records > bound:
            return refused(
                f"too big: {span.records} records of {command.asset} in that range, more than "
                f"{bound:g}; ask for a shorter range"
            )
        new = FetchJob(
            command.id, command.asset, command.since, command.until, span.records,
            span.first_seq, span.last_seq, after_seq=max(0, span.first_seq - 1),
        )  # fmt: skip
        if span.records == 0:
            assets = await self._delivery.stored_assets()
            if command.asset not in assets:
                known = ", ".join(assets[:20]) or "none"
                return refused(f"unknown asset {command.asset!r}: this gateway stores {known}")
            return new.outcome("done")
        self.job = new
        self._queued.set()
        return new.outcome("sending")

    async def run(self, link: FetchLink, reply: Reply) -> None:
        """One connection's share: send the queued fetch, then wait for the next; until the
        connection ends (its task group cancels this)."""
        pacer = Pacer(self._settings.replay_records_per_s, self._pace)
        while True:
            await self._queued.wait()
            job = self.job
            if job is not None:
                try:
                    await self._send(job, link, pacer)
                    outcome = job.outcome("done")
                except StoreError as exc:
                    outcome = {**job.outcome("failed"), "accepted": False,
                               "message": f"failed after {job.sent} records: {exc}"}  # fmt: skip
                await reply(job.id, outcome)
                log.info("fetch_ended", id=job.id, asset=job.asset, records=job.sent,
                         state=outcome["state"])  # fmt: skip
                self.done += 1
                self.job = None
            self._queued.clear()

    async def _send(self, job: FetchJob, link: FetchLink, pacer: Pacer) -> None:
        while job.after_seq < job.last_seq:
            await pacer.wait()
            batch = await self._delivery.fetch_batch(
                job.asset, job.since, job.until, (job.after_seq, job.last_seq), link.read_limit()
            )
            if not batch:  # evicted meanwhile: nothing more to send
                job.after_seq = job.last_seq
                return
            found = OutboxRange(job.after_seq, batch[-1][0], batch)
            prepared = await asyncio.to_thread(self._encode, found, link.range_bytes())
            pacer.spend(prepared.records)
            await link.publish_aside(prepared.messages)
            job.after_seq = prepared.hi
            job.sent += prepared.records

    def _encode(self, found: OutboxRange, max_bytes: int) -> Prepared:
        """The batch as a range's parts (cut to `max_bytes`), on the fetched topics."""
        s = self._settings
        prepared = encode_range(found, s.gateway, s.prefix, max_bytes, s.wire_format)
        messages = []
        for topic, payload in prepared.messages:
            where = parse_data_topic(topic)
            messages.append((fetched_topic(s.prefix, s.gateway, where.kind, where.asset), payload))
        return Prepared(prepared.lo, prepared.hi, prepared.records, messages)
