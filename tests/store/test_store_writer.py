import asyncio
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from structlog.testing import capture_logs

from appliance.records import Alert, FeatureVector, Score
from appliance.store import Store, StoredRecord, StoreSettings, run_store_writer

VectorFactory = Callable[..., FeatureVector]  # the fixtures of conftest.py
ScoreFactory = Callable[..., Score]
AlertFactory = Callable[..., Alert]


def queue_of(records: Sequence[StoredRecord]) -> asyncio.Queue[StoredRecord]:
    queue: asyncio.Queue[StoredRecord] = asyncio.Queue()
    for record in records:
        queue.put_nowait(record)
    return queue


async def stop(writer: asyncio.Task[None]) -> None:
    writer.cancel()
    await writer
    assert not writer.cancelled(), "the writer returns after flushing"


async def window_ends(store: Store) -> list[float]:
    return [vector.window_end for _, vector in await store.history.features()]


async def test_writer_takes_what_is_queued_in_batches_of_at_most_max_batch(
    store: Store, make_vector: VectorFactory
) -> None:
    queue = queue_of([make_vector(float(t)) for t in range(7)])

    writer = asyncio.create_task(run_store_writer(store.recorder, queue, max_batch=3))
    await queue.join()
    await stop(writer)

    assert store.stats.write_transactions == 3
    assert store.stats.rows_written == 7
    assert [seq for seq, _ in await store.history.features()] == [1, 2, 3, 4, 5, 6, 7]
    assert await window_ends(store) == [float(t) for t in range(7)]


async def test_cancelled_writer_flushes_what_is_still_queued(
    store: Store, make_vector: VectorFactory
) -> None:
    queue = queue_of([make_vector(0.0)])
    writer = asyncio.create_task(run_store_writer(store.recorder, queue))
    await queue.join()

    for t in range(1, 6):
        queue.put_nowait(make_vector(float(t)))
    with capture_logs() as logs:
        await stop(writer)

    assert await window_ends(store) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert {"event": "store_flushed", "records": 5, "log_level": "info"} in logs
    await queue.join()


async def test_cancel_during_a_write_neither_loses_nor_repeats_the_batch(
    store: Store, make_vector: VectorFactory
) -> None:
    queue = queue_of([make_vector(float(t)) for t in range(5)])

    writer = asyncio.create_task(run_store_writer(store.recorder, queue, max_batch=3))
    # Runs right after the writer's first step, which ends waiting for its first transaction.
    asyncio.get_running_loop().call_soon(writer.cancel)
    await writer

    assert store.stats.rows_written == 5
    assert [seq for seq, _ in await store.history.features()] == [1, 2, 3, 4, 5]
    await queue.join()


async def test_disk_full_keeps_the_batch_and_writes_it_once_space_returns(
    store: Store, make_vector: VectorFactory
) -> None:
    vectors = [make_vector(float(t)) for t in range(5)]
    await store.set_max_page_count_for_tests(1)  # SQLite raises it to the current size
    queue = queue_of(vectors)
    first_failure = asyncio.Event()
    may_retry = asyncio.Event()

    async def pause(_delay_s: float) -> None:
        first_failure.set()
        await may_retry.wait()

    with capture_logs() as logs:
        writer = asyncio.create_task(run_store_writer(store.recorder, queue, pause=pause))
        await first_failure.wait()
        errors_while_full = store.stats.write_errors
        stored_while_full = await store.history.features()
        queued_while_full = queue.qsize()

        await store.set_max_page_count_for_tests(None)
        may_retry.set()
        await queue.join()
        await stop(writer)

    assert errors_while_full == 1
    assert stored_while_full == []
    assert queued_while_full == 0, "the batch is held by the writer, not put back"
    assert await window_ends(store) == [float(t) for t in range(5)]
    assert store.stats.rows_written == 5
    failures = [entry for entry in logs if entry["event"] == "store_write_failed"]
    assert len(failures) == 1
    assert failures[0]["disk_full"] is True
    assert "database or disk is full" in failures[0]["reason"]
    assert failures[0]["records"] == 5


async def test_cancel_while_backing_off_flushes_the_kept_batch(
    store: Store, make_vector: VectorFactory
) -> None:
    await store.set_max_page_count_for_tests(1)
    queue = queue_of([make_vector(float(t)) for t in range(5)])
    first_failure = asyncio.Event()

    async def pause(_delay_s: float) -> None:
        first_failure.set()
        await asyncio.Event().wait()  # backing off until cancelled

    writer = asyncio.create_task(run_store_writer(store.recorder, queue, max_batch=2, pause=pause))
    await first_failure.wait()
    await store.set_max_page_count_for_tests(None)
    await stop(writer)

    assert await window_ends(store) == [float(t) for t in range(5)]
    assert store.stats.write_errors == 1
    await queue.join()


async def test_flush_that_cannot_write_gives_up_loudly_instead_of_hanging(
    store: Store, make_vector: VectorFactory
) -> None:
    await store.set_max_page_count_for_tests(1)
    queue = queue_of([make_vector(float(t)) for t in range(4)])
    first_failure = asyncio.Event()

    async def pause(_delay_s: float) -> None:
        first_failure.set()

    with capture_logs() as logs:
        writer = asyncio.create_task(
            run_store_writer(store.recorder, queue, max_batch=2, pause=pause)
        )
        await first_failure.wait()
        await stop(writer)

    assert store.stats.rows_written == 0
    gave_up = [entry for entry in logs if entry["event"] == "store_flush_failed"]
    assert len(gave_up) == 1
    assert gave_up[0]["lost_records"] == 4
    assert gave_up[0]["log_level"] == "error"
    await queue.join()


async def test_writer_enforces_the_store_limits(
    store_path: Path, make_vector: VectorFactory
) -> None:
    long_ago = time.time() - 3_600.0
    settings = StoreSettings(store_path, retention_s=60.0)
    async with await Store.open(settings) as store:
        queue = queue_of([make_vector(long_ago + t) for t in range(3)])

        writer = asyncio.create_task(run_store_writer(store.recorder, queue, limits_every_s=0.0))
        await queue.join()
        await stop(writer)
        await store.close()  # waits for the eviction the writer started

        assert store.stats.rows_written == 3
        assert store.stats.evicted_by_age == 3


async def test_a_malformed_vector_is_refused_and_counted_and_its_batch_still_written(
    store: Store, make_vector: VectorFactory
) -> None:
    good = make_vector(1.0)
    names_without_values = FeatureVector("pump-1", 2.0, good.names, good.values[:3])
    queue = queue_of([make_vector(0.0), names_without_values, good])

    with capture_logs() as logs:
        writer = asyncio.create_task(run_store_writer(store.recorder, queue))
        await queue.join()
        await stop(writer)

    assert await window_ends(store) == [0.0, 1.0]
    assert store.stats.rejected_records == 1
    refused = [e for e in logs if e["event"] == "store_record_refused"]
    assert len(refused) == 1 and "names but values of shape" in refused[0]["reason"]


async def test_writer_stores_a_mixed_stream_in_order(
    store: Store, make_vector: VectorFactory, make_score: ScoreFactory, make_alert: AlertFactory
) -> None:
    records: list[StoredRecord] = []
    for t in range(4):
        records += [make_vector(float(t)), make_score(float(t), anomalous=t == 3)]
    records.append(make_alert(3.0, channel="ch02"))
    queue = queue_of(records)

    writer = asyncio.create_task(run_store_writer(store.recorder, queue, max_batch=4))
    await queue.join()
    await stop(writer)

    stored = await store.history.outbox()
    assert [seq for seq, _ in stored] == list(range(1, len(records) + 1))
    assert [type(record) for _, record in stored] == [type(record) for record in records]
    assert [record for _, record in stored if not isinstance(record, FeatureVector)] == [
        record for record in records if not isinstance(record, FeatureVector)
    ]
    assert store.stats.write_transactions == 3


async def test_a_malformed_score_is_refused_and_the_rest_of_its_batch_written(
    store: Store, make_vector: VectorFactory, make_score: ScoreFactory, make_alert: AlertFactory
) -> None:
    timeless = Score("pump-1", math.nan, "ae-v3", 1.0, 2.0, True)
    records = [make_vector(0.0), make_score(0.0), timeless, make_alert(0.0), make_score(1.0)]
    queue = queue_of(records)

    with capture_logs() as logs:
        writer = asyncio.create_task(run_store_writer(store.recorder, queue))
        await queue.join()
        await stop(writer)

    stored = [record for _, record in await store.history.outbox()]
    assert len(stored) == 4
    assert stored[1:] == [records[1], records[3], records[4]]
    assert store.stats.rejected_records == 1
    assert store.stats.write_transactions == 1
    refused = [e for e in logs if e["event"] == "store_record_refused"]
    assert len(refused) == 1
    assert (refused[0]["record"], refused[0]["asset"]) == ("Score", "pump-1")
    assert "t nan" in refused[0]["reason"]


async def test_writer_signals_each_committed_batch(
    store: Store, make_vector: VectorFactory
) -> None:
    stored = asyncio.Event()
    queue = queue_of([make_vector(0.0), make_vector(1.0)])
    writer = asyncio.create_task(run_store_writer(store.recorder, queue, on_stored=stored.set))

    await stored.wait()
    assert await store.delivery.latest_seq() >= 1, "signalled after the commit, not before"
    stored.clear()
    queue.put_nowait(make_vector(2.0))
    await stored.wait()
    await stop(writer)

    assert await store.delivery.latest_seq() == 3
