"""Reading manifest.json strictly: it arrives over the air, so nothing in it is trusted.

`parse_json` bounds the text's size and depth and refuses NaN, Infinity and repeated keys;
`check_plain_json` refuses deep nesting and lone surrogates; `Fields` reads one JSON object's
fields by kind (names, versions, UTC times, numbers, lists) and refuses a missing, unknown or
ill-typed one. Every refusal is a BundleError reading `<file>: <field path>: <problem>`, with
the refused value cut short (docs/MODELS.md)."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any, NoReturn

from appliance.errors import BundleError

# Limits on what a manifest may hold: every size is bounded before anything is done with it.
MAX_MANIFEST_BYTES = 2 * 1024 * 1024
MAX_FEATURES = 10_000
MAX_FEATURE_NAME_CHARS = 128
MAX_JSON_DEPTH = 32
MAX_TEXT_CHARS = 64
"""Longest free text field checked by a pattern or a parser (times, rules)."""
SHOWN_CHARS = 60
"""How much of a refused value an error message repeats."""

VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
VERSION_RULE = "1-40 letters, digits, '.', '_' or '-', starting with a letter or digit"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""An asset's name, as the config allows it."""
FILE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class Fields:
    """Reads the fields of one JSON object; every error names the file and the field path."""

    def __init__(self, raw: object, source: str, prefix: str) -> None:
        self.source = source
        self.prefix = prefix
        if not isinstance(raw, dict):
            where = prefix.rstrip(".") or "manifest"
            raise BundleError(f"{source}: {where}: must be a JSON object, got {_kind(raw)}")
        self.raw: dict[str, object] = raw
        self.seen: set[str] = set()

    def fail(self, key: str, problem: str) -> NoReturn:
        raise BundleError(f"{self.source}: {self.prefix}{key}: {problem}")

    def take(self, key: str) -> object:
        self.seen.add(key)
        if key not in self.raw:
            self.fail(key, "missing field")
        return self.raw[key]

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            shown = ", ".join(_shown_key(key) for key in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            self.fail(_shown_key(unknown[0]), f"unknown field (unknown: {shown}{more})")

    def child(self, key: str) -> Fields:
        return Fields(self.take(key), self.source, f"{self.prefix}{key}.")

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.take(key)
        if not isinstance(value, dict):
            self.fail(key, f"must be a JSON object, got {_kind(value)}")
        return dict(value)

    def string(self, key: str) -> str:
        value = self.take(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a non-empty string, got {_shown(value)}")
        return str(value)

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.string(key)
        if value not in choices:
            self.fail(key, f"must be one of {list(choices)}, got {_shown(value)}")
        return value

    def optional_name(self, key: str) -> str | None:
        if self.take(key) is None:
            return None
        value = self.string(key)
        if not NAME_PATTERN.fullmatch(value):
            self.fail(key, f"must be an asset name (1-64 letters, digits, '.', '_' or '-'), "
                           f"got {_shown(value)}")  # fmt: skip
        return value

    def version(self, key: str) -> str:
        """A strict pattern: the version is shown, compared and part of the bundle id."""
        value = self.string(key)
        if not VERSION_PATTERN.fullmatch(value):
            self.fail(key, f"must be {VERSION_RULE}, got {_shown(value)}")
        return value

    def utc_time(self, key: str) -> str:
        value = self.string(key)
        if len(value) > MAX_TEXT_CHARS or not _is_utc_iso_time(value):
            self.fail(
                key, f"must be an ISO 8601 UTC time like 2026-01-31T12:00:00Z, got {_shown(value)}"
            )
        return value

    def optional_utc_time(self, key: str) -> str | None:
        return None if self.take(key) is None else self.utc_time(key)

    def file_name(self, key: str, reserved: tuple[str, ...]) -> str:
        """A plain file name, none of the `reserved` ones."""
        value = self.string(key)
        if not FILE_NAME_PATTERN.fullmatch(value) or value in reserved:
            rule = f"1-100 letters, digits, '.', '_' or '-'; not {' or '.join(reserved)}"
            self.fail(key, f"must be a plain file name inside the bundle ({rule}), got "
                           f"{_shown(value)}")  # fmt: skip
        return value

    def sha256(self, key: str) -> str:
        value = self.string(key)
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            self.fail(key, f"must be 64 lowercase hex digits, got {_shown(value)}")
        return value

    def integer(self, key: str, low: int | None = None, high: int | None = None) -> int:
        value = self.take(key)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"must be an integer, got {_kind(value)} {_shown(value)}")
        number = value
        if low is not None and high is not None and not low <= number <= high:
            self.fail(key, f"must be in [{low}, {high}], got {_shown(number)}")
        if low is not None and number < low:
            self.fail(key, f"must be >= {low}, got {_shown(number)}")
        if high is not None and number > high:
            self.fail(key, f"must be <= {high}, got {_shown(number)}")
        return number

    def number(
        self,
        key: str,
        *,
        positive: bool = False,
        low: float | None = None,
        high: float | None = None,
    ) -> float:
        return _checked_number(self.take(key), positive, low, high, partial(self.fail, key))

    def number_list(self, key: str, *, length: int, positive: bool = False) -> tuple[float, ...]:
        values = self._list(key)
        if len(values) != length:
            self.fail(key, f"has {len(values)} values but feature_names has {length}")
        return tuple(
            _checked_number(value, positive, None, None, partial(self.fail, f"{key}[{i}]"))
            for i, value in enumerate(values)
        )

    def string_list(self, key: str) -> tuple[str, ...]:
        values = self._list(key)
        if not values:
            self.fail(key, "must name at least one feature")
        if len(values) > MAX_FEATURES:
            self.fail(key, f"{len(values)} names, more than {MAX_FEATURES}")
        names: list[str] = []
        for i, value in enumerate(values):
            if not isinstance(value, str) or not value.strip():
                self.fail(f"{key}[{i}]", f"must be a non-empty string, got {_shown(value)}")
            if len(value) > MAX_FEATURE_NAME_CHARS or not value.isprintable():
                self.fail(f"{key}[{i}]", f"must be at most {MAX_FEATURE_NAME_CHARS} printable "
                                         f"characters, got {_shown(value)}")  # fmt: skip
            names.append(value)
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            shown = ", ".join(duplicates[:5]) + (" ..." if len(duplicates) > 5 else "")
            self.fail(key, f"names must be unique, repeated: {shown}")
        return tuple(names)

    def _list(self, key: str) -> list[object]:
        value = self.take(key)
        if not isinstance(value, list):
            self.fail(key, f"must be a JSON list, got {_kind(value)}")
        return list(value)


def _checked_number(
    value: object,
    positive: bool,
    low: float | None,
    high: float | None,
    fail: Callable[[str], NoReturn],
) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        fail(f"must be a number, got {_kind(value)} {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer literal beyond float range
        fail(f"must be finite, got an integer of {len(str(value))} digits")
    if not math.isfinite(number):
        fail(f"must be finite, got {number}")
    if positive and number <= 0:
        fail(f"must be > 0, got {number}")
    if low is not None and number < low:
        fail(f"must be >= {low}, got {number}")
    if high is not None and number > high:
        fail(f"must be <= {high}, got {number}")
    return number


def _is_utc_iso_time(text: str) -> bool:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return False
    offset = parsed.utcoffset()
    return offset is not None and offset.total_seconds() == 0


def _shown(value: object) -> str:
    """The value as an error repeats it: repr (escapes control characters and lone
    surrogates), cut to SHOWN_CHARS."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**SHOWN_CHARS:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _shown_key(key: str) -> str:
    text = repr(key)[1:-1]
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _kind(value: object) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def parse_json(text: str, source: str) -> object:
    if len(text) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{source}: {len(text)} characters, more than {MAX_MANIFEST_BYTES}")
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, object_pairs_hook=_refuse_duplicate_keys
        )
    except json.JSONDecodeError as exc:
        raise BundleError(f"{source}: not valid JSON: {exc}") from exc
    except ValueError as exc:  # also integers of more than 4300 digits
        raise BundleError(f"{source}: {exc}") from exc
    except RecursionError:
        raise BundleError(f"{source}: nested deeper than {MAX_JSON_DEPTH} levels") from None
    return value


def check_plain_json(value: object, source: str) -> None:
    """At most MAX_JSON_DEPTH levels (so nothing that walks it later recurses too deep), and
    no lone surrogate in any string (it could not be written out as UTF-8 again). Errors name
    the field where it happens."""
    pending: list[tuple[object, str, int]] = [(value, "", 1)]
    while pending:
        item, where, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise BundleError(f"{source}: {where}: nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                name = f"{where}.{_shown_key(str(key))}" if where else _shown_key(str(key))
                pending.extend(((key, name, depth), (child, name, depth + 1)))
        elif isinstance(item, list):
            pending.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                where = where or "manifest"
                raise BundleError(
                    f"{source}: {where}: holds a lone surrogate ({_shown(item)}), not text"
                ) from None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed (numbers must be finite)")


def _refuse_duplicate_keys(pairs: Sequence[tuple[str, object]]) -> dict[str, object]:
    repeated = sorted(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
    if repeated:
        raise ValueError(f"{repeated[0]}: field appears more than once")
    return dict(pairs)
