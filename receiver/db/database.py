"""The receiver's database: one ingest algorithm over SQLite or PostgreSQL.

Both backends are driven through their plain DB-API connection (sqlite3, psycopg) on one
dedicated thread, so the event loop never blocks and the transaction logic below exists once.
A backend (a `Dialect`) supplies the connection, its SQL, its migrations and how its errors read.

One part is one transaction (PROTOCOL.md, "What the receiver does with a part"):
  1. resolve feature schema ids (cached after commit), insert the records with
     `ON CONFLICT DO NOTHING` in one executemany per table: duplicates are counted, not errors;
  2. insert the part (ON CONFLICT DO NOTHING);
  3. upsert the gateway's row (last seen, newest record time). On PostgreSQL this takes the row's
     lock, so of two transactions of one gateway the second reads what the first committed;
  4. if the part completed its range and that range touches the acknowledged chain, extend the
     chain over the complete ranges above it and store the new acked seq.

A message that can never be stored is refused in a transaction of its own (`refuse`): a row in
`dead_letters` (raw bytes, bounded; the oldest rows dropped beyond the limits, and counted), and,
when its header was valid and plausible, the part recorded as refused so that its range can
complete and the ack move past it (PROTOCOL.md, "Refused parts").
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from appliance.records import FloatArray
from appliance.uplink.schema import Part, PartHeader
from receiver.chain import extend_chain
from receiver.db.rows import (
    MAX_STORED_PAYLOAD_BYTES,
    DeadLetter,
    Row,
    ValuesParam,
    alert_rows,
    dead_letter_row,
    feature_names,
    feature_rows,
    names_json,
    names_key,
    newest_time,
    part_row,
    score_rows,
)
from receiver.errors import DatabaseError

T = TypeVar("T")

MAX_SEQ_AHEAD = 2**40
"""A part's hi may lie at most this far above its gateway's acknowledged seq (or chain start):
a gateway writing 1,000 records a second takes 35 years to cover it, but a part claiming
(0, 2**62] is refused instead of moving the ack there."""


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
    update_ack: str
    select_features: str
    select_score_flags: str
    select_status: str
    insert_refused_part: str
    insert_dead_letter: str
    select_dead_letters: str
    select_gateway: str = "SELECT acked_seq, chain_start FROM gateways WHERE gateway = ?"
    count_parts: str = (
        "SELECT count(*) FROM parts WHERE gateway = ? AND lo = ? AND hi = ? AND parts = ?"
    )
    complete_ranges_above: str = (
        "SELECT lo, hi FROM parts WHERE gateway = ? AND hi > ?"
        " GROUP BY lo, hi, parts HAVING count(*) = parts ORDER BY lo, hi"
    )
    select_schema_names: str = "SELECT names_json FROM feature_schemas WHERE id = ?"
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


@dataclass(frozen=True)
class IngestResult:
    inserted: int
    duplicates: int
    acked_seq: int
    """The gateway's acknowledged seq after this transaction."""
    advanced: bool
    """This transaction moved the ack."""
    resent: bool
    """The part lay entirely at or below the ack before it came: the gateway re-sent it, so it
    has probably not seen the ack (publish it again)."""

    @property
    def ack_to_publish(self) -> int | None:
        return self.acked_seq if self.advanced or self.resent else None


@dataclass(frozen=True)
class Refusal:
    dead_letter_id: int
    dropped: int
    """Older dead letters dropped to stay within the limits (also added to receiver_counters)."""
    dropped_bytes: int
    result: IngestResult | None
    """The part, recorded as refused, counts in its range; None when it had no valid header or
    an implausible range (then it is not accounted and the ack does not move for it)."""


@dataclass(frozen=True)
class DeadLetterLimits:
    """The dead_letters table keeps at most `max_rows` rows and `max_bytes` stored payload bytes
    (each payload is cut at rows.MAX_STORED_PAYLOAD_BYTES); the oldest go first."""

    max_rows: int = 10_000
    max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.max_bytes < MAX_STORED_PAYLOAD_BYTES:
            raise ValueError(
                f"dead letter limits: at least 1 row and {MAX_STORED_PAYLOAD_BYTES} bytes"
            )


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
        self._schema_ids: dict[tuple[str, ...], int] = {}

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

    async def refuse(self, letter: DeadLetter, header: PartHeader | None) -> Refusal:
        """Keep a refused message in dead_letters and, if `header` is given and plausible,
        record its part as refused so its range can complete; one transaction."""
        return await self._run(self._transaction, "keeping a dead letter", self._refuse,
                               letter, header)  # fmt: skip

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
        new_schemas: dict[tuple[str, ...], int] = {}
        result = self._transaction(
            f"committing {part.where}", self._ingest, part, received_at, new_schemas
        )
        self._schema_ids.update(new_schemas)  # only now: their rows exist
        return result

    def _ingest(
        self,
        db: DbApiConnection,
        part: Part,
        received_at: float,
        new_schemas: dict[tuple[str, ...], int],
    ) -> IngestResult:
        sql = self.dialect.statements
        new_schemas.update(self._resolve_schemas(db, part))
        inserted = self._insert_records(db, part, {**self._schema_ids, **new_schemas})
        db.execute(sql.insert_part, part_row(part, received_at))
        db.execute(sql.upsert_gateway, (part.gateway, received_at, received_at,
                                        newest_time(part)))  # fmt: skip
        return self._update_ack(db, part.header, received_at, inserted, len(part.records))

    def _update_ack(
        self, db: DbApiConnection, header: PartHeader, received_at: float, inserted: int,
        records: int,
    ) -> IngestResult:  # fmt: skip
        """After the part's row: move the gateway's ack if the part completed a range that
        extends the chain. DatabaseError("implausible") if hi is too far above the ack."""
        sql = self.dialect.statements
        acked, chain_start = db.execute(sql.select_gateway, (header.gateway,)).fetchone()
        start = max(int(acked), int(chain_start))
        if not plausible(header, start):
            raise DatabaseError(
                f"{self.where}: {header.where}: hi {header.hi} is more than 2**40 above the "
                f"gateway's acknowledged seq {start}",
                transient=False,
                reason="implausible",
            )
        new_ack = self._advance_chain(db, header, start)
        if new_ack > int(acked):
            db.execute(sql.update_ack, (new_ack, received_at, header.gateway, new_ack))
        return IngestResult(
            inserted=inserted,
            duplicates=records - inserted,
            acked_seq=max(new_ack, int(acked)),
            advanced=new_ack > int(acked),
            resent=header.hi <= start,
        )

    def _refuse(
        self, db: DbApiConnection, letter: DeadLetter, header: PartHeader | None
    ) -> Refusal:
        sql = self.dialect.statements
        row = dead_letter_row(letter)
        letter_id = int(db.execute(sql.insert_dead_letter, row).fetchone()[0])
        dropped = self._trim_dead_letters(db, letter_id, int(row[6]))
        result = None
        if header is not None and self._plausible_now(db, header):
            db.execute(sql.insert_refused_part, part_row(header, letter.received_at))
            db.execute(sql.upsert_gateway, (header.gateway, letter.received_at,
                                            letter.received_at, None))  # fmt: skip
            result = self._update_ack(db, header, letter.received_at, 0, 0)
        return Refusal(letter_id, len(dropped), sum(dropped), result)

    def _trim_dead_letters(self, db: DbApiConnection, newest: int, stored: int) -> list[int]:
        """Drop the oldest dead letters beyond the limits (never `newest`); their stored sizes.
        The table's rows and bytes are counters kept here, so this costs O(dropped), not a scan
        (a scan of 10,000 rows made a flood of refusals 50 ms each)."""
        limits = self.dead_letter_limits
        rows = self._add_to_counter(db, "dead_letter_rows", 1)
        size = self._add_to_counter(db, "dead_letter_bytes", stored)
        dropped: list[int] = []
        while rows > limits.max_rows or size > limits.max_bytes:
            oldest = db.execute(self.dialect.statements.drop_oldest_dead_letter, (newest,))
            found = oldest.fetchone()
            if found is None:  # the counters were off (rows deleted by hand): count again
                rows, size = map(int, db.execute(self.dialect.statements.measure_dead_letters,
                                                 ()).fetchone())  # fmt: skip
                self._set_counters(db, rows, size)
                break
            dropped.append(int(found[0]))
            rows, size = rows - 1, size - int(found[0])
        if dropped:
            self._set_counters(db, rows, size)
            self._add_to_counter(db, "dead_letters_dropped", len(dropped))
            self._add_to_counter(db, "dead_letter_bytes_dropped", sum(dropped))
        return dropped

    def _add_to_counter(self, db: DbApiConnection, name: str, amount: int) -> int:
        return int(db.execute(self.dialect.statements.add_to_counter, (name, amount)).fetchone()[0])

    def _set_counters(self, db: DbApiConnection, rows: int, size: int) -> None:
        db.execute(self.dialect.statements.set_counter, ("dead_letter_rows", rows))
        db.execute(self.dialect.statements.set_counter, ("dead_letter_bytes", size))

    def _plausible_now(self, db: DbApiConnection, header: PartHeader) -> bool:
        row = db.execute(self.dialect.statements.select_gateway, (header.gateway,)).fetchone()
        return plausible(header, 0 if row is None else max(int(row[0]), int(row[1])))

    def _resolve_schemas(self, db: DbApiConnection, part: Part) -> dict[tuple[str, ...], int]:
        sql = self.dialect.statements
        resolved = {}
        for names in feature_names(part):
            if names in self._schema_ids:
                continue
            key = names_key(names)
            db.execute(sql.insert_schema, (key, names_json(names)))
            resolved[names] = int(db.execute(sql.select_schema_id, (key,)).fetchone()[0])
        return resolved

    def _insert_records(
        self, db: DbApiConnection, part: Part, schema_ids: dict[tuple[str, ...], int]
    ) -> int:
        sql = self.dialect.statements
        if part.kind == "features":
            return execute_many(
                db, sql.insert_features, feature_rows(part, schema_ids, self.dialect.values_param)
            )
        if part.kind == "scores":
            return execute_many(db, sql.insert_scores, score_rows(part))
        if part.kind == "alerts":
            return execute_many(db, sql.insert_alerts, alert_rows(part))
        return 0

    def _advance_chain(self, db: DbApiConnection, part: PartHeader, start: int) -> int:
        """The new end of the chain, or `start` if this part cannot have moved it."""
        sql = self.dialect.statements
        if not part.lo <= start < part.hi:
            return start
        count = db.execute(sql.count_parts, (part.gateway, part.lo, part.hi, part.parts))
        if int(count.fetchone()[0]) != part.parts:
            return start
        ranges = db.execute(sql.complete_ranges_above, (part.gateway, start)).fetchall()
        return extend_chain(start, ((int(lo), int(hi)) for lo, hi in ranges))


def plausible(header: PartHeader, start: int) -> bool:
    """The part's range lies at most MAX_SEQ_AHEAD above where the gateway's chain stands."""
    return header.hi <= start + MAX_SEQ_AHEAD


def execute_many(db: DbApiConnection, sql: str, rows: Iterable[Row]) -> int:
    """Run `sql` for every row; the number of rows it inserted."""
    cursor = db.cursor()
    try:
        cursor.executemany(sql, list(rows))
        return int(cursor.rowcount)
    finally:
        cursor.close()


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
