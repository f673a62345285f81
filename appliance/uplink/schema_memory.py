"""Which feature schemas the receiver has, as far as this gateway knows (PROTOCOL.md, "Schema
references"): a features part names those by reference and carries the names of the others.

A schema becomes known when the receiver's ack covers a range that carried its names (the
receiver stores a schema with the part that carries it). Everything is forgotten on every
resend, so a resend always carries names; a receiver that meets a reference it cannot resolve
(a new database) refuses the part without accounting it and says so on the ack topic, and the
gateway then forgets and resends. In memory: a restarted gateway starts by sending names.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from appliance.uplink.schema import schema_ref


class SchemaMemory:
    """`enabled` is False where no receiver acknowledges what it stored (ack = "broker", or
    JSON on the wire): then every part carries its names. Ranges are encoded on worker threads
    while acks arrive on the event loop: every method holds a lock."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._known: set[bytes] = set()
        self._sent: dict[bytes, int] = {}
        """Reference -> the lowest hi of a range sent with its names, not yet acknowledged."""

    def known_for_encoding(self) -> frozenset[bytes]:
        """The references a range about to be encoded may use (none when disabled)."""
        with self._lock:
            return frozenset(self._known) if self.enabled else frozenset()

    def encoded(self, hi: int, schemas: Iterable[tuple[str, ...]], known: frozenset[bytes]) -> None:
        """A range ending at `hi` named `schemas`: those in `known` by reference, the others
        by their names."""
        if not self.enabled:
            return
        refs = {schema_ref(names) for names in schemas}
        with self._lock:
            for ref in refs - known:
                self._sent[ref] = min(self._sent.get(ref, hi), hi)

    def acknowledged(self, seq: int) -> None:
        """The receiver committed everything up to `seq`, names included."""
        with self._lock:
            for ref in [ref for ref, hi in self._sent.items() if hi <= seq]:
                self._known.add(ref)
                del self._sent[ref]

    def forget(self) -> None:
        with self._lock:
            self._known.clear()
            self._sent.clear()
