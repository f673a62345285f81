"""The store's one SQLite connection, used only on one writer thread (as receiver/db/database.py).

Every job is a plain synchronous function of the connection, run in order on a single-thread
executor, so a transaction is one function call: no other statement can land in the middle of
it, and no lock is needed. `write(fn)` runs fn(conn) between BEGIN IMMEDIATE and COMMIT (rolled
back if fn or the COMMIT fails); `read(fn)` runs fn(conn) outside a transaction. A write, once
called, runs to its end even if the caller is cancelled, and `close()` waits for every job
already handed over.

Connection: WAL journal, an explicit synchronous level (NORMAL or FULL), busy_timeout, foreign keys
on; new databases are created with auto_vacuum=INCREMENTAL so evictions can give space back.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from appliance.errors import StoreError

T = TypeVar("T")

SYNCHRONOUS_MODES = ("NORMAL", "FULL")
SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
AUTO_VACUUM_NAMES = {0: "NONE", 1: "FULL", 2: "INCREMENTAL"}
BUSY_TIMEOUT_MS = 5_000
# After a checkpoint the WAL file is truncated to this size instead of staying at its peak.
WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class StorePragmas:
    """The connection settings SQLite reports as in effect (for tests, check-config, status)."""

    journal_mode: str
    synchronous: str
    busy_timeout_ms: int
    foreign_keys: bool
    auto_vacuum: str


@dataclass(frozen=True)
class StoreSize:
    page_size: int
    live_pages: int
    wal_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.live_pages * self.page_size + self.wal_bytes


class Database:
    """One sqlite3 connection on its own thread. Build with `await Database.open(path)`."""

    def __init__(
        self,
        path: Path,
        connection: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        on_write_error: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self._connection = connection
        self._executor = executor
        self._on_write_error = on_write_error
        self._closed = False

    @classmethod
    async def open(cls, path: Path, on_write_error: Callable[[], None] | None = None) -> Database:
        """Connect (autocommit: transactions are explicit); StoreError names the path.

        `on_write_error` is called on the writer thread after each write SQLite failed."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="store-writer")
        connect = functools.partial(sqlite3.connect, path, isolation_level=None)
        try:
            connection = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except sqlite3.Error as exc:
            executor.shutdown(wait=False)
            raise StoreError(f"store {path}: cannot open: {exc}") from exc
        return cls(path, connection, executor, on_write_error)

    async def run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run job(conn) on the writer thread, as it is (no transaction, errors unchanged)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, job, self._connection)

    async def read(self, what: str, job: Callable[[sqlite3.Connection], T]) -> T:
        """job(conn) on the writer thread; StoreError names `what` if SQLite fails."""
        try:
            return await self.run(job)
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: reading {what} failed: {exc}") from exc

    async def write(
        self,
        what: str,
        body: Callable[[sqlite3.Connection], T],
        *,
        on_commit: Callable[[sqlite3.Connection, T], None] | None = None,
    ) -> T:
        """body(conn) in one transaction; StoreError names `what` if SQLite fails.

        `on_commit` runs on the writer thread right after COMMIT, also if the caller was
        cancelled meanwhile."""

        def job(connection: sqlite3.Connection) -> T:
            try:
                result = transaction(connection, body)
            except sqlite3.Error:
                if self._on_write_error is not None:
                    self._on_write_error()
                raise
            if on_commit is not None:
                on_commit(connection, result)
            return result

        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(self._executor, job, self._connection)
        running.add_done_callback(_retrieve)  # a cancelled caller's failure is not "unretrieved"
        try:
            return await asyncio.shield(running)
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: {what} failed: {exc}") from exc

    async def close(self) -> None:
        """Close once every job handed over has run (SQLite checkpoints the WAL); once only."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.run(lambda connection: connection.close())
        finally:
            self._executor.shutdown(wait=False)  # nothing left to wait for: close ran last


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def transaction(connection: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """BEGIN IMMEDIATE, body, COMMIT; roll back on any failure."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = body(connection)
        connection.execute("COMMIT")
    except BaseException:
        # SQLite may already have rolled back by itself (e.g. after SQLITE_FULL).
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return result


def configure(connection: sqlite3.Connection, path: Path, synchronous: str) -> None:
    """The pragmas every store connection runs with (module docstring)."""
    if fetch_int(connection, "PRAGMA page_count") == 0:
        # Only takes effect before the first table exists.
        connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
    journal_mode = str(fetch_value(connection, "PRAGMA journal_mode = WAL"))
    if journal_mode.lower() != "wal":
        raise StoreError(
            f"store {path}: cannot use WAL mode here (journal_mode stays {journal_mode})"
        )
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")


def read_pragmas(connection: sqlite3.Connection) -> StorePragmas:
    return StorePragmas(
        journal_mode=str(fetch_value(connection, "PRAGMA journal_mode")).upper(),
        synchronous=SYNCHRONOUS_NAMES[fetch_int(connection, "PRAGMA synchronous")],
        busy_timeout_ms=fetch_int(connection, "PRAGMA busy_timeout"),
        foreign_keys=bool(fetch_int(connection, "PRAGMA foreign_keys")),
        auto_vacuum=AUTO_VACUUM_NAMES[fetch_int(connection, "PRAGMA auto_vacuum")],
    )


def measure_size(connection: sqlite3.Connection, path: Path) -> StoreSize:
    """(page_count - freelist_count) * page_size, and the WAL file's size."""
    page_count, freelist_count, page_size = connection.execute(
        "SELECT page_count, freelist_count, page_size"
        " FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
    ).fetchone()
    return StoreSize(
        page_size=int(page_size),
        live_pages=int(page_count) - int(freelist_count),
        wal_bytes=wal_size(path),
    )


def reclaim_space(connection: sqlite3.Connection) -> None:
    """Give free pages back to the file system and empty the WAL."""
    # executescript runs the pragma to completion; execute() would free a single page.
    connection.executescript("PRAGMA incremental_vacuum;")
    checkpoint(connection)


def checkpoint(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def fetch_value(connection: sqlite3.Connection, sql: str, parameters: Any = ()) -> Any:
    return connection.execute(sql, parameters).fetchone()[0]


def fetch_int(connection: sqlite3.Connection, sql: str, parameters: Any = ()) -> int:
    return int(fetch_value(connection, sql, parameters))


def wal_size(path: Path) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return 0
