import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from appliance.errors import StoreError
from appliance.records import Alert, FeatureVector, Score
from appliance.store import MIGRATIONS, Migration, Store, StoreSettings

VectorFactory = Callable[..., FeatureVector]  # the make_vector fixture (conftest.py)

ALL_NAMES = [migration.name for migration in MIGRATIONS]


def schema_object_names(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {str(row[0]) for row in db.execute("SELECT name FROM sqlite_master")}


async def test_database_of_first_release_is_upgraded_with_its_data_intact(
    store_path: Path, make_vector: VectorFactory
) -> None:
    settings = StoreSettings(store_path)
    vectors = [make_vector(float(t), asset=f"asset-{t % 3}") for t in range(6)]
    async with await Store.open(settings, migrations=MIGRATIONS[:1]) as first_release:
        await first_release.recorder.add_features(vectors)
        assert await first_release.applied_migrations() == ALL_NAMES[:1]
    assert "features_by_window_end" not in schema_object_names(store_path)

    async with await Store.open(settings) as current:
        applied = await current.applied_migrations()
        stored = await current.history.features()
        next_seqs = await current.recorder.add_features([make_vector(6.0)])

    assert applied == ALL_NAMES
    assert "features_by_window_end" in schema_object_names(store_path)
    assert [seq for seq, _ in stored] == [1, 2, 3, 4, 5, 6]
    for (_, got), want in zip(stored, vectors, strict=True):
        assert (got.asset, got.window_end, got.names) == (want.asset, want.window_end, want.names)
        assert got.values.tobytes() == want.values.tobytes()
    assert next_seqs == [7]


async def test_database_of_the_features_only_release_gains_scores_alerts_and_state(
    store_path: Path, make_vector: VectorFactory
) -> None:
    settings = StoreSettings(store_path)
    vectors = [make_vector(float(t)) for t in range(3)]
    async with await Store.open(settings, migrations=MIGRATIONS[:2]) as features_only:
        assert await features_only.recorder.add_features(vectors) == [1, 2, 3]
    assert "scores" not in schema_object_names(store_path)

    score = Score("pump-1", 3.0, "ae-v3", 0.5, 2.5, False)
    alert = Alert("pump-1", 3.0, "warning", "anomaly_raised", "pump-1 drifts", "ch01")
    async with await Store.open(settings) as current:
        applied = await current.applied_migrations()
        stored = await current.history.features()
        next_seqs = await current.recorder.add_records([score, make_vector(3.0), alert])
        await current.detector_states.save_states({("pump-1", "threshold"): {"mean": 0.5}})
        outbox = await current.history.outbox()

    assert applied == ALL_NAMES
    assert "0003_scores_alerts_detector_state" in applied
    assert {"scores", "alerts", "detector_state"} <= schema_object_names(store_path)
    assert [seq for seq, _ in stored] == [1, 2, 3]
    for (_, got), want in zip(stored, vectors, strict=True):
        assert (got.asset, got.window_end, got.names) == (want.asset, want.window_end, want.names)
        assert got.values.tobytes() == want.values.tobytes()
    assert next_seqs == [4, 5, 6]
    assert [seq for seq, _ in outbox] == [1, 2, 3, 4, 5, 6]
    assert outbox[3][1] == score
    assert outbox[5][1] == alert


async def test_database_of_a_newer_release_is_refused(store_path: Path) -> None:
    settings = StoreSettings(store_path)
    from_the_future = Migration("9999_gadgets", "CREATE TABLE gadgets (id INTEGER PRIMARY KEY);")
    async with await Store.open(settings, migrations=(*MIGRATIONS, from_the_future)):
        pass

    with pytest.raises(StoreError, match="newer release") as refused:
        await Store.open(settings)

    assert str(store_path) in str(refused.value)
    assert "9999_gadgets" in str(refused.value)


async def test_each_migration_is_one_transaction_and_a_failing_one_leaves_no_trace(
    store_path: Path,
) -> None:
    def add_marker_table(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE marker (note TEXT)")
        db.execute("INSERT INTO marker VALUES ('applied by a function')")

    function_migration = Migration("0100_marker", add_marker_table)
    broken = Migration(
        "0101_broken", "CREATE TABLE half_done (x); INSERT INTO no_such_table VALUES (1);"
    )
    settings = StoreSettings(store_path)

    with pytest.raises(StoreError, match="migration 0101_broken failed") as refused:
        await Store.open(settings, migrations=(*MIGRATIONS, function_migration, broken))

    assert str(store_path) in str(refused.value)
    names = schema_object_names(store_path)
    assert "marker" in names
    assert "half_done" not in names
    async with await Store.open(settings, migrations=(*MIGRATIONS, function_migration)) as store:
        assert await store.applied_migrations() == [*ALL_NAMES, "0100_marker"]
