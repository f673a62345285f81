"""The records of a binary part from its columns (PROTOCOL.md, "Wire formats"), for any map
an outsider may send: every refusal is a SchemaError naming the column and the record. The
rules are those of the JSON records (decode.py); the seq and gap rules are checked by decode.py
for both formats."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import accumulate
from typing import Any, Final

import numpy as np

from appliance.records import Alert, FeatureVector, Score
from appliance.uplink.errors import SchemaError
from appliance.uplink.schema.binary_body import LAYOUT_1
from appliance.uplink.schema.encode_binary import F32, F64, SCHEMA_INDEX, U64, unshuffled
from appliance.uplink.schema.parts import SeqRecord
from appliance.uplink.schema.schema_refs import (
    SCHEMA_REF_BYTES,
    SchemaBook,
    UnknownSchemas,
    schema_ref,
)
from appliance.uplink.schema.values import (
    MAX_TIME,
    MIN_TIME,
    SEVERITIES,
    Kind,
    check_schemas,
    check_str,
    check_texts,
    check_time,
    shown,
)

HEADER_KEYS: Final = frozenset({"v", "gateway", "lo", "hi", "part", "parts", "kind", "asset"})
COMMON_KEYS: Final = HEADER_KEYS | {"seq", "t"}
BINARY_PART_KEYS: Final = {
    "features": COMMON_KEYS | {"schemas", "schema", "dtype", "values"},
    "scores": COMMON_KEYS | {"model_id", "error", "threshold", "anomalous", "contributors"},
    "alerts": COMMON_KEYS | {"severity", "alert_kind", "message", "channel"},
    "gap": COMMON_KEYS,
}
VALUE_DTYPES: Final[dict[str, np.dtype[Any]]] = {"f4": F32, "f8": F64}


def decode_binary_records(
    body: Mapping[str, Any],
    kind: Kind,
    asset: str,
    lo: int,
    where: str,
    layout: int = LAYOUT_1,
    book: SchemaBook | None = None,
) -> list[SeqRecord]:
    """The part's records, in the order sent (decode.py checks their seqs against the range).
    Schema references (layout 2) are resolved from `book`; UnknownSchemas names those it lacks."""
    seqs = seqs_from(body["seq"], lo, where)
    times = times_from(body["t"], len(seqs), where)
    if kind == "gap":
        if seqs:
            raise SchemaError(f"{where}: a gap is the only part, asset '_', no records")
        return []
    if kind == "features":
        vectors = feature_records(body, asset, times, where, layout, book)
        return list(zip(seqs, vectors, strict=True))
    make = score_records if kind == "scores" else alert_records
    return list(zip(seqs, make(body, asset, times, where), strict=True))


def block(value: object, itemsize: int, count: int | None, what: str) -> bytes:
    """A msgpack bin of `count` items of `itemsize` bytes (any whole number if count is None)."""
    if type(value) is not bytes:
        raise SchemaError(f"{what} must be bytes (msgpack bin), not {shown(value)}")
    if len(value) % itemsize or (count is not None and len(value) != count * itemsize):
        wanted = "a multiple of" if count is None else f"{count} x"
        raise SchemaError(f"{what} has {len(value)} bytes, not {wanted} {itemsize}")
    return value


def column(value: object, count: int, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != count:
        raise SchemaError(f"{what} must be a list of {count} items, one per record")
    return value


def seqs_from(value: object, lo: int, where: str) -> list[int]:
    """Exact integers from the uint64 deltas (the first from lo)."""
    deltas = np.frombuffer(block(value, 8, None, f"{where}: seq"), dtype=U64)
    return list(accumulate(deltas.tolist(), initial=lo))[1:]


def times_from(value: object, count: int, where: str) -> list[float]:
    """The float64 times from their bit patterns' deltas (modulo 2**64), each checked."""
    deltas = np.frombuffer(block(value, 8, count, f"{where}: t"), dtype=U64)
    times = np.cumsum(deltas, dtype=U64).view(F64)
    if not bool(((times >= MIN_TIME) & (times < MAX_TIME)).all()):  # NaN fails both
        bad = int(np.flatnonzero(~((times >= MIN_TIME) & (times < MAX_TIME)))[0])
        check_time(float(times[bad]), f"{where}: records[{bad}]: t")  # raises, naming it
    listed: list[float] = times.tolist()
    return listed


def feature_records(
    body: Mapping[str, Any],
    asset: str,
    times: list[float],
    where: str,
    layout: int,
    book: SchemaBook | None,
) -> list[FeatureVector]:
    if layout == LAYOUT_1:
        schemas = check_schemas(body["schemas"], where)
    else:
        schemas = resolved_schemas(body["schemas"], where, book)
    indexes = np.frombuffer(block(body["schema"], 4, len(times), f"{where}: schema"),
                            dtype=SCHEMA_INDEX)  # fmt: skip
    if len(indexes) and int(indexes.max()) >= len(schemas):
        bad = int(np.flatnonzero(indexes >= len(schemas))[0])
        raise SchemaError(f"{where}: records[{bad}]: schema {indexes[bad]} is not an index "
                          "into schemas")  # fmt: skip
    dtype = VALUE_DTYPES.get(body["dtype"]) if type(body["dtype"]) is str else None
    if dtype is None:
        raise SchemaError(f"{where}: dtype must be f4 or f8, not {shown(body['dtype'])}")
    widths = np.array([len(names) for names in schemas], dtype=np.int64)[indexes]
    raw = block(body["values"], dtype.itemsize, int(widths.sum()), f"{where}: values")
    if layout == LAYOUT_1:
        values = np.frombuffer(raw, dtype=dtype).astype(np.float64)
    else:
        values = unshuffled(raw, dtype).astype(np.float64)
    ends = np.cumsum(widths)
    if bool(np.isinf(values).any()):
        flat = int(np.flatnonzero(np.isinf(values))[0])
        record = int(np.searchsorted(ends, flat, side="right"))
        index = flat - int(ends[record] - widths[record])
        raise SchemaError(f"{where}: records[{record}]: values[{index}] must be a finite number "
                          f"or NaN, not {values[flat]}")  # fmt: skip
    if not times:
        return []
    uniform = len(set(widths.tolist())) == 1
    rows = values.reshape(len(times), int(widths[0])) if uniform else np.split(values, ends[:-1])
    return [
        FeatureVector(asset, t, schemas[index], row)
        for t, index, row in zip(times, indexes.tolist(), rows, strict=True)
    ]


def resolved_schemas(value: object, where: str, book: SchemaBook | None) -> list[tuple[str, ...]]:
    """Layout 2's schemas: each a list of names (learned into `book`) or the 8-byte reference
    of names sent before; UnknownSchemas if a reference is neither in this part nor in `book`."""
    if not isinstance(value, list):
        raise SchemaError(f"{where}: schemas must be a list of name lists or references")
    named = check_schemas([item for item in value if isinstance(item, list)], where)
    here = {schema_ref(names): names for names in named}
    if book is not None:
        for names in named:
            book.learn(names)
    listed = iter(named)
    schemas: list[tuple[str, ...]] = []
    missing = set()
    for i, item in enumerate(value):
        if isinstance(item, list):
            schemas.append(next(listed))
            continue
        if type(item) is not bytes or len(item) != SCHEMA_REF_BYTES:
            raise SchemaError(f"{where}: schemas[{i}] must be a list of names or a "
                              f"{SCHEMA_REF_BYTES}-byte reference, not {shown(item)}")  # fmt: skip
        found = here.get(item)
        if found is None and book is not None:
            found = book.get(item)
        if found is None:
            missing.add(item)
        else:
            schemas.append(found)
    if missing:
        refs = ", ".join(sorted(ref.hex() for ref in missing))
        raise UnknownSchemas(f"{where}: unknown feature schema(s) {refs}", frozenset(missing))
    return schemas


def numbers_from(value: object, count: int, what: str) -> list[float]:
    """float64 values; NaN stands for none (JSON's null), infinities are refused."""
    numbers = np.frombuffer(block(value, 8, count, what), dtype=F64)
    if bool(np.isinf(numbers).any()):
        bad = int(np.flatnonzero(np.isinf(numbers))[0])
        raise SchemaError(f"{what}[{bad}] must be a finite number or NaN, not {numbers[bad]}")
    listed: list[float] = numbers.tolist()
    return listed


def strings(value: object, count: int, what: str) -> list[str]:
    items = column(value, count, what)
    if not set(map(type, items)) <= {str}:
        bad = next(i for i, item in enumerate(items) if type(item) is not str)
        raise SchemaError(f"{what}[{bad}] must be a string, not {shown(items[bad])}")
    return check_texts(items, what)


def name_tuples(value: object, count: int, what: str) -> list[tuple[str, ...]]:
    """A list of `count` lists of strings (one pass over all the names when they are fine)."""
    lists = column(value, count, what)
    if set(map(type, lists)) <= {list}:
        names = [name for item in lists for name in item]
        if set(map(type, names)) <= {str} and "".join(names).isascii():
            return [tuple(item) for item in lists]
    for i, item in enumerate(lists):
        if not isinstance(item, list):
            raise SchemaError(f"{what}[{i}] must be a list of strings, not {shown(item)}")
        strings(item, len(item), f"{what}[{i}]")
    return [tuple(item) for item in lists]


def score_records(
    body: Mapping[str, Any], asset: str, times: list[float], where: str
) -> list[Score]:
    count = len(times)
    flags = block(body["anomalous"], 1, count, f"{where}: anomalous")
    if flags.strip(b"\x00\x01"):
        raise SchemaError(f"{where}: anomalous must hold only bytes 0 and 1")
    contributors = name_tuples(body["contributors"], count, f"{where}: contributors")
    return [
        Score(asset, t, model_id, error, threshold, flag == 1, names)
        for t, model_id, error, threshold, flag, names in zip(
            times,
            strings(body["model_id"], count, f"{where}: model_id"),
            numbers_from(body["error"], count, f"{where}: error"),
            numbers_from(body["threshold"], count, f"{where}: threshold"),
            flags,
            contributors,
            strict=True,
        )
    ]


def alert_records(
    body: Mapping[str, Any], asset: str, times: list[float], where: str
) -> list[Alert]:
    count = len(times)
    severities = strings(body["severity"], count, f"{where}: severity")
    if not set(severities) <= set(SEVERITIES):
        raise SchemaError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
    channels = column(body["channel"], count, f"{where}: channel")
    return [
        Alert(asset, t, severity, kind, message,  # type: ignore[arg-type]
              None if channel is None else check_str(channel, f"{where}: channel[{i}]"))
        for i, (t, severity, kind, message, channel) in enumerate(zip(
            times,
            severities,
            strings(body["alert_kind"], count, f"{where}: alert_kind"),
            strings(body["message"], count, f"{where}: message"),
            channels,
            strict=True,
        ))
    ]  # fmt: skip
