"""Storing a part: the body of its one transaction (PROTOCOL.md, "What the receiver does with a
part"), as plain functions of the DB-API connection run by Database on its thread.

  1. resolve feature schema ids (cached by Database after commit), insert the records with
     `ON CONFLICT DO NOTHING` in one executemany per table: duplicates are counted, not errors;
  2. insert the part (ON CONFLICT DO NOTHING);
  3. upsert the gateway's row (last seen, newest record time). On PostgreSQL this takes the row's
     lock, so of two transactions of one gateway the second reads what the first committed;
  4. if the part completed its range and that range touches the acknowledged chain, extend the
     chain over the complete ranges above it and store the new acked seq.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from appliance.uplink.schema import Part, PartHeader
from receiver.chain import extend_chain
from receiver.db.dialect import DbApiConnection, Dialect, Statements
from receiver.db.rows import (
    Row,
    alert_rows,
    feature_names,
    feature_rows,
    names_json,
    names_key,
    newest_time,
    part_row,
    score_rows,
)
from receiver.db.summary_tables import insert_summaries
from receiver.errors import DatabaseError

SchemaIds = dict[tuple[str, ...], int]

MAX_SEQ_AHEAD = 2**40
"""A part's hi may lie at most this far above its gateway's acknowledged seq (or chain start):
a gateway writing 1,000 records a second takes 35 years to cover it, but a part claiming
(0, 2**62] is refused instead of moving the ack there."""


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


def ingest(
    db: DbApiConnection,
    dialect: Dialect,
    where: str,
    part: Part,
    received_at: float,
    known_schemas: SchemaIds,
    new_schemas: SchemaIds,
) -> IngestResult:
    """Steps 1 to 4; the schema ids added on the way go into `new_schemas` (for the cache, once
    committed)."""
    sql = dialect.statements
    new_schemas.update(resolve_schemas(db, sql, part, known_schemas))
    inserted = insert_records(db, dialect, part, {**known_schemas, **new_schemas})
    records = len(part.records)
    if part.summary is not None:
        inserted += ingest_summary(db, dialect, part, known_schemas, new_schemas, received_at)
        records += sum(len(nested.records) for nested in part.summary.promoted)
    db.execute(sql.insert_part, part_row(part, received_at))
    db.execute(sql.upsert_gateway, (part.gateway, received_at, received_at, newest_time(part)))
    return update_ack(db, sql, where, part.header, received_at, inserted, records)


def ingest_summary(
    db: DbApiConnection,
    dialect: Dialect,
    part: Part,
    known_schemas: SchemaIds,
    new_schemas: SchemaIds,
    received_at: float,
) -> int:
    """A summary part (the summary profile): the windows it promotes, stored like any record
    (a duplicate ignored), and its minutes (summary_tables.py); the records it inserted."""
    assert part.summary is not None
    inserted = 0
    for nested in part.summary.promoted:
        new_schemas.update(
            resolve_schemas(db, dialect.statements, nested, {**known_schemas, **new_schemas})
        )
        inserted += insert_records(db, dialect, nested, {**known_schemas, **new_schemas})
    names = [minute.names for minute in part.summary.minutes if minute.names]
    new_schemas.update(
        resolve_names(db, dialect.statements, names, {**known_schemas, **new_schemas})
    )
    insert_summaries(db, dialect, part, {**known_schemas, **new_schemas}, received_at)
    return inserted


def ingest_parts(
    db: DbApiConnection,
    dialect: Dialect,
    where: str,
    parts: Sequence[Part],
    received_at: float,
    known_schemas: SchemaIds,
    new_schemas: SchemaIds,
) -> list[IngestResult]:
    """ingest() for each part in one transaction, their results in the order given. The parts
    go in by gateway, so two receivers' transactions take the gateways' row locks in the same
    order (PostgreSQL: no deadlock between them)."""
    results: dict[int, IngestResult] = {}
    for index in sorted(range(len(parts)), key=lambda i: parts[i].gateway):
        known = {**known_schemas, **new_schemas}
        results[index] = ingest(db, dialect, where, parts[index], received_at, known, new_schemas)
    return [results[index] for index in range(len(parts))]


def ingest_fetched(
    db: DbApiConnection,
    dialect: Dialect,
    parts: Sequence[Part],
    known_schemas: SchemaIds,
    new_schemas: SchemaIds,
) -> list[int]:
    """Fetched parts (PROTOCOL.md, "Fetch on demand"): their records only, duplicates ignored;
    no part row, no ack: a fetch stands outside the gateway's ranges. How many records each
    part inserted."""
    inserted = []
    for part in parts:
        new_schemas.update(resolve_schemas(db, dialect.statements, part, known_schemas))
        inserted.append(insert_records(db, dialect, part, {**known_schemas, **new_schemas}))
    return inserted


def update_ack(
    db: DbApiConnection,
    sql: Statements,
    where: str,
    header: PartHeader,
    received_at: float,
    inserted: int,
    records: int,
) -> IngestResult:
    """After the part's row: move the gateway's ack if the part completed a range that
    extends the chain. DatabaseError("implausible") if hi is too far above the ack."""
    acked, chain_start = db.execute(sql.select_gateway, (header.gateway,)).fetchone()
    start = max(int(acked), int(chain_start))
    if not plausible(header, start):
        raise DatabaseError(
            f"{where}: {header.where}: hi {header.hi} is more than 2**40 above the "
            f"gateway's acknowledged seq {start}",
            transient=False,
            reason="implausible",
        )
    new_ack = advance_chain(db, sql, header, start)
    if new_ack > int(acked):
        db.execute(sql.update_ack, (new_ack, received_at, header.gateway, new_ack))
    return IngestResult(
        inserted=inserted,
        duplicates=records - inserted,
        acked_seq=max(new_ack, int(acked)),
        advanced=new_ack > int(acked),
        resent=header.hi <= start,
    )


def plausible_now(db: DbApiConnection, sql: Statements, header: PartHeader) -> bool:
    """The part's range is plausible against where its gateway's chain stands now."""
    row = db.execute(sql.select_gateway, (header.gateway,)).fetchone()
    return plausible(header, 0 if row is None else max(int(row[0]), int(row[1])))


def plausible(header: PartHeader, start: int) -> bool:
    """The part's range lies at most MAX_SEQ_AHEAD above where the gateway's chain stands."""
    return header.hi <= start + MAX_SEQ_AHEAD


def resolve_schemas(
    db: DbApiConnection, sql: Statements, part: Part, known: SchemaIds
) -> SchemaIds:
    return resolve_names(db, sql, feature_names(part), known)


def resolve_names(
    db: DbApiConnection, sql: Statements, feature_names: Iterable[tuple[str, ...]], known: SchemaIds
) -> SchemaIds:
    resolved = {}
    for names in dict.fromkeys(feature_names):
        if names in known:
            continue
        key = names_key(names)
        db.execute(sql.insert_schema, (key, names_json(names)))
        resolved[names] = int(db.execute(sql.select_schema_id, (key,)).fetchone()[0])
    return resolved


def insert_records(db: DbApiConnection, dialect: Dialect, part: Part, schema_ids: SchemaIds) -> int:
    sql = dialect.statements
    if part.kind == "features":
        return execute_many(
            db, sql.insert_features, feature_rows(part, schema_ids, dialect.values_param)
        )
    if part.kind == "scores":
        return execute_many(db, sql.insert_scores, score_rows(part))
    if part.kind == "alerts":
        return execute_many(db, sql.insert_alerts, alert_rows(part))
    return 0


def advance_chain(db: DbApiConnection, sql: Statements, part: PartHeader, start: int) -> int:
    """The new end of the chain, or `start` if this part cannot have moved it."""
    if not part.lo <= start < part.hi:
        return start
    count = db.execute(sql.count_parts, (part.gateway, part.lo, part.hi, part.parts))
    if int(count.fetchone()[0]) != part.parts:
        return start
    ranges = db.execute(sql.complete_ranges_above, (part.gateway, start)).fetchall()
    return extend_chain(start, ((int(lo), int(hi)) for lo, hi in ranges))


def execute_many(db: DbApiConnection, sql: str, rows: Iterable[Row]) -> int:
    """Run `sql` for every row; the number of rows it inserted."""
    cursor = db.cursor()
    try:
        cursor.executemany(sql, list(rows))
        return int(cursor.rowcount)
    finally:
        cursor.close()
