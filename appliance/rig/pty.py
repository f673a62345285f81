"""A pseudo-terminal standing in for a serial device (the emulated MCU and modem): raw, so bytes
pass untouched, and optionally reachable under a stable path (a symlink, swapped atomically)."""

from __future__ import annotations

import os
import tty
from pathlib import Path


def open_pty(link_path: Path | None) -> tuple[int, int]:
    """(master, slave): the master non-blocking; the slave's name linked at `link_path`."""
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line editing by the kernel
    os.set_blocking(master, False)
    if link_path is not None:
        link_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = link_path.with_name(link_path.name + ".new")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(os.ttyname(slave))
        temporary.replace(link_path)
    return master, slave


def close_pty(link_path: Path | None, *fds: int | None) -> None:
    """Remove the link and close the pty: the device disappears."""
    if link_path is not None:
        link_path.unlink(missing_ok=True)
    for fd in fds:
        if fd is not None:
            os.close(fd)
