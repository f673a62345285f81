"""Bringing a receiver database's schema up to date: the dialect's migrations, one transaction
each, recorded in schema_migrations; a database with migrations this release does not know is
refused."""

from __future__ import annotations

from datetime import UTC, datetime

from receiver.db.dialect import DbApiConnection, Dialect
from receiver.errors import DatabaseError


def apply_migrations(db: DbApiConnection, dialect: Dialect, where: str) -> list[str]:
    """Apply the dialect's pending migrations, one transaction each; the names applied now."""
    sql = dialect.statements
    known = {migration.name for migration in dialect.migrations}
    applied_now = []
    for migration in dialect.migrations:
        db.execute(dialect.begin, ())
        try:
            if dialect.lock_migrations:
                db.execute(dialect.lock_migrations, ())
            db.execute(dialect.create_migrations_table, ())
            applied = {str(row[0]) for row in db.execute(sql.select_migrations, ()).fetchall()}
            refuse_unknown(applied - known, where)
            if migration.name not in applied:
                for statement in migration.statements():
                    db.execute(statement, ())
                now = datetime.now(UTC).isoformat(timespec="seconds")
                db.execute(sql.insert_migration, (migration.name, now))
                applied_now.append(migration.name)
            db.execute("COMMIT", ())
        except BaseException:
            db.execute("ROLLBACK", ())
            raise
    return applied_now


def refuse_unknown(unknown: set[str], where: str) -> None:
    if unknown:
        raise DatabaseError(
            f"{where} has migrations this release does not know ({', '.join(sorted(unknown))}):"
            " written by a newer receiver, or not a receiver database; refusing to use it",
            transient=False,
        )
