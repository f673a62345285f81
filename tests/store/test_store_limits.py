from collections.abc import Callable
from pathlib import Path

from structlog.testing import capture_logs

from appliance.records import Alert, FeatureVector, Score
from appliance.store import Store, StoredRecord, StoreSettings

VectorFactory = Callable[..., FeatureVector]  # the fixtures of conftest.py
ScoreFactory = Callable[..., Score]
AlertFactory = Callable[..., Alert]

ROW_BYTES = 2 * 4096  # one 960-value vector (7.7 KB) occupies two 4 KiB pages


def file_size(path: Path) -> int:
    return path.stat().st_size


async def test_retention_evicts_features_older_than_the_window(
    store_path: Path, make_vector: VectorFactory
) -> None:
    async with await Store.open(StoreSettings(store_path, retention_s=5.0)) as store:
        await store.recorder.add_features([make_vector(float(t)) for t in range(10)])

        report = await store.recorder.enforce_limits(now=10.0)
        remaining = await store.history.features()

    assert (report.evicted_by_age, report.evicted_by_size) == (5, 0)
    assert [vector.window_end for _, vector in remaining] == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert [seq for seq, _ in remaining] == [6, 7, 8, 9, 10]
    assert store.stats.evicted_by_age == 5


async def test_size_cap_evicts_oldest_features_first_and_counts_them(
    store_path: Path, make_vector: VectorFactory
) -> None:
    written = 40
    async with await Store.open(StoreSettings(store_path)) as store:
        await store.recorder.add_features([make_vector(float(t)) for t in range(written)])
    cap = file_size(store_path) // 2  # closing folded the WAL into the file

    async with await Store.open(StoreSettings(store_path, max_bytes=cap)) as store:
        report = await store.recorder.enforce_limits(now=float(written))
        remaining = [seq for seq, _ in await store.history.features()]
        again = await store.recorder.enforce_limits(now=float(written))
        stats = store.stats

    assert report.evicted_by_age == 0
    assert report.evicted_by_size == written - len(remaining)
    assert remaining == list(range(written - len(remaining) + 1, written + 1))
    assert report.bytes_after <= cap
    # No more evicted than needed: less than two rows (2 pages each) below the cap.
    assert report.bytes_after > cap - 2 * ROW_BYTES
    assert file_size(store_path) <= cap
    assert stats.evicted_by_size == report.evicted_by_size
    assert (again.evicted_by_age, again.evicted_by_size) == (0, 0)


async def test_without_limits_nothing_is_evicted(store: Store, make_vector: VectorFactory) -> None:
    await store.recorder.add_features([make_vector(float(t)) for t in range(3)])

    report = await store.recorder.enforce_limits(now=1e12)

    assert (report.evicted_by_age, report.evicted_by_size) == (0, 0)
    assert len(await store.history.features()) == 3


# --- scores and alerts -------------------------------------------------------------------------

PAGE = 4096
EVICTION_ORDER = ("features", "routine scores", "anomalous scores", "alerts")


def interleaved_records(
    make_vector: VectorFactory, make_score: ScoreFactory, make_alert: AlertFactory, seconds: int
) -> list[StoredRecord]:
    """A stream as the detector makes it: a vector now and then, a score every second, an
    anomalous score and an alert every 4th second (so seq order mixes all four classes)."""
    records: list[StoredRecord] = []
    for t in range(seconds):
        if t % 100 == 0:
            records.append(make_vector(float(t)))
        anomalous = t % 4 == 0
        records.append(make_score(float(t), anomalous=anomalous, contributors=("ch01_f02",)))
        if anomalous:
            records.append(make_alert(float(t), channel="ch01"))
    return records


def eviction_class(record: StoredRecord) -> str:
    if isinstance(record, FeatureVector):
        return "features"
    if isinstance(record, Score):
        return "anomalous scores" if record.anomalous else "routine scores"
    return "alerts"


def seqs_by_class(stored: list[tuple[int, StoredRecord]]) -> dict[str, list[int]]:
    by_class: dict[str, list[int]] = {name: [] for name in EVICTION_ORDER}
    for seq, record in stored:
        by_class[eviction_class(record)].append(seq)
    return by_class


def assert_evicted_in_order(written: dict[str, list[int]], kept: dict[str, list[int]]) -> None:
    """Within a class the oldest go first; a class loses rows only once all earlier are gone."""
    for position, name in enumerate(EVICTION_ORDER):
        assert kept[name] == written[name][len(written[name]) - len(kept[name]) :], name
        if len(kept[name]) < len(written[name]):
            for earlier in EVICTION_ORDER[:position]:
                assert kept[earlier] == [], f"{name} evicted while {earlier} remain"


def partly_evicted(written: dict[str, list[int]], kept: dict[str, list[int]]) -> str | None:
    partial = [name for name in EVICTION_ORDER if 0 < len(kept[name]) < len(written[name])]
    return partial[0] if len(partial) == 1 else None


async def test_size_cap_evicts_features_then_routine_then_anomalous_scores_and_alerts_last(
    store_path: Path,
    make_vector: VectorFactory,
    make_score: ScoreFactory,
    make_alert: AlertFactory,
) -> None:
    records = interleaved_records(make_vector, make_score, make_alert, seconds=400)
    async with await Store.open(StoreSettings(store_path)) as store:
        written = seqs_by_class(
            list(zip(await store.recorder.add_records(records), records, strict=True))
        )
    evicted = {"features": 0, "scores": 0, "alerts": 0}
    phases = set()

    with capture_logs() as logs:
        # Lower the cap a page at a time, down to less than an empty store needs.
        for cap in range(file_size(store_path) - PAGE, 0, -PAGE):
            async with await Store.open(StoreSettings(store_path, max_bytes=cap)) as store:
                report = await store.recorder.enforce_limits(now=600.0)
                kept = seqs_by_class(await store.history.outbox(limit=len(records)))
            assert_evicted_in_order(written, kept)
            phases.add(partly_evicted(written, kept))
            assert report.evicted_by_age == 0
            assert report.evicted_by_size == (
                report.evicted_features + report.evicted_scores + report.evicted_alerts
            )
            evicted["features"] += store.stats.evicted_features
            evicted["scores"] += store.stats.evicted_scores
            evicted["alerts"] += store.stats.evicted_alerts

    assert set(EVICTION_ORDER) <= phases, "each class was seen partly evicted, in turn"
    assert kept == {name: [] for name in EVICTION_ORDER}
    assert evicted == {
        "features": len(written["features"]),
        "scores": len(written["routine scores"]) + len(written["anomalous scores"]),
        "alerts": len(written["alerts"]),
    }
    warnings = [entry for entry in logs if entry["event"] == "store_evicted_records"]
    assert all(entry["log_level"] == "warning" for entry in warnings)
    assert list(dict.fromkeys(entry["rows"] for entry in warnings)) == list(EVICTION_ORDER[1:])
    assert sum(entry["count"] for entry in warnings if entry["rows"] == "alerts") == len(
        written["alerts"]
    )


async def test_retention_evicts_routine_scores_but_keeps_anomalous_ones_and_alerts(
    store_path: Path,
    make_vector: VectorFactory,
    make_score: ScoreFactory,
    make_alert: AlertFactory,
) -> None:
    records = interleaved_records(make_vector, make_score, make_alert, seconds=20)
    async with await Store.open(StoreSettings(store_path, retention_s=10.0)) as store:
        written = seqs_by_class(
            list(zip(await store.recorder.add_records(records), records, strict=True))
        )
        with capture_logs() as logs:
            report = await store.recorder.enforce_limits(now=20.0)
        kept = await store.history.outbox()

    routine_kept = [
        record.t for _, record in kept if isinstance(record, Score) and not record.anomalous
    ]
    assert routine_kept == [float(t) for t in range(10, 20) if t % 4]
    assert seqs_by_class(kept)["anomalous scores"] == written["anomalous scores"]
    assert seqs_by_class(kept)["alerts"] == written["alerts"]
    assert seqs_by_class(kept)["features"] == []
    assert (report.evicted_features, report.evicted_scores, report.evicted_alerts) == (1, 7, 0)
    assert report.evicted_by_age == 8
    assert store.stats.evicted_scores == 7
    assert {
        "event": "store_evicted_records",
        "rows": "routine scores",
        "count": 7,
        "reason": "age",
        "log_level": "warning",
    } in logs
