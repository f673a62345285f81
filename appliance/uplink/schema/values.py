"""The protocol's version, limits and the checks of single values (names, seqs, ranges, numbers,
times, text) that encoding and decoding share; each refusal is a SchemaError naming the value."""

from __future__ import annotations

import math
import operator
import reprlib
from typing import Final, Literal, get_args

from appliance.uplink.errors import SchemaError

PROTOCOL_VERSION: Final = 1
Kind = Literal["features", "scores", "alerts", "gap", "summary"]
KINDS: Final[tuple[str, ...]] = get_args(Kind)
WireFormat = Literal["binary", "json"]
"""How a part is written (PROTOCOL.md, "Payloads"): compact binary, or JSON for debugging."""
WIRE_FORMATS: Final[tuple[str, ...]] = get_args(WireFormat)
FORBIDDEN_IN_NAMES: Final = ("/", "+", "#", "\x00")
NUMBER_TYPES: Final = frozenset({int, float})
SEVERITIES: Final = ("warning", "critical")

MAX_SEQ: Final = 2**53 - 1
"""The highest seq, lo or hi a payload may carry: exact in a float64 and far inside SQLite's and
PostgreSQL's 64-bit integers (at 1,000 records a second a gateway needs 285,000 years)."""
MAX_PARTS: Final = 4096
"""Parts of one range: one per (kind, asset), so 3 kinds of up to 1,365 assets."""
MIN_TIME: Final = 0.0
MAX_TIME: Final = 4_102_444_800.0
"""Record times must lie in [1970-01-01, 2100-01-01) UTC: a gateway whose clock was never set
still delivers, and no time overflows a database's timestamp."""


def shown(value: object) -> str:
    """A bounded repr of an outside value for an error message (never huge, never recursive)."""
    return SHOWN.repr(value)


def make_shown() -> reprlib.Repr:
    shower = reprlib.Repr()
    shower.maxstring = shower.maxother = shower.maxlong = 60
    shower.maxlevel, shower.maxlist, shower.maxdict = 2, 4, 4
    return shower


SHOWN: Final = make_shown()


def check_name(value: object, what: str) -> str:
    """A single topic level: a non-empty string without '/', '+', '#' or NUL."""
    if not isinstance(value, str) or not value:
        raise SchemaError(f"{what} must be a non-empty string, not {shown(value)}", "bad_name")
    for forbidden in FORBIDDEN_IN_NAMES:
        if forbidden in value:
            raise SchemaError(f"{what} {shown(value)} must not contain {forbidden!r}", "bad_name")
    return check_text(value, what)


def check_prefix(prefix: object) -> str:
    """One or more topic levels joined by '/'; must not start with '$' (broker-reserved)."""
    if not isinstance(prefix, str) or not prefix:
        raise SchemaError(f"topic prefix must be a non-empty string, not {prefix!r}", "bad_name")
    if prefix.startswith("$"):
        raise SchemaError(f"topic prefix {prefix!r} must not start with '$'", "bad_name")
    for level in prefix.split("/"):
        check_name(level, f"topic prefix {prefix!r}: level")
    return prefix


def check_kind(kind: object, what: str = "kind") -> Kind:
    if type(kind) is not str or kind not in KINDS:
        raise SchemaError(
            f"{what} must be one of {', '.join(KINDS)}, not {shown(kind)}", "bad_kind"
        )
    return kind  # type: ignore[return-value]


def check_int(value: object, what: str) -> int:
    if type(value) is not int:
        raise SchemaError(f"{what} must be an integer, not {shown(value)}")
    return value


def check_range(lo: object, hi: object, where: str) -> tuple[int, int]:
    low = check_int(lo, f"{where}: lo")
    high = check_int(hi, f"{where}: hi")
    if low < 0 or high <= low:
        raise SchemaError(f"{where}: the range ({low}, {high}] must have 0 <= lo < hi")
    if high > MAX_SEQ:
        raise SchemaError(f"{where}: hi {high} is above the highest seq {MAX_SEQ}", "implausible")
    return low, high


def check_seq(seq: object, previous: int, hi: int, where: str) -> int:
    """A seq above the previous one (or lo) and at most hi."""
    value = check_int(seq, f"{where}: seq")
    if value <= previous or value > hi:
        raise SchemaError(
            f"{where}: seq {value} is not above the previous seq {previous} and at most {hi}"
        )
    return value


def check_seqs(seqs: list[object], lo: int, hi: int, where: str) -> None:
    """Integers rising from above lo to at most hi; the first that is not is named."""
    rising = map(operator.lt, [lo, *seqs], [*seqs, hi + 1])  # type: ignore[arg-type]
    if set(map(type, seqs)) <= {int} and all(rising):  # the common case, at C speed
        return
    previous = lo
    for index, seq in enumerate(seqs):
        previous = check_seq(seq, previous, hi, f"{where}: records[{index}]")


def check_part_number(part: object, parts: object, where: str) -> None:
    number = check_int(part, f"{where}: part")
    count = check_int(parts, f"{where}: parts")
    if not 0 <= number < count:
        raise SchemaError(
            f"{where}: part {shown(number)} of {shown(count)} must have 0 <= part < parts"
        )
    if count > MAX_PARTS:
        raise SchemaError(f"{where}: parts {count} is above {MAX_PARTS}", "implausible")


def finite_number(value: object, what: str) -> float:
    """A JSON number as a finite float: not a bool, not 1e400 (read as inf), not an integer too
    large for a float."""
    if type(value) not in NUMBER_TYPES:
        raise SchemaError(f"{what} must be a finite number, not {shown(value)}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:
        raise SchemaError(
            f"{what} must be a finite number, not an integer of {len(str(value))} digits"
        ) from None
    if not math.isfinite(number):
        raise SchemaError(f"{what} must be a finite number, not {shown(value)}")
    return number


def number_or_nan(value: object, what: str) -> float:
    """A finite number, or NaN for null."""
    if value is None:
        return math.nan
    if type(value) not in NUMBER_TYPES:
        raise SchemaError(f"{what} must be a number or null, not {shown(value)}")
    return finite_number(value, what)


def check_time(value: object, what: str) -> float:
    """UTC epoch seconds within [MIN_TIME, MAX_TIME)."""
    number = finite_number(value, what)
    if not MIN_TIME <= number < MAX_TIME:
        raise SchemaError(
            f"{what} {number} is outside 1970-01-01..2100-01-01 UTC "
            f"({MIN_TIME:.0f} <= t < {MAX_TIME:.0f})",
            "implausible",
        )
    return number


def check_text(value: str, what: str) -> str:
    """Text a database can encode: no lone surrogate (a JSON escape such as \\ud800 that is
    not half of a pair; the gateway's encoder cannot write one either)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SchemaError(
                f"{what} has a lone surrogate {shown(value[exc.start])} at character {exc.start}",
                "bad_text",
            ) from None
    return value


def check_texts(values: list[str], what: str) -> list[str]:
    """check_text on each (one pass over the joined text in the common, clean case)."""
    if "".join(values).isascii():
        return values
    for i, value in enumerate(values):
        check_text(value, f"{what}[{i}]")
    return values


def check_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise SchemaError(f"{what} must be a string, not {shown(value)}")
    return check_text(value, what)


def check_schemas(schemas: object, where: str) -> list[tuple[str, ...]]:
    """A features part's feature names: a list of lists of strings."""
    if not isinstance(schemas, list):
        raise SchemaError(f"{where}: schemas must be a list of lists of names")
    decoded = []
    for i, names in enumerate(schemas):
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise SchemaError(f"{where}: schemas[{i}] must be a list of strings")
        decoded.append(tuple(check_texts(names, f"{where}: schemas[{i}]")))
    return decoded
