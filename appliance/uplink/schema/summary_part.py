"""The summary part of a range in the `summary` uplink profile (PROTOCOL.md, "Uplink profiles"):
per-minute aggregates per asset, how many of the range's seqs it summarises, the seqs the
gateway no longer had, and the windows promoted into full after an earlier range summarised
them (nested features and scores parts of (0, lo]). One per range, on
`<prefix>/<gateway>/summary/_`, in either wire format."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from appliance.records import FeatureVector, FloatArray
from appliance.uplink.errors import SchemaError
from appliance.uplink.schema.decode_binary import resolved_schemas
from appliance.uplink.schema.encode_binary import schema_or_ref
from appliance.uplink.schema.parts import Part, PartHeader
from appliance.uplink.schema.schema_refs import SchemaBook
from appliance.uplink.schema.values import (
    check_int,
    check_name,
    check_schemas,
    check_str,
    check_time,
    shown,
)

SUMMARY_ASSET: Final = "_"
HEADER_KEYS: Final = frozenset({"v", "gateway", "lo", "hi", "part", "parts", "kind", "asset"})
MINUTE_S: Final = 60
PROMOTED_KINDS: Final = ("features", "scores")
MINUTE_COLUMNS: Final = ("assets", "minute", "windows", "schema", "scores", "anomalous", "alarm")
FLOAT_COLUMNS: Final = ("max_error", "threshold")
STAT_COLUMNS: Final = ("min", "mean", "max")
MINUTE_KEYS: Final = frozenset({"schemas", *MINUTE_COLUMNS, *FLOAT_COLUMNS, *STAT_COLUMNS})
"""Present all together, or none (no minute)."""
SUMMARY_KEYS: Final = frozenset({"summarised", "absent", "promoted", *MINUTE_KEYS})
""""summarised" always; "absent" and "promoted" only when not empty (bytes matter here)."""


@dataclass(frozen=True, eq=False)
class MinuteSummary:
    """One asset's windows of one UTC minute: `windows` feature vectors (of `names`) summed up
    as their min, mean and max per feature (NaN where every value was missing), and `scores`
    scores as the largest error with the threshold it was held against, how many were
    anomalous, and whether the asset was in an alarm episode during the minute."""

    asset: str
    minute: int
    """The minute's start, UTC epoch seconds (a multiple of 60)."""
    windows: int
    names: tuple[str, ...]
    minimum: FloatArray
    mean: FloatArray
    maximum: FloatArray
    scores: int
    max_error: float
    threshold: float
    anomalous: int
    alarm: bool


@dataclass(frozen=True, eq=False)
class SummaryBody:
    summarised: int
    """Seqs of the range that reach the receiver only through `minutes`: every seq of (lo, hi]
    that is neither in another part of the range nor in `absent`."""
    absent: list[tuple[int, int]] = field(default_factory=list)
    """Runs (first, last) of seqs of the range the gateway no longer has (evicted)."""
    minutes: list[MinuteSummary] = field(default_factory=list)
    promoted: list[Part] = field(default_factory=list)
    """Features and scores parts of (0, lo]: windows an earlier range summarised that an alarm
    raised in this range puts in its margin."""


def summary_fields(
    part: Part, summary: SummaryBody, binary: bool, known_schemas: Collection[bytes] = ()
) -> dict[str, Any]:
    """The summary part's fields after the header: floats as float32/float64 blocks in binary,
    lists (NaN as null) in JSON; promoted parts nested as encoded payloads. In binary, a
    feature schema whose reference is in `known_schemas` goes by reference (as in a features
    part, nested ones included)."""
    from appliance.uplink.schema.encode import encode_part

    def encoded(nested: Part) -> bytes:
        return encode_part(nested, fmt(binary), known_schemas)

    minutes = summary.minutes
    schema_index: dict[tuple[str, ...], int] = {}
    for minute in minutes:
        schema_index.setdefault(minute.names, len(schema_index))
    fields: dict[str, Any] = {
        "summarised": summary.summarised,
        "absent": [[first, last] for first, last in summary.absent],
        "schemas": [
            schema_or_ref(names, known_schemas if binary else ()) for names in schema_index
        ],
        "assets": [m.asset for m in minutes],
        "minute": [m.minute for m in minutes],
        "windows": [m.windows for m in minutes],
        "schema": [schema_index[m.names] for m in minutes],
        "scores": [m.scores for m in minutes],
        "anomalous": [m.anomalous for m in minutes],
        "alarm": [m.alarm for m in minutes],
        "promoted": [
            [nested.kind, nested.asset, nested_payload(encoded(nested), binary)]
            for nested in summary.promoted
        ],
    }
    for name in FLOAT_COLUMNS:
        numbers = np.array([getattr(m, name_attr(name)) for m in minutes], dtype=np.float64)
        fields[name] = numbers.astype("<f8").tobytes() if binary else nullable(numbers)
    for name in STAT_COLUMNS:
        arrays = [np.asarray(getattr(m, name_attr(name)), dtype=np.float64) for m in minutes]
        if binary:
            joined = np.concatenate(arrays) if arrays else np.zeros(0)
            fields[name] = np.where(np.isfinite(joined), joined, np.nan).astype("<f4").tobytes()
        else:
            fields[name] = [nullable(array) for array in arrays]
    empty = {key for key in ("absent", "promoted") if not fields[key]}
    return {k: v for k, v in fields.items() if k not in empty and (minutes or k not in MINUTE_KEYS)}


def fmt(binary: bool) -> Any:
    return "binary" if binary else "json"


def nested_payload(payload: bytes, binary: bool) -> bytes | str:
    return payload if binary else payload.decode()


def name_attr(column: str) -> str:
    return {"min": "minimum", "max": "maximum"}.get(column, column)


def nullable(values: FloatArray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values.tolist()]


def decode_summary(
    body: Mapping[str, Any],
    header: PartHeader,
    binary: bool,
    where: str,
    book: SchemaBook | None = None,
) -> SummaryBody:
    """The summary fields of a part whose header is valid; SchemaError naming the field. In
    binary, schema references are resolved from `book` (UnknownSchemas names those it lacks)."""
    check_summary_keys(body, where)
    if header.asset != SUMMARY_ASSET:
        raise SchemaError(f"{where}: a summary part is on asset '_'")
    summarised = count(body["summarised"], f"{where}: summarised")
    absent = absent_runs(body.get("absent", []), header.lo, header.hi, f"{where}: absent")
    if summarised + sum(last - first + 1 for first, last in absent) > header.hi - header.lo:
        raise SchemaError(f"{where}: summarised and absent seqs exceed the range's")
    return SummaryBody(
        summarised=summarised,
        absent=absent,
        minutes=minutes_from(body, binary, where, book) if "assets" in body else [],
        promoted=promoted_parts(body.get("promoted", []), header, binary, where, book),
    )


def decode_summary_part(
    body: Mapping[str, Any],
    header: PartHeader,
    binary: bool,
    where: str,
    book: SchemaBook | None = None,
) -> Part:
    summary = decode_summary(body, header, binary, where, book)
    return Part(header.gateway, header.lo, header.hi, header.part, header.parts, header.kind,
                header.asset, [], summary)  # fmt: skip


def check_summary_keys(body: Mapping[str, Any], where: str) -> None:
    fields = body.keys() - HEADER_KEYS
    unknown = sorted(map(shown, fields - SUMMARY_KEYS))
    if unknown:
        raise SchemaError(f"{where}: unknown field(s) {', '.join(unknown[:5])}", "unknown_field")
    missing = {"summarised"} - fields
    if fields & MINUTE_KEYS:
        missing |= MINUTE_KEYS - fields
    if missing:
        raise SchemaError(f"{where}: missing field(s) {', '.join(sorted(missing))}",
                          "missing_field")  # fmt: skip


def count(value: object, what: str) -> int:
    number = check_int(value, what)
    if number < 0:
        raise SchemaError(f"{what} must not be negative, not {shown(number)}")
    return number


def listed(value: object, what: str, length: int | None = None) -> list[Any]:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        wanted = "a list" if length is None else f"a list of {length} items, one per minute"
        raise SchemaError(f"{what} must be {wanted}")
    return value


def absent_runs(value: object, lo: int, hi: int, what: str) -> list[tuple[int, int]]:
    """Increasing, disjoint runs (first, last) within (lo, hi]."""
    runs = []
    previous = lo
    for i, run in enumerate(listed(value, what)):
        pair = listed(run, f"{what}[{i}]", 2)
        first, last = check_int(pair[0], f"{what}[{i}]"), check_int(pair[1], f"{what}[{i}]")
        if not previous < first <= last <= hi:
            raise SchemaError(f"{what}[{i}]: ({first}, {last}) is not a run above {previous} "
                              f"and at most {hi}")  # fmt: skip
        runs.append((first, last))
        previous = last
    return runs


def minutes_from(
    body: Mapping[str, Any], binary: bool, where: str, book: SchemaBook | None
) -> list[MinuteSummary]:
    n = len(listed(body["assets"], f"{where}: assets"))
    columns = {name: listed(body[name], f"{where}: {name}", n) for name in MINUTE_COLUMNS}
    if binary:
        schemas = resolved_schemas(body["schemas"], where, book)
    else:
        schemas = check_schemas(body["schemas"], where)
    indexes = [check_int(i, f"{where}: schema") for i in columns["schema"]]
    if any(not 0 <= i < len(schemas) for i in indexes):
        raise SchemaError(f"{where}: schema must index schemas")
    widths = [len(schemas[i]) for i in indexes]
    floats = {name: numbers(body[name], n, binary, f"{where}: {name}") for name in FLOAT_COLUMNS}
    stats = {name: stat_rows(body[name], widths, binary, f"{where}: {name}")
             for name in STAT_COLUMNS}  # fmt: skip
    minutes = []
    for i in range(n):
        what = f"{where}: minute {i}"
        minute = check_int(columns["minute"][i], f"{what}: minute")
        check_time(float(minute), f"{what}: minute")
        if minute % MINUTE_S:
            raise SchemaError(f"{what}: minute {minute} is not a multiple of 60")
        if type(columns["alarm"][i]) is not bool:
            raise SchemaError(f"{what}: alarm must be true or false")
        minutes.append(
            MinuteSummary(
                asset=check_name(check_str(columns["assets"][i], f"{what}: asset"), "asset"),
                minute=minute,
                windows=count(columns["windows"][i], f"{what}: windows"),
                names=schemas[indexes[i]],
                minimum=stats["min"][i],
                mean=stats["mean"][i],
                maximum=stats["max"][i],
                scores=count(columns["scores"][i], f"{what}: scores"),
                max_error=floats["max_error"][i],
                threshold=floats["threshold"][i],
                anomalous=count(columns["anomalous"][i], f"{what}: anomalous"),
                alarm=columns["alarm"][i],
            )
        )
    return minutes


def numbers(value: object, n: int, binary: bool, what: str) -> list[float]:
    if binary:
        if type(value) is not bytes or len(value) != 8 * n:
            raise SchemaError(f"{what} must be {n} float64 (msgpack bin)")
        array = np.frombuffer(value, dtype="<f8").astype(np.float64)
    else:
        array = json_numbers(listed(value, what, n), what)
    if bool(np.isinf(array).any()):
        raise SchemaError(f"{what} must be finite numbers or NaN")
    listed_values: list[float] = array.tolist()
    return listed_values


def json_numbers(values: list[Any], what: str) -> FloatArray:
    if not all(type(v) in (int, float, type(None)) for v in values):
        raise SchemaError(f"{what} must be numbers or nulls")
    try:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    except OverflowError:
        raise SchemaError(f"{what} must be finite numbers or nulls") from None


def stat_rows(value: object, widths: list[int], binary: bool, what: str) -> list[FloatArray]:
    if binary:
        if type(value) is not bytes or len(value) != 4 * sum(widths):
            raise SchemaError(f"{what} must be {sum(widths)} float32 (msgpack bin)")
        flat = np.frombuffer(value, dtype="<f4").astype(np.float64)
        rows = np.split(flat, np.cumsum(widths)[:-1]) if widths else []
    else:
        items = listed(value, what, len(widths))
        rows = [json_numbers(listed(row, f"{what}[{i}]", w), f"{what}[{i}]")
                for i, (row, w) in enumerate(zip(items, widths, strict=True))]  # fmt: skip
    if any(bool(np.isinf(row).any()) for row in rows):
        raise SchemaError(f"{what} must be finite numbers or NaN")
    return list(rows)


def promoted_parts(
    value: object, header: PartHeader, binary: bool, where: str, book: SchemaBook | None
) -> list[Part]:
    """The nested features and scores parts: each of (0, lo] of this gateway, on its own."""
    from appliance.uplink.schema.decode import decode_part

    parts = []
    for i, item in enumerate(listed(value, f"{where}: promoted")):
        what = f"{where}: promoted[{i}]"
        kind, asset, payload = listed(item, what, 3)
        if kind not in PROMOTED_KINDS:
            raise SchemaError(f"{what}: kind must be features or scores, not {shown(kind)}")
        raw = payload if binary else payload.encode() if isinstance(payload, str) else None
        if type(raw) is not bytes:
            raise SchemaError(f"{what}: must be an encoded part")
        asset = check_name(asset, f"{what}: asset")
        nested = decode_part(raw, f"p/{header.gateway}/{kind}/{asset}", schemas=book)
        if (nested.lo, nested.hi, nested.parts) != (0, header.lo, 1):
            raise SchemaError(f"{what}: must be the only part of (0, {header.lo}]")
        parts.append(nested)
    return parts


def part_schemas(part: Part) -> Iterator[tuple[str, ...]]:
    """The feature schemas a part names (by names or by reference): its feature vectors', and
    a summary part's minutes' and promoted windows'. Not the empty schema of a minute without
    windows: the receiver stores no such schema, so it always goes as its (empty) names."""
    for _, record in part.records:
        if isinstance(record, FeatureVector):
            yield record.names
    if part.summary is not None:
        yield from (minute.names for minute in part.summary.minutes if minute.names)
        for nested in part.summary.promoted:
            yield from part_schemas(nested)
