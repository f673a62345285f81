"""What a backend (receiver/db/sqlite.py, postgres.py) supplies: its DB-API connection, its SQL
(`Statements`, written once with `?` placeholders), its migrations and how its errors read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

from appliance.records import FloatArray
from receiver.db.rows import ValuesParam


class DbApiConnection(Protocol):
    """The part of a DB-API connection used here (sqlite3 and psycopg both have it)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def cursor(self) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Migration:
    """Named schema change; `sql` is statements separated by ';' (none inside a statement)."""

    name: str
    sql: str

    def statements(self) -> list[str]:
        return [statement.strip() for statement in self.sql.split(";") if statement.strip()]


@dataclass(frozen=True)
class Statements:
    """A backend's SQL, with `?` placeholders (PostgreSQL's are rewritten to %s)."""

    insert_schema: str
    select_schema_id: str
    insert_features: str
    insert_scores: str
    insert_alerts: str
    insert_part: str
    upsert_gateway: str
    """RETURNING the row's acked_seq, chain_start."""
    update_ack: str
    select_features: str
    select_score_flags: str
    select_judging_alerts: str
    select_status: str
    insert_refused_part: str
    insert_dead_letter: str
    select_dead_letters: str
    select_gateway: str = "SELECT acked_seq, chain_start FROM gateways WHERE gateway = ?"
    complete_ranges_above: str = (
        "SELECT lo, hi, parts FROM parts WHERE gateway = ? AND hi > ?"
        " GROUP BY lo, hi, parts HAVING count(*) = parts ORDER BY lo, hi"
    )
    select_schema_names: str = "SELECT names_json FROM feature_schemas WHERE id = ?"
    select_schemas_by_ref: str = (
        "SELECT names_json FROM feature_schemas WHERE substr(names_sha256, 1, 16) = ?"
    )
    select_assets: str = "SELECT DISTINCT asset FROM features WHERE gateway = ? ORDER BY asset"
    select_gateways: str = "SELECT gateway FROM gateways ORDER BY gateway"
    select_acks: str = "SELECT gateway, acked_seq FROM gateways"
    select_migrations: str = "SELECT name FROM schema_migrations ORDER BY name"
    drop_oldest_dead_letter: str = (
        "DELETE FROM dead_letters WHERE id = (SELECT min(id) FROM dead_letters WHERE id < ?)"
        " RETURNING stored_bytes"
    )
    measure_dead_letters: str = "SELECT count(*), coalesce(sum(stored_bytes), 0) FROM dead_letters"
    add_to_counter: str = (
        "INSERT INTO receiver_counters (name, value) VALUES (?, ?) ON CONFLICT (name)"
        " DO UPDATE SET value = receiver_counters.value + excluded.value RETURNING value"
    )
    set_counter: str = (
        "INSERT INTO receiver_counters (name, value) VALUES (?, ?) ON CONFLICT (name)"
        " DO UPDATE SET value = excluded.value"
    )
    select_counters: str = "SELECT name, value FROM receiver_counters ORDER BY name"
    insert_migration: str = "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)"

    def with_placeholder(self, placeholder: str) -> Statements:
        values = {name: sql.replace("?", placeholder) for name, sql in vars(self).items()}
        return Statements(**values)


@dataclass(frozen=True)
class Dialect:
    name: str
    connect: Callable[[], DbApiConnection]
    statements: Statements
    migrations: tuple[Migration, ...]
    create_migrations_table: str
    begin: str
    errors: tuple[type[Exception], ...]
    is_transient: Callable[[Exception], bool]
    values_param: ValuesParam
    values_from_db: Callable[[Any], FloatArray]
    lock_migrations: str | None = None
    after_migrations: Callable[[DbApiConnection], None] | None = None
    is_closed: Callable[[DbApiConnection], bool] = lambda connection: False
    pipeline: Callable[[DbApiConnection], AbstractContextManager[Any]] = lambda connection: (
        nullcontext()
    )
    """Statements run inside are sent without waiting for their answers, which arrive at the
    first read (PostgreSQL's pipeline mode); SQLite runs them one by one."""
