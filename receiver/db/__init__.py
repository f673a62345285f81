"""The receiver's database (SQLite by default, PostgreSQL by URL); see database.py."""

from __future__ import annotations

from receiver.db.database import Database, IngestResult, StoredFeature
from receiver.errors import SettingsError


async def open_database(url: str) -> Database:
    """Connect and migrate: `sqlite:///relative.db`, `sqlite:////absolute.db` or
    `postgresql://user:password@host:port/dbname`."""
    if url.startswith("sqlite:///"):
        from receiver.db.sqlite import sqlite_dialect

        dialect, where = sqlite_dialect(url)
    elif url.startswith(("postgresql://", "postgres://")):
        from receiver.db.postgres import postgres_dialect

        dialect, where = postgres_dialect(url)
    else:
        raise SettingsError(
            f"database URL must start with sqlite:/// or postgresql://, not {url.split(':')[0]!r}"
        )
    database = Database(dialect, where)
    try:
        await database.start()
    except BaseException:
        await database.close()
        raise
    return database


__all__ = ["Database", "IngestResult", "StoredFeature", "open_database"]
