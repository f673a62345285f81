import random
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from appliance.config import StoreConfig
from appliance.errors import StoreError
from appliance.store import Store, StorePragmas, StoreSettings, store_settings


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_connection_runs_in_wal_with_the_configured_synchronous_level(
    store_path: Path, synchronous: str
) -> None:
    async with await Store.open(StoreSettings(store_path, synchronous=synchronous)) as store:
        pragmas = await store.pragmas()

    assert pragmas == StorePragmas(
        journal_mode="WAL",
        synchronous=synchronous,
        busy_timeout_ms=5_000,
        foreign_keys=True,
        auto_vacuum="INCREMENTAL",
    )


@pytest.mark.parametrize("synchronous", ["OFF", "EXTRA", "normal", ""])
def test_other_synchronous_levels_are_refused(store_path: Path, synchronous: str) -> None:
    with pytest.raises(StoreError, match="synchronous must be one of NORMAL, FULL"):
        StoreSettings(store_path, synchronous=synchronous)


def test_settings_from_the_store_table_in_bytes_and_seconds(tmp_path: Path) -> None:
    table = StoreConfig(path=str(tmp_path / "a.db"), synchronous="FULL", max_mb=2.5,
                        retention_days=0.5)  # fmt: skip

    assert store_settings(table, with_uplink=True) == StoreSettings(
        tmp_path / "a.db", "FULL", max_bytes=2_500_000, retention_s=43_200.0,
        retain_undelivered=True,
    )  # fmt: skip
    unlimited = StoreConfig(path=str(tmp_path / "a.db"), max_mb=None, retention_days=None)
    assert store_settings(unlimited, with_uplink=False) == StoreSettings(tmp_path / "a.db")


async def test_open_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "appliance" / "store.db"

    async with await Store.open(StoreSettings(path)):
        pass

    assert path.is_file()


def write_random_bytes(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(random.Random(7).randbytes(64 * 1024))


async def test_corrupt_file_is_refused_naming_the_path(store_path: Path) -> None:
    write_random_bytes(store_path)

    with pytest.raises(StoreError, match="not a database") as refused:
        await Store.open(StoreSettings(store_path))

    assert str(store_path) in str(refused.value)


async def test_unwritable_location_is_refused_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the store's directory should be")
    path = blocker / "store.db"

    with pytest.raises(StoreError, match="cannot create its directory") as refused:
        await Store.open(StoreSettings(path))

    assert str(path) in str(refused.value)


async def test_sqlite_database_of_another_program_is_left_alone(store_path: Path) -> None:
    store_path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(store_path)) as other:
        other.execute("CREATE TABLE recipes (name TEXT)")
        other.commit()

    with pytest.raises(StoreError, match="not an appliance store") as refused:
        await Store.open(StoreSettings(store_path))

    assert str(store_path) in str(refused.value)
