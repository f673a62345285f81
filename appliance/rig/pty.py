"""A pseudo-terminal standing in for a serial device (the emulated MCU and modem): raw, so bytes
pass untouched, and optionally reachable under a stable path (a symlink, swapped atomically).
`PtyPort` is a device's end of one that can be unplugged and plugged in again."""

from __future__ import annotations

import asyncio
import os
import tty
from collections.abc import Callable
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


class PtyPort:
    """An emulated device's end of its serial port: a pty that can be unplugged (pty and link
    gone, as when a USB device vanishes) and plugged in again (a new pty under the same link).

    Bytes written go through a transmit buffer flushed as the host reads; with `tx_limit`,
    bytes that do not fit are refused (the device's USB TX FIFO). `name` is for errors.
    """

    def __init__(self, link_path: Path | None, name: str, tx_limit: int | None = None) -> None:
        self.link_path = link_path
        self._name = name
        self._tx_limit = tx_limit
        self._master: int | None = None
        self._slave: int | None = None
        self._tx = bytearray()
        self._reader_loop: asyncio.AbstractEventLoop | None = None
        self._writer_loop: asyncio.AbstractEventLoop | None = None  # set while waiting to write

    @property
    def path(self) -> str:
        """The pty slave path while plugged in."""
        if self._slave is None:
            raise RuntimeError(f"{self._name} is unplugged")
        return os.ttyname(self._slave)

    @property
    def plugged_in(self) -> bool:
        return self._master is not None

    def plug(self, on_readable: Callable[[], None] | None = None) -> None:
        """Create the pty (and the link): the device appears. `on_readable` is called in the
        running loop when the host has written something (see `read()`)."""
        self._master, self._slave = open_pty(self.link_path)
        if on_readable is not None:
            self._reader_loop = asyncio.get_running_loop()
            self._reader_loop.add_reader(self._master, on_readable)

    def unplug(self) -> None:
        """Remove the link and the pty: the device disappears, with what it had not sent."""
        if self._master is not None:
            if self._reader_loop is not None:
                self._reader_loop.remove_reader(self._master)
            if self._writer_loop is not None:
                self._writer_loop.remove_writer(self._master)
        self._reader_loop = self._writer_loop = None
        close_pty(self.link_path, self._master, self._slave)
        self._master = self._slave = None
        self._tx.clear()

    def read(self) -> bytes | None:
        """What the host wrote: None if nothing (or unplugged), b"" once the host end is gone."""
        if self._master is None:
            return None
        try:
            return os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def write(self, data: bytes) -> bool:
        """Queue `data` for the host; False if unplugged or it does not fit the buffer."""
        if self._master is None:
            return False
        if self._tx_limit is not None and len(self._tx) + len(data) > self._tx_limit:
            return False
        self._tx += data
        self._flush()
        return True

    def _flush(self) -> None:
        master = self._master
        if master is None:
            return
        try:
            written = os.write(master, self._tx) if self._tx else 0
        except BlockingIOError:
            written = 0
        del self._tx[:written]
        if self._tx and self._writer_loop is None:
            self._writer_loop = asyncio.get_running_loop()
            self._writer_loop.add_writer(master, self._flush)
        elif not self._tx and self._writer_loop is not None:
            self._writer_loop.remove_writer(master)
            self._writer_loop = None
