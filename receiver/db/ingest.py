"""Storing a part: the body of its one transaction (PROTOCOL.md, "What the receiver does with a
part"), as plain functions of the DB-API connection run by Database on its thread.

  1. resolve feature schema ids (cached by Database after commit), insert the records with
     `ON CONFLICT DO NOTHING` in one executemany per table: duplicates are counted, not errors;
  2. insert the part (ON CONFLICT DO NOTHING);
  3. upsert the gateway's row (last seen, newest record time), returning its ack and chain start.
     On PostgreSQL this takes the row's lock, so of two transactions of one gateway the second
     reads what the first committed;
  4. if the part completed its range and that range touches the acknowledged chain, extend the
     chain over the complete ranges above it and store the new acked seq.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class Written:
    """A part whose statements are sent (steps 1 to 3) and whose gateway's chain is asked for,
    the answers not read yet: in a pipeline they arrive together at the next read."""

    header: PartHeader
    records: int
    inserts: list[Any]
    """The cursors of its record inserts: their rowcounts, once read, are the records inserted."""
    chain: Any
    """The cursor of its gateway's (acked_seq, chain_start), as upserted."""


def ingest_parts(
    db: DbApiConnection,
    dialect: Dialect,
    where: str,
    parts: Sequence[Part],
    received_at: float,
    known_schemas: SchemaIds,
    new_schemas: SchemaIds,
) -> list[IngestResult]:
    """Steps 1 to 4 for each part, in one transaction; their results in the order given. The
    parts go in rounds of at most one part per gateway, pipelined (dialect.pipeline: PostgreSQL
    sends the statements without waiting for each answer), so that a round costs two round
    trips to the server whatever its size: write the parts and upsert their gateways (reading
    back their chains), then read the complete ranges they may extend the chains over; the
    acks they move go with the next round's writes. The schema ids added on the way go into
    `new_schemas` (for the cache, once committed).

    The parts go in by gateway, and a later round holds only gateways of the first, so two
    receivers' transactions take the gateways' row locks in the same order (PostgreSQL: no
    deadlock between them)."""
    results: dict[int, IngestResult] = {}
    with dialect.pipeline(db):
        for indices in rounds(parts):
            written = [
                write_part(db, dialect, parts[index], received_at, known_schemas, new_schemas)
                for index in indices
            ]
            acks = move_acks(db, dialect.statements, where, written, received_at)
            results.update(zip(indices, acks, strict=True))
    return [results[index] for index in range(len(parts))]


def rounds(parts: Sequence[Part]) -> list[list[int]]:
    """The parts' indices by gateway, in rounds: round k holds each gateway's (k+1)-th part, so
    a gateway's parts keep their order and no round holds a gateway twice."""
    by_round: list[list[int]] = []
    seen: dict[str, int] = {}
    for index in sorted(range(len(parts)), key=lambda i: parts[i].gateway):
        k = seen[parts[index].gateway] = seen.get(parts[index].gateway, -1) + 1
        if k == len(by_round):
            by_round.append([])
        by_round[k].append(index)
    return by_round


def write_part(
    db: DbApiConnection,
    dialect: Dialect,
    part: Part,
    received_at: float,
    known_schemas: SchemaIds,
    new_schemas: SchemaIds,
) -> Written:
    """Steps 1 to 3, and ask for the gateway's chain."""
    sql = dialect.statements
    new_schemas.update(resolve_schemas(db, sql, part, {**known_schemas, **new_schemas}))
    inserts = insert_records(db, dialect, part, {**known_schemas, **new_schemas})
    records = len(part.records)
    if part.summary is not None:
        inserts += ingest_summary(db, dialect, part, known_schemas, new_schemas, received_at)
        records += sum(len(nested.records) for nested in part.summary.promoted)
    db.execute(sql.insert_part, part_row(part, received_at))
    row = (part.gateway, received_at, received_at, newest_time(part))
    return Written(part.header, records, inserts, chain=db.execute(sql.upsert_gateway, row))


def ingest_summary(
    db: DbApiConnection,
    dialect: Dialect,
    part: Part,
    known_schemas: SchemaIds,
    new_schemas: SchemaIds,
    received_at: float,
) -> list[Any]:
    """A summary part (the summary profile): the windows it promotes, stored like any record
    (a duplicate ignored), and its minutes (summary_tables.py); the cursors of its record
    inserts."""
    assert part.summary is not None
    inserts = []
    for nested in part.summary.promoted:
        new_schemas.update(
            resolve_schemas(db, dialect.statements, nested, {**known_schemas, **new_schemas})
        )
        inserts += insert_records(db, dialect, nested, {**known_schemas, **new_schemas})
    names = [minute.names for minute in part.summary.minutes if minute.names]
    new_schemas.update(
        resolve_names(db, dialect.statements, names, {**known_schemas, **new_schemas})
    )
    insert_summaries(db, dialect, part, {**known_schemas, **new_schemas}, received_at)
    return inserts


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
        inserts = insert_records(db, dialect, part, {**known_schemas, **new_schemas})
        inserted.append(count_inserted(inserts))
    return inserted


def move_acks(
    db: DbApiConnection, sql: Statements, where: str, written: Sequence[Written], received_at: float
) -> list[IngestResult]:
    """Step 4 for parts of distinct gateways: read their chains, ask for the ranges they may
    complete, then move each ack the answers extend. DatabaseError("implausible") if a part's
    hi is too far above its gateway's ack."""
    chains = [chain_of(where, part.header, part.chain) for part in written]
    asked = [
        ask_ranges(db, sql, part.header, start)
        for part, (_, start) in zip(written, chains, strict=True)
    ]
    ends = [
        start if ranges is None else chain_end(part.header, start, ranges)
        for part, (_, start), ranges in zip(written, chains, asked, strict=True)
    ]
    results = []
    for part, (acked, start), new_ack in zip(written, chains, ends, strict=True):
        if new_ack > acked:
            db.execute(sql.update_ack, (new_ack, received_at, part.header.gateway, new_ack))
        inserted = count_inserted(part.inserts)
        results.append(IngestResult(
            inserted=inserted,
            duplicates=part.records - inserted,
            acked_seq=max(new_ack, acked),
            advanced=new_ack > acked,
            resent=part.header.hi <= start,
        ))  # fmt: skip
    return results


def update_ack(
    db: DbApiConnection,
    sql: Statements,
    where: str,
    header: PartHeader,
    chain: Any,
    received_at: float,
) -> IngestResult:
    """After the part's row and the gateway's upsert (`chain`, its cursor) of a part without
    records: move the gateway's ack if the part completed a range that extends the chain.
    DatabaseError("implausible") if hi is too far above the ack."""
    return move_acks(db, sql, where, [Written(header, 0, [], chain)], received_at)[0]


def chain_of(where: str, header: PartHeader, chain: Any) -> tuple[int, int]:
    """The gateway's acked seq and where its chain stands, from the cursor of select_gateway;
    DatabaseError("implausible") if the part's hi is too far above."""
    acked, chain_start = chain.fetchone()
    start = max(int(acked), int(chain_start))
    if not plausible(header, start):
        raise DatabaseError(
            f"{where}: {header.where}: hi {header.hi} is more than 2**40 above the "
            f"gateway's acknowledged seq {start}",
            transient=False,
            reason="implausible",
        )
    return int(acked), start


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


def insert_records(
    db: DbApiConnection, dialect: Dialect, part: Part, schema_ids: SchemaIds
) -> list[Any]:
    """The part's records sent with `ON CONFLICT DO NOTHING`; the cursors that count them."""
    sql = dialect.statements
    if part.kind == "features":
        return execute_many(
            db, sql.insert_features, feature_rows(part, schema_ids, dialect.values_param)
        )
    if part.kind == "scores":
        return execute_many(db, sql.insert_scores, score_rows(part))
    if part.kind == "alerts":
        return execute_many(db, sql.insert_alerts, alert_rows(part))
    return []


def ask_ranges(db: DbApiConnection, sql: Statements, part: PartHeader, start: int) -> Any:
    """If the part can move the chain (its range holds `start`), the cursor of the complete
    ranges above `start` (its own among them if it is complete), read later; else None."""
    if not part.lo <= start < part.hi:
        return None
    return db.execute(sql.complete_ranges_above, (part.gateway, start))


def chain_end(part: PartHeader, start: int, ranges: Any) -> int:
    """The new end of the chain from ask_ranges' answer, or `start` if the part's range (as
    this part splits it) is not among the complete ones."""
    complete = [(int(lo), int(hi), int(parts)) for lo, hi, parts in ranges.fetchall()]
    if (part.lo, part.hi, part.parts) not in complete:
        return start
    return extend_chain(start, ((lo, hi) for lo, hi, _ in complete))


def execute_many(db: DbApiConnection, sql: str, rows: Iterable[Row]) -> list[Any]:
    """Run `sql` for every row; the cursor, whose rowcount (once its answers are read) is the
    number of rows inserted. Left open: closing it in a pipeline would drop that count."""
    cursor = db.cursor()
    cursor.executemany(sql, list(rows))
    return [cursor]


def count_inserted(inserts: Iterable[Any]) -> int:
    return sum(int(cursor.rowcount) for cursor in inserts)
