"""The outbox's SQL: features, scores and alerts under one seq counter, written and read back.

Plain synchronous functions of a sqlite3 connection (run on the store's writer thread, or on any
connection in tests). Every outbound row takes the next number of `outbox_sequence`
(insert_records); writes expect to run inside a transaction (Database.write). Reads return rows
in seq order, up to a seq. `History` is the part that reads stored records back, over the
Database; their delivery (ranges, acknowledgements, renumbering) is delivery.py's.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from appliance.records import Alert, FeatureVector, Score
from appliance.store.codec import (
    EncodedRecord,
    FeatureRow,
    ScoreRow,
    StoredRecord,
    decode_alert,
    decode_names,
    decode_score,
    decode_values,
    encode_names,
)
from appliance.store.database import Database, fetch_value

SchemaKey = tuple[str, tuple[str, ...]]  # (asset, feature names)
MAX_SEQ = 2**63 - 1

INSERT_FEATURE = (
    "INSERT INTO features (seq, asset, window_end, schema_id, values_f64le) VALUES (?, ?, ?, ?, ?)"
)
INSERT_SCORE = (
    "INSERT INTO scores (seq, asset, t, model_id, error, threshold, anomalous, contributors_json)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_ALERT = (
    "INSERT INTO alerts (seq, asset, t, severity, kind, channel, message)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
FEATURE_COLUMNS = "asset, window_end, schema_id, values_f64le"
SCORE_COLUMNS = "asset, t, model_id, error, threshold, anomalous, contributors_json"
ALERT_COLUMNS = "asset, t, severity, kind, channel, message"
# The highest seq among the first `limit` outbound rows with after_seq < seq <= up_to_seq
# (?1 = after_seq, ?2 = limit, ?3 = up_to_seq).
LAST_OUTBOX_SEQ = """
SELECT max(seq) FROM (
    SELECT seq FROM (
        SELECT seq FROM features WHERE seq > ?1 AND seq <= ?3 ORDER BY seq LIMIT ?2)
    UNION ALL SELECT seq FROM (
        SELECT seq FROM scores WHERE seq > ?1 AND seq <= ?3 ORDER BY seq LIMIT ?2)
    UNION ALL SELECT seq FROM (
        SELECT seq FROM alerts WHERE seq > ?1 AND seq <= ?3 ORDER BY seq LIMIT ?2)
    ORDER BY seq LIMIT ?2
)
"""
RECENT_NORMAL_FEATURES = f"""
SELECT seq, {FEATURE_COLUMNS} FROM features AS f
WHERE asset = ? AND NOT EXISTS (
    SELECT 1 FROM scores AS s WHERE s.t = f.window_end AND s.asset = f.asset AND s.anomalous = 1
)
ORDER BY seq DESC LIMIT ?
"""


def select_sql(table: str, columns: str, *, by_asset: bool) -> str:
    """Rows with after_seq < seq <= up_to_seq (of one asset if `by_asset`), oldest first."""
    where = "asset = ? AND seq > ? AND seq <= ?" if by_asset else "seq > ? AND seq <= ?"
    return f"SELECT seq, {columns} FROM {table} WHERE {where} ORDER BY seq LIMIT ?"


@dataclass
class FeatureSchemas:
    """Feature-name schema ids by (asset, names) and names by id, cached from `feature_schemas`.

    Only ids whose transaction committed are cached (`remember` after COMMIT): an id inserted by
    a rolled-back transaction must never be reused."""

    ids: dict[SchemaKey, int] = field(default_factory=dict)
    names: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def remember(self, new_ids: dict[SchemaKey, int]) -> None:
        self.ids.update(new_ids)


class History:
    """Stored records read back, oldest first (commissioning replay, a new model's canary run,
    `appliance train`)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._schemas = FeatureSchemas()  # names of the features read, on the writer thread

    async def features(
        self, asset: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, FeatureVector]]:
        """Stored features with seq > after_seq, oldest first, at most `limit`."""
        return await self._db.read(
            "features",
            lambda db: read_features(db, self._schemas, asset, after_seq, MAX_SEQ, limit),
        )

    async def recent_normal_features(self, asset: str, limit: int) -> list[FeatureVector]:
        """The asset's newest `limit` stored windows that no model scored anomalous, oldest
        first (a new model's canary run, appliance/ota)."""
        return await self._db.read(
            "recent features", lambda db: recent_normal_features(db, self._schemas, asset, limit)
        )

    async def scores(
        self, asset: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, Score]]:
        """Stored scores with seq > after_seq, oldest first, at most `limit`."""
        return await self._db.read(
            "scores", lambda db: read_scores(db, asset, after_seq, MAX_SEQ, limit)
        )

    async def alerts(
        self, asset: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, Alert]]:
        """Stored alerts with seq > after_seq, oldest first, at most `limit`."""
        return await self._db.read(
            "alerts", lambda db: read_alerts(db, asset, after_seq, MAX_SEQ, limit)
        )

    async def outbox(self, after_seq: int = 0, limit: int = 1000) -> list[tuple[int, StoredRecord]]:
        """Features, scores and alerts with seq > after_seq merged in seq order, at most `limit`."""
        return await self._db.read(
            "the outbox", lambda db: read_outbox(db, self._schemas, after_seq, limit, MAX_SEQ)
        )


# --- writes ---------------------------------------------------------------------------------


def insert_records(
    db: sqlite3.Connection,
    rows: list[EncodedRecord],
    schemas: FeatureSchemas,
    new_schema_ids: dict[SchemaKey, int],
) -> list[int]:
    """Insert `rows` with the next seqs, in the given order; schema ids added on the way are put
    in `new_schema_ids` (for FeatureSchemas.remember once committed)."""
    feature_rows = [row for row in rows if isinstance(row, FeatureRow)]
    schema_ids = schema_ids_of(db, feature_rows, schemas, new_schema_ids)
    seqs = next_seqs(db, len(rows))
    inserts: dict[str, list[tuple[Any, ...]]] = {
        INSERT_FEATURE: [],
        INSERT_SCORE: [],
        INSERT_ALERT: [],
    }
    for seq, row in zip(seqs, rows, strict=True):
        if isinstance(row, FeatureRow):
            schema_id = schema_ids[row.asset, row.names]
            inserts[INSERT_FEATURE].append(
                (seq, row.asset, row.window_end, schema_id, row.values_f64le)
            )
        elif isinstance(row, ScoreRow):
            inserts[INSERT_SCORE].append((seq, *row))
        else:
            inserts[INSERT_ALERT].append((seq, *row))
    for sql, parameters in inserts.items():
        if parameters:
            db.executemany(sql, parameters)
    return list(seqs)


def schema_ids_of(
    db: sqlite3.Connection,
    rows: list[FeatureRow],
    schemas: FeatureSchemas,
    new_schema_ids: dict[SchemaKey, int],
) -> dict[SchemaKey, int]:
    schema_ids: dict[SchemaKey, int] = {}
    for key in dict.fromkeys((row.asset, row.names) for row in rows):
        cached = schemas.ids.get(key)
        if cached is None:
            cached = new_schema_ids[key] = find_or_add_schema(db, *key)
        schema_ids[key] = cached
    return schema_ids


def find_or_add_schema(db: sqlite3.Connection, asset: str, names: tuple[str, ...]) -> int:
    names_json = encode_names(names)
    found = db.execute(
        "SELECT id FROM feature_schemas WHERE asset = ? AND names_json = ?", (asset, names_json)
    ).fetchall()
    for row in found:
        return int(row[0])
    added = db.execute(
        "INSERT INTO feature_schemas (asset, names_json) VALUES (?, ?) RETURNING id",
        (asset, names_json),
    ).fetchall()
    return int(added[0][0])


def next_seqs(db: sqlite3.Connection, count: int) -> range:
    """Take `count` numbers from the outbox sequence shared by every outbound table."""
    rows = db.execute(
        "UPDATE outbox_sequence SET last_seq = last_seq + ? WHERE id = 1 RETURNING last_seq",
        (count,),
    ).fetchall()
    last_seq = int(rows[0][0])
    return range(last_seq - count + 1, last_seq + 1)


# --- reads ----------------------------------------------------------------------------------


def read_outbox(
    db: sqlite3.Connection, schemas: FeatureSchemas, after_seq: int, limit: int, up_to_seq: int
) -> list[tuple[int, StoredRecord]]:
    """Features, scores and alerts with after_seq < seq <= up_to_seq in seq order, at most
    `limit`."""
    last = fetch_value(db, LAST_OUTBOX_SEQ, (after_seq, limit, up_to_seq))
    if last is None:
        return []
    up_to_seq = int(last)
    merged: list[tuple[int, StoredRecord]] = [
        *read_features(db, schemas, None, after_seq, up_to_seq, limit),
        *read_scores(db, None, after_seq, up_to_seq, limit),
        *read_alerts(db, None, after_seq, up_to_seq, limit),
    ]
    merged.sort(key=lambda item: item[0])
    return merged


def read_features(
    db: sqlite3.Connection,
    schemas: FeatureSchemas,
    asset: str | None,
    after_seq: int,
    up_to_seq: int,
    limit: int,
) -> list[tuple[int, FeatureVector]]:
    rows = select(db, "features", FEATURE_COLUMNS, asset, after_seq, up_to_seq, limit)
    return feature_rows(db, schemas, rows)


def recent_normal_features(
    db: sqlite3.Connection, schemas: FeatureSchemas, asset: str, limit: int
) -> list[FeatureVector]:
    """The asset's newest `limit` windows no model scored anomalous, oldest first."""
    rows = db.execute(RECENT_NORMAL_FEATURES, (asset, limit)).fetchall()
    rows.reverse()
    return [vector for _, vector in feature_rows(db, schemas, rows)]


def feature_rows(
    db: sqlite3.Connection, schemas: FeatureSchemas, rows: list[Any]
) -> list[tuple[int, FeatureVector]]:
    names_by_id = names_by_schema_id(db, schemas, {int(row[3]) for row in rows})
    return [
        (
            int(seq),
            FeatureVector(
                asset=str(row_asset),
                window_end=float(window_end),
                names=names_by_id[int(schema_id)],
                values=decode_values(values_f64le),
            ),
        )
        for seq, row_asset, window_end, schema_id, values_f64le in rows
    ]


def read_scores(
    db: sqlite3.Connection, asset: str | None, after_seq: int, up_to_seq: int, limit: int
) -> list[tuple[int, Score]]:
    rows = select(db, "scores", SCORE_COLUMNS, asset, after_seq, up_to_seq, limit)
    return [(int(row[0]), decode_score(row[1:])) for row in rows]


def read_alerts(
    db: sqlite3.Connection, asset: str | None, after_seq: int, up_to_seq: int, limit: int
) -> list[tuple[int, Alert]]:
    rows = select(db, "alerts", ALERT_COLUMNS, asset, after_seq, up_to_seq, limit)
    return [(int(row[0]), decode_alert(row[1:])) for row in rows]


def select(
    db: sqlite3.Connection,
    table: str,
    columns: str,
    asset: str | None,
    after_seq: int,
    up_to_seq: int,
    limit: int,
) -> list[Any]:
    if asset is None:
        sql = select_sql(table, columns, by_asset=False)
        return db.execute(sql, (after_seq, up_to_seq, limit)).fetchall()
    sql = select_sql(table, columns, by_asset=True)
    return db.execute(sql, (asset, after_seq, up_to_seq, limit)).fetchall()


def names_by_schema_id(
    db: sqlite3.Connection, schemas: FeatureSchemas, schema_ids: set[int]
) -> dict[int, tuple[str, ...]]:
    missing = sorted(schema_ids - schemas.names.keys())
    if missing:
        placeholders = ", ".join("?" * len(missing))
        rows = db.execute(
            f"SELECT id, names_json FROM feature_schemas WHERE id IN ({placeholders})", missing
        ).fetchall()
        for schema_id, names_json in rows:
            schemas.names[int(schema_id)] = decode_names(str(names_json))
    return {schema_id: schemas.names[schema_id] for schema_id in schema_ids}
