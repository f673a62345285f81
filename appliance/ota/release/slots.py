"""The release root on disk and every change to it, each one atomic (standard library only: the
start guard, guard.py, runs before anything else of a release is trusted).

    <root>/releases/<version>/   one venv per release, built in place (a venv cannot move);
                                 release-manifest.json, written last, marks it complete
    <root>/wheels/               the wheels releases are built from (hash-pinned by manifests)
    <root>/current -> releases/V the release the service runs (its unit names this link)
    <root>/confirmed -> ...      the last release that passed its health check; the guard
                                 runs from it and a failed trial switches back to it
    <root>/release-state.json    the open trial (version, release before it, starts counted),
                                 the failed releases, the counts

A link is switched by writing a new link beside it and rename()-ing it over the old one, then
fsync()-ing the directory: after a power cut the link is the old or the new one, never none.
The state file is written the same way (temporary file, fsync, rename, fsync directory)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RELEASES = "releases"
WHEELS = "wheels"
CURRENT = "current"
CONFIRMED = "confirmed"
STATE_FILE = "release-state.json"
LOCK_FILE = ".release.lock"
INCOMING = ".incoming"
"""wheels/.incoming/: a bundle's wheels, checked, before they join the pool."""
RELEASE_MANIFEST = "release-manifest.json"
FAILED_KEPT = 10
VERSION = re.compile(r"[0-9][A-Za-z0-9.+_-]{0,63}")
VERSION_RULE = "a digit, then up to 63 letters, digits, '.', '+', '_' or '-'"


@dataclass
class Trial:
    """A release switched to but not yet confirmed healthy."""

    version: str
    previous: str
    """The confirmed release it replaced: where a failed trial switches back to."""
    max_starts: int
    source: str
    starts: int = 0
    since: float = field(default_factory=time.time)


@dataclass
class ReleaseState:
    trial: Trial | None = None
    previous: str | None = None
    """The confirmed release before the confirmed one: what a rollback by command restores."""
    failed: list[dict[str, Any]] = field(default_factory=list)
    """{"version", "reason", "at"}, newest last."""
    installs: int = 0
    rollbacks: int = 0
    automatic_rollbacks: int = 0

    def fail(self, version: str, reason: str) -> None:
        self.failed = [*self.failed, {"version": version, "reason": reason, "at": time.time()}]
        self.failed = self.failed[-FAILED_KEPT:]


class ReleaseRoot:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.releases = root / RELEASES
        self.wheels = root / WHEELS
        self.state_path = root / STATE_FILE

    def release_dir(self, version: str) -> Path:
        return self.releases / version

    def linked(self, name: str) -> str | None:
        """The version a link (CURRENT or CONFIRMED) points at, None if it is missing or its
        release is not there."""
        try:
            target = os.readlink(self.root / name)
        except OSError:
            return None
        version = Path(target).name
        return version if self.complete(version) else None

    def complete(self, version: str) -> bool:
        """Built to the end: its manifest is the last file written, after a sync."""
        return (
            bool(VERSION.fullmatch(version))
            and (self.release_dir(version) / RELEASE_MANIFEST).is_file()
        )

    def switch(self, name: str, version: str) -> None:
        """Point the link at releases/<version> with one rename(), durably."""
        temporary = self.root / f".{name}.new"
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(Path(RELEASES) / version)
        os.replace(temporary, self.root / name)
        fsync_dir(self.root)

    def load(self) -> ReleaseState:
        """The state file; an empty state if there is none. ValueError/OSError if unreadable."""
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return ReleaseState()
        trial = data.pop("trial", None)
        state = ReleaseState(**data)
        state.trial = Trial(**trial) if trial is not None else None
        return state

    def save(self, state: ReleaseState) -> None:
        write_durably(self.state_path, json.dumps(asdict(state), indent=1) + "\n")

    @contextlib.contextmanager
    def locked(self, wait: bool = True) -> Iterator[bool]:
        """One changer of the root at a time (the running appliance, the CLI, the guard);
        yields False when `wait` is False and another holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def versions(self) -> list[str]:
        """The complete releases, oldest first by install time."""
        if not self.releases.is_dir():
            return []
        found = [p for p in self.releases.iterdir() if self.complete(p.name)]
        return [p.name for p in sorted(found, key=lambda p: (p / RELEASE_MANIFEST).stat().st_mtime)]


def write_durably(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    write_synced(temporary, text.encode("utf-8"))
    os.replace(temporary, path)
    fsync_dir(path.parent)


def write_synced(path: Path, data: bytes) -> None:
    """`data` in `path`, on the disk before this returns: a file renamed into place later must
    not arrive empty after a power cut (ext4 can keep the rename and lose the data)."""
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
