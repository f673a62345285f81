"""The store task: records (features, scores, alerts) from a queue into the store in batches,
never lost silently."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import structlog

from appliance.errors import StoreError
from appliance.store.codec import StoredRecord, encode_record
from appliance.store.recorder import Recorder
from appliance.store.store import is_disk_full

# Waits between attempts to write a batch that failed; the last one repeats.
RETRY_DELAYS_S: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# On shutdown a failing batch gets this many attempts before it is given up (and logged).
FLUSH_ATTEMPTS = 3

Pause = Callable[[float], Awaitable[None]]
OnStored = Callable[[], None]

log = structlog.get_logger(__name__)


@dataclass
class PendingBatch:
    """Records taken from the queue and not yet marked done; `stored` once committed."""

    records: list[StoredRecord]
    stored: bool = False


async def run_store_writer(
    recorder: Recorder,
    queue: asyncio.Queue[StoredRecord],
    *,
    max_batch: int = 500,
    limits_every_s: float = 30.0,
    retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
    pause: Pause = asyncio.sleep,
    on_stored: OnStored | None = None,
) -> None:
    """Drain `queue` into the store (`recorder`), one transaction per batch, until cancelled.

    A batch is one record awaited plus everything already queued, up to `max_batch`. A failed write
    (e.g. SQLITE_FULL) is logged and counted (recorder.stats.write_errors) and the same batch is
    retried after the next delay in `retry_delays_s` (waited with `pause`); nothing is dropped.
    Limits are enforced after a batch once `limits_every_s` has passed since the last time (at
    once after the first batch). `queue.task_done()` is called for each record once it is stored,
    so `await queue.join()` means "everything handed over is committed"; `on_stored` is called
    after each committed batch (the composition root wires it to wake the uplink). On
    cancellation, the batch in hand and whatever is queued are flushed, then the function returns.
    """
    if max_batch < 1 or not retry_delays_s:
        raise ValueError("max_batch must be >= 1 and retry_delays_s not empty")
    pending: PendingBatch | None = None
    limits_due_at = time.monotonic()
    try:
        while True:
            pending = PendingBatch(
                refuse_malformed(recorder, queue, await take_batch(queue, max_batch))
            )
            await write_until_stored(recorder, pending, retry_delays_s, pause)
            mark_done(queue, len(pending.records))
            pending = None
            if on_stored is not None:
                on_stored()
            if time.monotonic() >= limits_due_at:
                await enforce_limits_logged(recorder)
                limits_due_at = time.monotonic() + limits_every_s
    except asyncio.CancelledError:
        await flush(recorder, queue, pending, max_batch, retry_delays_s, pause)
        if on_stored is not None:
            on_stored()


async def take_batch(queue: asyncio.Queue[StoredRecord], max_batch: int) -> list[StoredRecord]:
    """Wait for one record, then take whatever else is already queued, up to max_batch."""
    batch = [await queue.get()]
    while len(batch) < max_batch:
        try:
            batch.append(queue.get_nowait())
        except asyncio.QueueEmpty:
            break
    return batch


def refuse_malformed(
    recorder: Recorder, queue: asyncio.Queue[StoredRecord], batch: list[StoredRecord]
) -> list[StoredRecord]:
    """Drop (count and log) records that cannot be stored, so one bad record never stops the
    writer nor takes the rest of its batch down with it."""
    good = []
    for record in batch:
        try:
            encode_record(record)
        except ValueError as error:
            recorder.stats.rejected_records += 1
            log.error(
                "store_record_refused",
                record=type(record).__name__,
                asset=getattr(record, "asset", None),
                reason=str(error),
            )
            mark_done(queue, 1)
        else:
            good.append(record)
    return good


async def write_until_stored(
    recorder: Recorder,
    pending: PendingBatch,
    retry_delays_s: Sequence[float],
    pause: Pause,
    *,
    max_attempts: int | None = None,
) -> None:
    """Write `pending` in one transaction, retrying after each delay, until stored (or
    `max_attempts` tries have failed)."""
    for attempt, retry_in_s in enumerate(retry_schedule(retry_delays_s), start=1):
        await write_attempt(recorder, pending, attempt, retry_in_s)
        if pending.stored or (max_attempts is not None and attempt >= max_attempts):
            return
        await pause(retry_in_s)


async def write_attempt(
    recorder: Recorder, pending: PendingBatch, attempt: int, retry_in_s: float
) -> None:
    """One try at writing `pending`; sets `pending.stored`.

    A cancellation arriving during the try waits for the transaction to end first, so
    `pending.stored` is true to the database when the CancelledError propagates.
    """
    write = asyncio.ensure_future(recorder.add_records(pending.records))
    try:
        await asyncio.shield(write)
    except asyncio.CancelledError:
        await asyncio.wait([write])
        error = write.exception()
        if isinstance(error, StoreError):
            log_write_failed(error, pending, attempt, retry_in_s)
        pending.stored = error is None
        raise
    except StoreError as error:
        log_write_failed(error, pending, attempt, retry_in_s)
        return
    pending.stored = True


def log_write_failed(
    error: StoreError, pending: PendingBatch, attempt: int, retry_in_s: float
) -> None:
    log.warning(
        "store_write_failed",
        reason=str(error),
        disk_full=is_disk_full(error),
        records=len(pending.records),
        attempt=attempt,
        retry_in_s=retry_in_s,
    )


async def flush(
    recorder: Recorder,
    queue: asyncio.Queue[StoredRecord],
    pending: PendingBatch | None,
    max_batch: int,
    retry_delays_s: Sequence[float],
    pause: Pause,
) -> None:
    """Write the batch in hand (unless already stored) and everything still queued.

    Each batch gets FLUSH_ATTEMPTS tries, so a full disk cannot hang shutdown; what cannot be
    written is logged with its count (store_flush_failed), never dropped without a trace.
    """
    records: list[StoredRecord] = []
    if pending is not None and pending.stored:
        mark_done(queue, len(pending.records))
    elif pending is not None:
        records.extend(pending.records)
    records.extend(drain(queue))
    for start in range(0, len(records), max_batch):
        batch = PendingBatch(records[start : start + max_batch])
        await write_until_stored(
            recorder, batch, retry_delays_s, pause, max_attempts=FLUSH_ATTEMPTS
        )
        if not batch.stored:
            log.error(
                "store_flush_failed",
                lost_records=len(records) - start,
                flushed_records=start,
                attempts=FLUSH_ATTEMPTS,
            )
            mark_done(queue, len(records) - start)
            return
        mark_done(queue, len(batch.records))
    log.info("store_flushed", records=len(records))


async def enforce_limits_logged(recorder: Recorder) -> None:
    """Enforce the store's limits; failures are logged, not raised (writing goes on)."""
    try:
        report = await recorder.enforce_limits(time.time())
    except StoreError as error:
        log.warning("store_limits_failed", reason=str(error))
        return
    if report.evicted_by_age or report.evicted_by_size:
        # Delivered rows leaving is housekeeping; undelivered ones are lost: say so louder.
        emit = log.warning if report.lost_before_delivery else log.info
        emit(
            "store_evicted",
            evicted_by_age=report.evicted_by_age,
            evicted_by_size=report.evicted_by_size,
            evicted_features=report.evicted_features,
            evicted_scores=report.evicted_scores,
            evicted_alerts=report.evicted_alerts,
            lost_before_delivery=report.lost_before_delivery,
            bytes_after=report.bytes_after,
        )
    max_bytes = recorder.max_bytes
    if max_bytes is not None and report.bytes_after > max_bytes:
        log.warning("store_over_size_cap", bytes=report.bytes_after, max_bytes=max_bytes)


def drain(queue: asyncio.Queue[StoredRecord]) -> list[StoredRecord]:
    records: list[StoredRecord] = []
    while True:
        try:
            records.append(queue.get_nowait())
        except asyncio.QueueEmpty:
            return records


def mark_done(queue: asyncio.Queue[StoredRecord], count: int) -> None:
    for _ in range(count):
        queue.task_done()


def retry_schedule(retry_delays_s: Sequence[float]) -> Iterator[float]:
    return itertools.chain(retry_delays_s, itertools.repeat(retry_delays_s[-1]))
