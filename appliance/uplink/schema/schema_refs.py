"""Feature schemas by reference (PROTOCOL.md, "Schema references"): a binary part of layout 2
may name a schema it sent before by the first 8 bytes of the SHA-256 of its names instead of
the names themselves (49 names are most of a small live part's bytes). The receiver resolves a
reference from names it has seen or from its database; one it cannot resolve refuses the part
without accounting it, and the gateway sends the names again."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from typing import Final

from appliance.uplink.errors import SchemaError
from appliance.uplink.schema.parts import PartHeader

SCHEMA_REF_BYTES: Final = 8
MAX_REMEMBERED: Final = 4096
"""A SchemaBook forgets everything when it holds this many schemas (they are few: one per
feature engine version; a flood of new names must not grow it without bound)."""


def names_text(names: Iterable[str]) -> str:
    """The names as compact JSON, the text both the reference and the receiver's database key
    (receiver/db/rows.py names_key) are the SHA-256 of."""
    return json.dumps(list(names), ensure_ascii=False, separators=(",", ":"))


@functools.lru_cache(maxsize=256)
def schema_ref(names: tuple[str, ...]) -> bytes:
    """The schema's reference: the first 8 bytes of the SHA-256 of names_text (a lone surrogate,
    which msgpack refuses later anyway, does not stop the hash)."""
    text = names_text(names).encode("utf-8", "surrogatepass")
    return hashlib.sha256(text).digest()[:SCHEMA_REF_BYTES]


class UnknownSchemas(SchemaError):
    """A part refers to schemas this receiver does not know (`refs`): not stored and not
    accounted (its records are not lost: the gateway sends them again with the names)."""

    def __init__(self, message: str, refs: frozenset[bytes], header: PartHeader | None = None):
        super().__init__(message, "unknown_schema")
        self.refs = refs
        self.header = header


class SchemaBook:
    """The schemas a receiver has seen, by reference: learned from every part that carries
    names (each reference is the hash of its names, so what is learned is true whoever sent
    it) and from the database."""

    def __init__(self) -> None:
        self._names: dict[bytes, tuple[str, ...]] = {}

    def __contains__(self, ref: object) -> bool:
        return ref in self._names

    def get(self, ref: bytes) -> tuple[str, ...] | None:
        return self._names.get(ref)

    def learn(self, names: tuple[str, ...]) -> bytes:
        ref = schema_ref(names)
        if ref not in self._names:
            if len(self._names) >= MAX_REMEMBERED:
                self._names.clear()
            self._names[ref] = names
        return ref
