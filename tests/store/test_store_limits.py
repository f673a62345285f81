from collections.abc import Callable
from pathlib import Path

from appliance.records import FeatureVector
from appliance.store import Store, StoreSettings

VectorFactory = Callable[..., FeatureVector]  # the make_vector fixture (conftest.py)

ROW_BYTES = 2 * 4096  # one 960-value vector (7.7 KB) occupies two 4 KiB pages


def file_size(path: Path) -> int:
    return path.stat().st_size


async def test_retention_evicts_features_older_than_the_window(
    store_path: Path, make_vector: VectorFactory
) -> None:
    async with await Store.open(StoreSettings(store_path, retention_s=5.0)) as store:
        await store.add_features([make_vector(float(t)) for t in range(10)])

        report = await store.enforce_limits(now=10.0)
        remaining = await store.features()

    assert (report.evicted_by_age, report.evicted_by_size) == (5, 0)
    assert [vector.window_end for _, vector in remaining] == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert [seq for seq, _ in remaining] == [6, 7, 8, 9, 10]
    assert store.stats.evicted_by_age == 5


async def test_size_cap_evicts_oldest_features_first_and_counts_them(
    store_path: Path, make_vector: VectorFactory
) -> None:
    written = 40
    async with await Store.open(StoreSettings(store_path)) as store:
        await store.add_features([make_vector(float(t)) for t in range(written)])
    cap = file_size(store_path) // 2  # closing folded the WAL into the file

    async with await Store.open(StoreSettings(store_path, max_bytes=cap)) as store:
        report = await store.enforce_limits(now=float(written))
        remaining = [seq for seq, _ in await store.features()]
        again = await store.enforce_limits(now=float(written))
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
    await store.add_features([make_vector(float(t)) for t in range(3)])

    report = await store.enforce_limits(now=1e12)

    assert (report.evicted_by_age, report.evicted_by_size) == (0, 0)
    assert len(await store.features()) == 3
