"""The single file a bundle travels in (watched directory, MQTT, upload): a plain tar of the
bundle directory's files, no directories, no links. `pack` is deterministic (sorted names, zero
times and owners), so the same bundle always gives the same bytes.

Reading is in two steps, so nothing is unpacked before it is trusted: `BundleArchive` checks
every header first (names, types, sizes, truncation), then hands out one member at a time,
streamed with a byte budget counted on the bytes really read (a sparse or lying member cannot
grow past it)."""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from appliance.errors import BundleError

MAX_ARCHIVE_BYTES = 8 * 1024 * 1024
MAX_MEMBERS = 8
MAX_NAME_CHARS = 100
SUFFIX = ".tar"
END_OF_ARCHIVE_BYTES = 2 * tarfile.BLOCKSIZE
CHUNK_BYTES = 64 * 1024
MEMBER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
NAME_RULE = f"1-{MAX_NAME_CHARS} letters, digits, '.', '_' or '-'"


@dataclass(frozen=True)
class ArchiveLimits:
    """How big an archive and how many files it may hold: a model bundle is three files, an
    appliance release (ota/release/) a manifest, a signature and its wheels."""

    max_bytes: int
    max_members: int


MODEL_LIMITS = ArchiveLimits(MAX_ARCHIVE_BYTES, MAX_MEMBERS)

TAR_ERRORS = (tarfile.TarError, EOFError, OSError, ValueError, OverflowError)
"""What tarfile raises on bytes that are not a well-formed tar (ValueError also covers
undecodable names; OverflowError a size or offset beyond what a seek takes)."""


def pack(bundle_dir: Path) -> bytes:
    """The bundle directory's regular files as a tar archive."""
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir}: not a bundle directory")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in bundle_dir.iterdir() if p.is_file()):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def unpack(data: bytes, dest: Path) -> Path:
    """Write the archive's files into the new directory `dest`; BundleError if the archive is
    truncated, too big, or holds anything but plain files with plain names. (The gateway does
    not use this: it checks the signature first, ota/vetting.py `stage_signed`.)"""
    with BundleArchive(data) as archive:
        budget = MAX_ARCHIVE_BYTES
        files = {}
        for name in archive.names:
            files[name] = archive.read(name, budget)
            budget -= len(files[name])
    dest.mkdir(parents=True)
    for name, content in files.items():
        (dest / name).write_bytes(content)
    return dest


class BundleArchive:
    """A tar archive whose headers passed every check; `read` streams one member."""

    def __init__(self, data: bytes, limits: ArchiveLimits = MODEL_LIMITS) -> None:
        if len(data) > limits.max_bytes:
            raise BundleError(f"archive: {len(data)} bytes, more than {limits.max_bytes}")
        self._size = len(data)
        self._limits = limits
        try:
            self._tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:")  # noqa: SIM115
        except TAR_ERRORS as exc:
            raise _unreadable(len(data), exc) from None
        try:
            self.members = self._checked_members()
        except BaseException:
            self._tar.close()
            raise

    @property
    def names(self) -> list[str]:
        return list(self.members)

    def read(self, name: str, budget: int) -> bytes:
        """The member's bytes; BundleError once more than `budget` bytes come out of it (counted
        on what is read, not on what its header claims) or if it ends early."""
        info = self.members[name]
        out = bytearray()
        try:
            stream = self._tar.extractfile(info)
            if stream is None:
                raise BundleError(f"archive: {name!r} is not a plain file of a bundle")
            while chunk := stream.read(min(CHUNK_BYTES, budget + 1 - len(out))):
                out += chunk
                if len(out) > budget:
                    raise BundleError(f"archive: {name} is bigger than {budget} bytes")
        except TAR_ERRORS as exc:
            raise _unreadable(self._size, exc) from None
        if len(out) != info.size:
            raise _unreadable(self._size, EOFError(f"{name} ends after {len(out)} bytes"))
        return bytes(out)

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> BundleArchive:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _checked_members(self) -> dict[str, tarfile.TarInfo]:
        members: dict[str, tarfile.TarInfo] = {}
        try:
            while (info := self._tar.next()) is not None:
                if len(members) >= self._limits.max_members:
                    raise BundleError(f"archive: more than {self._limits.max_members} files")
                members[_checked_name(info, members, self._limits.max_bytes)] = info
                if info.offset_data + info.size > self._size:
                    raise EOFError(f"{info.name} ends after the archive")
            end = self._tar.offset
        except TAR_ERRORS as exc:
            raise _unreadable(self._size, exc) from None
        if not members:
            raise BundleError("archive: empty")
        if self._size < end + END_OF_ARCHIVE_BYTES:  # cut at a file boundary
            raise _unreadable(self._size, EOFError(f"no end-of-archive marker after "
                                                   f"{len(members)} file(s)"))  # fmt: skip
        return members


def _checked_name(info: tarfile.TarInfo, seen: dict[str, tarfile.TarInfo], max_bytes: int) -> str:
    name = info.name
    shown = repr(name) if len(name) <= MAX_NAME_CHARS else f"{name[:40]!r}... ({len(name)} chars)"
    if not info.isreg() or info.issparse():
        raise BundleError(f"archive: {shown} is not a plain file of a bundle")
    if len(name) > MAX_NAME_CHARS or not MEMBER_NAME.fullmatch(name) or name in seen:
        raise BundleError(
            f"archive: {shown} is not a plain file of a bundle (a name of {NAME_RULE}, once)"
        )
    if info.size > max_bytes:
        raise BundleError(f"archive: {name} claims {info.size} bytes, more than the archive")
    return name


def _unreadable(size: int, exc: BaseException) -> BundleError:
    return BundleError(f"archive: truncated or not a tar archive ({size} bytes): {exc}")
