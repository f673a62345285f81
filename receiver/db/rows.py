"""A decoded part as rows for the database's executemany (pure)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from appliance.records import Alert, FeatureVector, FloatArray, Score
from appliance.uplink.schema import Part, PartHeader

ValuesParam = Callable[[FloatArray], object]
Row = tuple[Any, ...]
R = TypeVar("R", FeatureVector, Score, Alert)


def names_json(names: tuple[str, ...]) -> str:
    return json.dumps(list(names), ensure_ascii=False, separators=(",", ":"))


def names_key(names: tuple[str, ...]) -> str:
    """The unique key of a feature schema (an index on ~1,000 names would be too wide)."""
    return hashlib.sha256(names_json(names).encode("utf-8")).hexdigest()


KIND_OF: dict[type, str] = {FeatureVector: "features", Score: "scores", Alert: "alerts"}


def of_kind(part: Part, kind: type[R]) -> list[tuple[int, R]]:
    """The part's (seq, record) pairs, all of `kind`: a decoded part holds records of its own
    kind only (decode_part builds them so), which is checked once per part, not per record."""
    if part.kind != KIND_OF[kind]:
        raise TypeError(f"{part.where}: a {part.kind} part has no {kind.__name__} records")
    return part.records  # type: ignore[return-value]


def feature_names(part: Part) -> list[tuple[str, ...]]:
    """The distinct name tuples of a features part, in first-seen order."""
    if part.kind != "features":
        return []
    return list(dict.fromkeys(record.names for _, record in of_kind(part, FeatureVector)))


def feature_rows(
    part: Part, schema_ids: Mapping[tuple[str, ...], int], values_param: ValuesParam
) -> list[Row]:
    """(gateway, seq, asset, t, schema_id, values)."""
    gateway, asset = part.gateway, part.asset
    return [
        (gateway, seq, asset, record.window_end, schema_ids[record.names],
         values_param(record.values))
        for seq, record in of_kind(part, FeatureVector)
    ]  # fmt: skip


def names_list_json(names: tuple[str, ...]) -> str:
    """A JSON list of names ("[]" without the encoder: most scores have no contributors)."""
    return json.dumps(list(names), ensure_ascii=False) if names else "[]"


def score_rows(part: Part) -> list[Row]:
    """(gateway, seq, asset, t, model_id, error, threshold, anomalous, contributors_json);
    NaN and infinities as NULL."""
    gateway, asset, isfinite = part.gateway, part.asset, math.isfinite
    return [
        (
            gateway,
            seq,
            asset,
            record.t,
            record.model_id,
            record.error if isfinite(record.error) else None,
            record.threshold if isfinite(record.threshold) else None,
            record.anomalous,
            names_list_json(record.contributors),
        )
        for seq, record in of_kind(part, Score)
    ]


def alert_rows(part: Part) -> list[Row]:
    """(gateway, seq, asset, t, severity, kind, message, channel)."""
    return [
        (part.gateway, seq, part.asset, record.t, record.severity, record.kind, record.message,
         record.channel)
        for seq, record in of_kind(part, Alert)
    ]  # fmt: skip


def part_row(part: Part | PartHeader, received_at: float) -> Row:
    """(gateway, lo, hi, parts, part, kind, asset, records, received_at); a header is a refused
    part, with no records."""
    return (
        part.gateway,
        part.lo,
        part.hi,
        part.parts,
        part.part,
        part.kind,
        part.asset,
        records_accounted(part),
        received_at,
    )


MAX_STORED_PAYLOAD_BYTES = 1024 * 1024
MAX_DETAIL_CHARS = 2000


@dataclass(frozen=True)
class DeadLetter:
    """A message the receiver refused, kept for inspection (the `dead_letters` table)."""

    gateway: str | None
    """From the topic; None when the topic is not a data topic."""
    topic: str
    payload: bytes
    reason: str
    detail: str
    received_at: float


def storable_text(text: str, limit: int) -> str:
    """Any str as text both databases take: surrogates escaped, NUL shown as \\x00, bounded."""
    clean = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def dead_letter_row(letter: DeadLetter) -> Row:
    """(gateway, topic, reason, detail, payload, payload_bytes, stored_bytes, received_at): the
    payload's first MAX_STORED_PAYLOAD_BYTES bytes, and its full size."""
    stored = bytes(letter.payload[:MAX_STORED_PAYLOAD_BYTES])
    return (
        None if letter.gateway is None else storable_text(letter.gateway, 200),
        storable_text(letter.topic, 1000),
        storable_text(letter.reason, 100),
        storable_text(letter.detail, MAX_DETAIL_CHARS),
        stored,
        len(letter.payload),
        len(stored),
        letter.received_at,
    )


def records_accounted(part: Part | PartHeader) -> int:
    """The seqs a part accounts for: its records, or those a summary part summarises; a
    refused part's header none."""
    if not isinstance(part, Part):
        return 0
    return part.summary.summarised if part.summary is not None else len(part.records)


def newest_time(part: Part) -> float | None:
    if not part.records:
        return None
    if part.kind == "features":
        return max(record.window_end for _, record in of_kind(part, FeatureVector))
    return max(record.t for _, record in part.records)  # type: ignore[union-attr]
