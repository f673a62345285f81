"""The model inbox: a directory on the gateway where bundle archives (`*.tar`) and rollback
requests (`*.request`, written by `appliance model rollback`) are dropped.

A file is taken once its size and mtime held still between two looks (a copy still being
written is left alone), handed to the model manager, then moved to done/ or refused/ with its
outcome beside it as `<name>.result.json`. A file that cannot be read or moved is logged once
and left alone until it changes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from appliance.ota.archive import MAX_ARCHIVE_BYTES, SUFFIX
from appliance.ota.outcomes import SHOWN_CHARS, Outcome, unexpected

log = structlog.get_logger(__name__)

REQUEST_SUFFIX = ".request"
RESULT_SUFFIX = ".result.json"
MAX_REQUEST_BYTES = 64 * 1024

Install = Callable[[bytes, str], Awaitable[Outcome]]
"""The manager's install(archive, source)."""
Rollback = Callable[[str, str, str], Awaitable[Outcome]]
"""The manager's rollback(asset, reason, source)."""
Record = Callable[[Outcome], Outcome]
"""The manager's record of an outcome (a refusal decided here: too big, not a request)."""


class Inbox:
    def __init__(
        self,
        directory: Path,
        poll_s: float,
        install: Install,
        rollback: Rollback,
        record: Record,
        max_bytes: int = MAX_ARCHIVE_BYTES,
    ) -> None:
        """`max_bytes`: the biggest archive taken (model bundles; appliance releases are
        bigger)."""
        self.directory = directory
        self._max_bytes = max_bytes
        self._poll_s = poll_s
        self._install = install
        self._rollback = rollback
        self._record = record
        self._seen: dict[Path, tuple[int, int]] = {}
        self._left_alone: dict[Path, tuple[int, int]] = {}
        """Files that could not be taken or moved out of the inbox (left until they change)."""

    async def watch(self) -> None:
        """Take every file that is ready, then look again after the poll interval; until
        cancelled."""
        while True:
            for path in self._ready():
                try:
                    await self._take(path)
                except Exception as exc:  # never the end of the watch (install never raises)
                    log.error("inbox_failed", path=str(path), reason=unexpected(exc, "inbox"))
            await asyncio.sleep(self._poll_s)

    def _ready(self) -> list[Path]:
        """Archives and requests whose size and mtime did not change since the last look."""
        ready, seen = [], {}
        with contextlib.suppress(OSError):
            for path in sorted(self.directory.iterdir()):
                if path.name.startswith(".") or path.suffix not in (SUFFIX, REQUEST_SUFFIX):
                    continue
                info = path.stat()
                seen[path] = (info.st_size, info.st_mtime_ns)
                if self._left_alone.get(path) == seen[path]:
                    continue
                if not stat.S_ISREG(info.st_mode):  # a directory or a FIFO would never read
                    self._leave(path, "not a regular file")
                    continue
                if self._seen.get(path) == seen[path]:
                    ready.append(path)
        self._seen = seen
        return ready

    async def _take(self, path: Path) -> None:
        source = f"inbox:{path.name}"
        try:
            data = await asyncio.to_thread(_read_limited, path, self._max_bytes)
        except OSError as exc:
            self._leave(path, f"unreadable: {exc}")
            return
        if data is None:
            problem = f"archive: more than {self._max_bytes} bytes"
            outcome = self._record(Outcome(False, "install", source, None, None, problem))
        elif path.suffix == SUFFIX:
            outcome = await self._install(data, source)
        else:
            outcome = await self.request(data, source)
        self._file_away(path, outcome)

    async def request(self, data: bytes, source: str) -> Outcome:
        """A `<name>.request` file: {"action": "rollback", "asset": "...", "reason": "..."}
        (written by `appliance model rollback`)."""
        problem = 'a request must be JSON {"action": "rollback", "asset": ...}'
        try:
            request: Any = json.loads(data) if len(data) <= MAX_REQUEST_BYTES else None
            asset, action = str(request["asset"]), request["action"]
            reason = str(request.get("reason") or "rollback requested")[:SHOWN_CHARS]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return self._record(Outcome(False, "rollback", source, None, None, problem))
        if action != "rollback":
            return self._record(Outcome(False, "rollback", source, None, None,
                                        f"unknown action {str(action)[:40]!r}"))  # fmt: skip
        return await self._rollback(asset, reason, source)

    def _file_away(self, path: Path, outcome: Outcome) -> None:
        """Move the file to done/ or refused/ with its outcome beside it; if that fails it is
        left alone, so the same file is not taken again and again."""
        done = self.directory / ("done" if outcome.accepted else "refused")
        self._seen.pop(path, None)
        try:
            done.mkdir(exist_ok=True)
            os.replace(path, done / path.name)
            (done / (path.name + RESULT_SUFFIX)).write_text(json.dumps(outcome.to_dict()) + "\n")
        except OSError as exc:
            self._leave(path, f"cannot move it to {done}: {exc}")

    def _leave(self, path: Path, reason: str) -> None:
        """A file the inbox cannot take or move: logged once, left alone until it changes."""
        log.error("inbox_file_left", path=str(path), reason=reason)
        with contextlib.suppress(OSError):
            info = path.stat()
            self._left_alone[path] = (info.st_size, info.st_mtime_ns)


def _read_limited(path: Path, limit: int) -> bytes | None:
    """The file's bytes, or None if it holds more than `limit` (only limit + 1 are read)."""
    with path.open("rb") as file:
        data = file.read(limit + 1)
    return data if len(data) <= limit else None
