import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from appliance.records import FeatureVector
from appliance.store import Store, StoreSettings

VectorFactory = Callable[..., FeatureVector]  # the make_vector fixture (conftest.py)


def assert_same_vector(stored: FeatureVector, original: FeatureVector) -> None:
    assert stored.asset == original.asset
    assert stored.window_end == original.window_end
    assert stored.names == original.names
    assert stored.values.dtype == np.float64
    assert stored.values.tobytes() == np.asarray(original.values, dtype="<f8").tobytes()


async def test_vectors_round_trip_bit_for_bit_including_nan_and_infinities(store: Store) -> None:
    special = FeatureVector(
        asset="pump-1",
        window_end=1_700_000_000.25,
        names=("rms", "kurtosis", "peak", "crest", "tiny", "zero"),
        values=np.array([math.nan, math.inf, -math.inf, -0.0, 5e-324, 0.0]),
    )
    other = FeatureVector("fan-2", 1_700_000_001.0, ("a", "b"), np.array([1.5, -2.5]))

    seqs = await store.recorder.add_features([special, other])

    stored = await store.history.features()
    assert seqs == [1, 2]
    assert [seq for seq, _ in stored] == [1, 2]
    assert_same_vector(stored[0][1], special)
    assert_same_vector(stored[1][1], other)
    assert np.isnan(stored[0][1].values[0])


async def test_features_filter_by_asset_after_seq_and_limit(
    store: Store, make_vector: VectorFactory
) -> None:
    vectors = [make_vector(float(t), asset="pump-1" if t % 2 else "fan-2") for t in range(10)]
    await store.recorder.add_features(vectors)

    pump = await store.history.features(asset="pump-1")
    later = await store.history.features(after_seq=7)
    first_three = await store.history.features(limit=3)

    assert [seq for seq, _ in pump] == [2, 4, 6, 8, 10]
    assert all(vector.asset == "pump-1" for _, vector in pump)
    assert [seq for seq, _ in later] == [8, 9, 10]
    assert [seq for seq, _ in first_three] == [1, 2, 3]
    assert_same_vector(later[0][1], vectors[7])


async def test_seqs_keep_growing_across_reopen_and_after_every_row_is_deleted(
    store_path: Path, make_vector: VectorFactory
) -> None:
    settings = StoreSettings(store_path, retention_s=10.0)
    async with await Store.open(settings) as store:
        assert await store.recorder.add_features([make_vector(1.0), make_vector(2.0)]) == [1, 2]
        assert await store.recorder.add_features([make_vector(3.0)]) == [3]

    async with await Store.open(settings) as store:
        assert await store.delivery.latest_seq() == 3
        report = await store.recorder.enforce_limits(now=1_000.0)
        assert report.evicted_by_age == 3
        assert await store.history.features() == []
        assert await store.delivery.latest_seq() == 3

    async with await Store.open(settings) as store:
        assert await store.recorder.add_features([make_vector(1_000.0)]) == [4]
        assert await store.delivery.latest_seq() == 4


async def test_malformed_vector_is_refused_before_anything_is_written(
    store: Store, make_vector: VectorFactory
) -> None:
    wrong_length = FeatureVector("pump-1", 5.0, ("a", "b", "c"), np.array([1.0, 2.0]))
    no_time = FeatureVector("pump-1", math.nan, ("a",), np.array([1.0]))

    with pytest.raises(ValueError, match="3 names"):
        await store.recorder.add_features([make_vector(1.0), wrong_length])
    with pytest.raises(ValueError, match="window_end"):
        await store.recorder.add_features([no_time])

    assert await store.history.features() == []
    assert await store.delivery.latest_seq() == 0
    assert store.stats.write_errors == 0


async def test_stats_count_rows_transactions_and_size(
    store: Store, make_vector: VectorFactory
) -> None:
    empty_bytes = store.stats.bytes

    await store.recorder.add_features([make_vector(float(t)) for t in range(5)])
    await store.recorder.add_features([make_vector(5.0)])

    assert store.stats.rows_written == 6
    assert store.stats.write_transactions == 2
    assert store.stats.last_write_utc is not None
    assert store.stats.bytes > empty_bytes + 6 * 960 * 8
