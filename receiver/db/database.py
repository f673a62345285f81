"""The receiver's database: one ingest algorithm over SQLite or PostgreSQL.

Both backends are driven through their plain DB-API connection (sqlite3, psycopg) on one
dedicated thread, so the event loop never blocks and the transaction logic exists once: a
transaction is one plain function of the connection run between BEGIN and COMMIT on that thread
(storing a part: ingest.py; refusing a message: dead_letters.py). A backend (a `Dialect`,
dialect.py) supplies the connection, its SQL, its migrations (migrations.py) and how its errors
read.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from appliance.records import Alert, FloatArray, Severity
from appliance.uplink.schema import Part, PartHeader
from receiver.db.dead_letters import DeadLetterLimits, Refusal, refuse
from receiver.db.dialect import DbApiConnection, Dialect
from receiver.db.ingest import IngestResult, SchemaIds, ingest_fetched, ingest_parts
from receiver.db.migrations import apply_migrations
from receiver.db.rows import DeadLetter
from receiver.db.summary_tables import SELECT as SELECT_SUMMARIES
from receiver.db.summary_tables import StoredSummary, stored_summaries
from receiver.errors import DatabaseError

__all__ = ["Database", "DeadLetterLimits", "IngestResult", "Refusal", "StoredFeature"]

T = TypeVar("T")


@dataclass(frozen=True)
class StoredFeature:
    seq: int
    t: float
    schema_id: int
    values: FloatArray


class Database:
    """Build with `await Database.open(url)` (receiver.db.open_database)."""

    def __init__(
        self, dialect: Dialect, where: str, dead_letter_limits: DeadLetterLimits | None = None
    ) -> None:
        self.dialect = dialect
        self.where = where
        self.dead_letter_limits = dead_letter_limits or DeadLetterLimits()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"receiver-{dialect.name}")
        self._connection: DbApiConnection | None = None
        self._schema_ids: SchemaIds = {}

    async def start(self) -> None:
        """Connect and bring the schema up to date."""
        await self._run(self._start)

    async def close(self) -> None:
        try:
            await self._run(self._close)
        finally:
            self._executor.shutdown(wait=False)

    async def ingest(self, part: Part, received_at: float) -> IngestResult:
        """Commit one part (idempotent); DatabaseError says whether retrying can help."""
        return await self._run(self._ingest_and_commit, part, received_at)

    async def ingest_many(self, parts: Sequence[Part], received_at: float) -> list[IngestResult]:
        """Commit several parts in one transaction (one commit, one fsync, for all of them);
        their results in the order given. All or none: on a DatabaseError nothing is stored."""
        return await self._run(self._ingest_many_and_commit, parts, received_at)

    async def ingest_fetched(self, parts: Sequence[Part]) -> list[int]:
        """Commit the records of fetched parts in one transaction (idempotent; no part rows, no
        ack); how many records each inserted."""
        return await self._run(self._ingest_fetched_and_commit, parts)

    async def refuse(self, letter: DeadLetter, header: PartHeader | None) -> Refusal:
        """Keep a refused message in dead_letters and, if `header` is given and plausible,
        record its part as refused so its range can complete; one transaction."""
        return await self._run(self._refuse, letter, header)

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead letters first (payload as bytes, received_at in epoch seconds)."""
        return await self._run(self._dicts, self.dialect.statements.select_dead_letters, (limit,))

    async def counters(self) -> dict[str, int]:
        """Persistent counters: dead_letters_dropped, dead_letter_bytes_dropped, and the
        table's size, dead_letter_rows and dead_letter_bytes."""
        rows = await self._query(self.dialect.statements.select_counters)
        return {str(name): int(value) for name, value in rows}

    async def acked_seq(self, gateway: str) -> int | None:
        rows = await self._query(self.dialect.statements.select_gateway, (gateway,))
        return int(rows[0][0]) if rows else None

    async def gateway_status(self) -> list[dict[str, Any]]:
        """The gateway_status view, one dict per gateway."""
        return await self._run(self._dicts, self.dialect.statements.select_status, ())

    async def acks(self) -> dict[str, int]:
        """Every known gateway's acknowledged seq."""
        rows = await self._query(self.dialect.statements.select_acks)
        return {str(gateway): int(seq) for gateway, seq in rows}

    async def gateways(self) -> list[str]:
        return [str(row[0]) for row in await self._query(self.dialect.statements.select_gateways)]

    async def assets(self, gateway: str) -> list[str]:
        rows = await self._query(self.dialect.statements.select_assets, (gateway,))
        return [str(row[0]) for row in rows]

    async def features(
        self, gateway: str, asset: str, since: float, until: float
    ) -> list[StoredFeature]:
        """The asset's feature rows with since <= t < until, by time."""
        rows = await self._query(
            self.dialect.statements.select_features, (gateway, asset, since, until)
        )
        return [
            StoredFeature(int(seq), float(t), int(schema_id), self.dialect.values_from_db(values))
            for seq, t, schema_id, values in rows
        ]

    async def schemas_by_ref(self, refs: Iterable[bytes]) -> list[tuple[str, ...]]:
        """The stored feature schemas whose key starts with one of these 8-byte references
        (PROTOCOL.md, "Schema references"; the caller checks each against its names)."""
        sql = self.dialect.statements.select_schemas_by_ref
        found = []
        for ref in refs:
            found += [tuple(json.loads(row[0])) for row in await self._query(sql, (ref.hex(),))]
        return found

    async def summaries(
        self, gateway: str, asset: str, since: float, until: float
    ) -> list[StoredSummary]:
        """The asset's per-minute aggregates (summary profile), since <= minute < until."""
        rows = await self._query(
            SELECT_SUMMARIES[self.dialect.name], (gateway, asset, since, until)
        )
        return stored_summaries(self.dialect, rows)

    async def schema_names(self, schema_id: int) -> tuple[str, ...]:
        rows = await self._query(self.dialect.statements.select_schema_names, (schema_id,))
        return tuple(json.loads(rows[0][0]))

    async def score_flags(
        self, gateway: str, asset: str, since: float, until: float
    ) -> dict[float, bool]:
        """Score time -> anomalous, for the asset's scores with since <= t < until."""
        rows = await self._query(
            self.dialect.statements.select_score_flags, (gateway, asset, since, until)
        )
        return {float(t): bool(anomalous) for t, anomalous in rows}

    async def judging_alerts(self, gateway: str, asset: str) -> list[Alert]:
        """The asset's verdicts on its anomaly episodes and its anomaly clears (the export
        labels windows by them: appliance/uplink/schema/verdicts.py)."""
        rows = await self._query(self.dialect.statements.select_judging_alerts, (gateway, asset))
        alerts = []
        for t, severity, kind, message in rows:
            level: Severity = "critical" if severity == "critical" else "warning"
            alerts.append(Alert(asset, float(t), level, str(kind), str(message)))
        return alerts

    async def read(self, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """One read-only query of a module with SQL of its own (receiver/web/), as dicts."""
        return await self._run(self._dicts, sql, parameters)

    async def transaction(self, what: str, body: Callable[..., T], *args: Any) -> T:
        """`body(connection, *args)` in one transaction on the database thread, for the modules
        that keep tables of their own (receiver/drift/store.py)."""
        return await self._run(self._transaction, what, body, *args)

    # --- on the database thread -----------------------------------------------------------

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    async def _query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._run(self._fetch_all, sql, parameters)

    def _db(self) -> DbApiConnection:
        """The connection, (re)opened if there is none or the server closed it."""
        connection = self._connection
        if connection is None or self.dialect.is_closed(connection):
            try:
                connection = self._connection = self.dialect.connect()
            except self.dialect.errors as exc:
                raise self._error("connecting", exc) from exc
        return connection

    def _error(self, what: str, exc: Exception) -> DatabaseError:
        transient = self.dialect.is_transient(exc)
        return DatabaseError(f"{self.where}: {what} failed: {exc}", transient=transient)

    def _start(self) -> None:
        connection = self._db()
        try:
            apply_migrations(connection, self.dialect, self.where)
            if self.dialect.after_migrations is not None:
                self.dialect.after_migrations(connection)
        except self.dialect.errors as exc:
            raise self._error("migrating", exc) from exc

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _fetch_all(self, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return list(self._db().execute(sql, parameters).fetchall())
        except self.dialect.errors as exc:
            raise self._error("reading", exc) from exc

    def _dicts(self, sql: str, parameters: Sequence[Any]) -> list[dict[str, Any]]:
        try:
            cursor = self._db().execute(sql, parameters)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except self.dialect.errors as exc:
            raise self._error("reading", exc) from exc

    def _transaction(self, what: str, body: Callable[..., T], *args: Any) -> T:
        """BEGIN, body, COMMIT; roll back and raise DatabaseError on a database error.

        A broken connection is dropped so the next call opens a new one."""
        connection = self._db()
        try:
            connection.execute(self.dialect.begin, ())
            result = body(connection, *args)
            connection.execute("COMMIT", ())
            return result
        except BaseException as exc:
            self._roll_back(connection)
            if isinstance(exc, self.dialect.errors):
                raise self._error(what, exc) from exc
            if isinstance(exc, Exception) and not isinstance(exc, DatabaseError):
                # A value the driver cannot bind (OverflowError, UnicodeEncodeError, ...): this
                # data can never be stored, and it must not end the process.
                raise DatabaseError(
                    f"{self.where}: {what} failed: {type(exc).__name__}: {exc}", transient=False
                ) from exc
            raise

    def _roll_back(self, connection: DbApiConnection) -> None:
        try:
            connection.execute("ROLLBACK", ())
        except self.dialect.errors:
            self._close_quietly()

    def _close_quietly(self) -> None:
        try:
            self._close()
        except self.dialect.errors:
            self._connection = None

    def _ingest_and_commit(self, part: Part, received_at: float) -> IngestResult:
        return self._ingest_many_and_commit([part], received_at)[0]

    def _ingest_many_and_commit(
        self, parts: Sequence[Part], received_at: float
    ) -> list[IngestResult]:
        new_schemas: SchemaIds = {}
        what = f"committing {parts[0].where}" + (
            f" and {len(parts) - 1} more part(s)" if len(parts) > 1 else ""
        )
        results = self._transaction(
            what, ingest_parts, self.dialect, self.where, parts, received_at, self._schema_ids,
            new_schemas
        )  # fmt: skip
        self._schema_ids.update(new_schemas)  # only now: their rows exist
        return results

    def _ingest_fetched_and_commit(self, parts: Sequence[Part]) -> list[int]:
        new_schemas: SchemaIds = {}
        what = f"committing fetched {parts[0].where}" + (
            f" and {len(parts) - 1} more part(s)" if len(parts) > 1 else ""
        )
        inserted = self._transaction(
            what, ingest_fetched, self.dialect, parts, self._schema_ids, new_schemas
        )
        self._schema_ids.update(new_schemas)  # only now: their rows exist
        return inserted

    def _refuse(self, letter: DeadLetter, header: PartHeader | None) -> Refusal:
        sql, limits = self.dialect.statements, self.dead_letter_limits
        return self._transaction(
            "keeping a dead letter", refuse, sql, self.where, limits, letter, header
        )
