"""The Database: one sqlite3 connection on one writer thread, transactions as plain functions."""

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from appliance.errors import StoreError
from appliance.store.database import Database


async def open_with_table(path: Path, errors: list[str] | None = None) -> Database:
    failures = errors if errors is not None else []
    db = await Database.open(path, on_write_error=lambda: failures.append("failed"))
    await db.run(lambda conn: conn.execute("CREATE TABLE notes (text TEXT NOT NULL)"))
    return db


def notes_in(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [str(row[0]) for row in conn.execute("SELECT text FROM notes ORDER BY rowid")]


def add_note(text: str | None) -> Callable[[sqlite3.Connection], int]:
    return lambda conn: int(conn.execute("INSERT INTO notes VALUES (?)", (text,)).rowcount)


async def test_a_write_commits_and_every_job_runs_on_one_other_thread(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = await open_with_table(path)
    threads: set[int] = set()

    def add_and_note_thread(conn: sqlite3.Connection) -> int:
        threads.add(threading.get_ident())
        return int(conn.execute("INSERT INTO notes VALUES ('one')").rowcount)

    assert await db.write("adding a note", add_and_note_thread) == 1
    await db.read("notes", lambda conn: threads.add(threading.get_ident()))
    await db.close()

    assert notes_in(path) == ["one"]
    assert len(threads) == 1 and threading.get_ident() not in threads


async def test_a_failing_body_rolls_the_whole_transaction_back(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    errors: list[str] = []
    db = await open_with_table(path, errors)

    def add_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO notes VALUES ('half')")
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await db.write("adding half a note", add_then_fail)
    with pytest.raises(StoreError, match="adding a NULL note failed: NOT NULL") as failed:
        await db.write("adding a NULL note", add_note(None))
    await db.close()

    assert str(path) in str(failed.value)
    assert isinstance(failed.value.__cause__, sqlite3.IntegrityError)
    assert errors == ["failed"], "only SQLite's failures count as write errors"
    assert notes_in(path) == []


async def test_a_cancelled_caller_does_not_stop_its_write_and_close_waits_for_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite"
    db = await open_with_table(path)
    committed: list[int] = []
    write = asyncio.create_task(
        db.write(
            "adding a note",
            add_note("kept"),
            on_commit=lambda conn, count: committed.append(count),
        )
    )
    await asyncio.sleep(0)  # one turn of the loop: the task hands its write to the thread
    write.cancel()

    await db.close()
    await db.close()  # a second close is harmless

    assert write.cancelled()
    assert committed == [1]
    assert notes_in(path) == ["kept"]
