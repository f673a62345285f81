"""The single file a bundle travels in (watched directory, MQTT, upload): a plain tar of the
bundle directory's files, no directories, no links. `pack` is deterministic (sorted names, zero
times and owners), so the same bundle always gives the same bytes."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from appliance.errors import BundleError

MAX_ARCHIVE_BYTES = 8 * 1024 * 1024
MAX_MEMBERS = 8
SUFFIX = ".tar"
END_OF_ARCHIVE_BYTES = 2 * tarfile.BLOCKSIZE


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
    truncated, too big, or holds anything but plain files with plain names."""
    if len(data) > MAX_ARCHIVE_BYTES:
        raise BundleError(f"archive: {len(data)} bytes, more than {MAX_ARCHIVE_BYTES}")
    try:
        files = _read_members(data)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleError(
            f"archive: truncated or not a tar archive ({len(data)} bytes): {exc}"
        ) from None
    if not files:
        raise BundleError("archive: empty")
    dest.mkdir(parents=True)
    for name, content in files.items():
        (dest / name).write_bytes(content)
    return dest


def _read_members(data: bytes) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            if len(files) >= MAX_MEMBERS:
                raise BundleError(f"archive: more than {MAX_MEMBERS} files")
            name = member.name
            if not member.isfile() or "/" in name or name in ("", ".", "..") or name in files:
                raise BundleError(f"archive: {name!r} is not a plain file of a bundle")
            extracted = tar.extractfile(member)
            assert extracted is not None
            content = extracted.read()
            if len(content) != member.size:
                raise EOFError(f"{name} ends after {len(content)} of {member.size} bytes")
            files[name] = content
        if len(data) < tar.offset + END_OF_ARCHIVE_BYTES:  # cut at a file boundary
            raise EOFError(f"no end-of-archive marker after {len(files)} file(s)")
    return files
