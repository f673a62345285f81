"""systemd's service notification protocol (sd_notify(3)): READY=1 once the appliance runs,
WATCHDOG=1 from the event loop, STOPPING=1 on the way out. Outside systemd (no $NOTIFY_SOCKET)
every call does nothing.

A datagram to a unix socket is the whole protocol, so it is written here rather than pulling in
libsystemd bindings that need a C build on the Pi."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)


class SystemdNotifier:
    """Talks to the service manager named by NOTIFY_SOCKET in `environ`."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        path = environ.get("NOTIFY_SOCKET", "")
        # A leading "@" names a socket in the abstract namespace.
        self.address = "\0" + path[1:] if path.startswith("@") else path
        usec = environ.get("WATCHDOG_USEC", "")
        watchdog_pid = environ.get("WATCHDOG_PID", "")
        ours = not watchdog_pid or watchdog_pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and ours else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, message: str) -> None:
        """Send one notification; a failure is logged, never raised (the service must run on)."""
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), self.address)
        except OSError as exc:
            log.warning("sd_notify_failed", message=message, reason=str(exc))

    async def feed_watchdog(self) -> None:
        """WATCHDOG=1 at half the watchdog interval, until cancelled. It runs on the event loop,
        so a loop that hangs stops feeding and systemd restarts the service."""
        if self.watchdog_s is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_s / 2)
