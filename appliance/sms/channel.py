"""The AT conversation on one open serial port (pyserial-asyncio), under a `ModemSession`.

A reader task feeds `AtParser`: URCs and echoed lines go to the session's callbacks, a result
with no command pending is logged, everything else goes to the one command in flight (commands
are serialised by a lock). A command that misses its deadline leaves the conversation out of
step, so it kills the channel (ModemGone, or SendTimeout when PDU data was involved); so do a
vanished port and the session's `die(reason)`. A dead channel stays dead: the link opens a new
port.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import serial_asyncio
import structlog

from appliance.sms.at import AtParser, Echo, Event, Final, Info, Prompt, Stray, Urc
from appliance.sms.errors import ModemGone, SendTimeout

log = structlog.get_logger(__name__)

CLOSE_TIMEOUT_S = 2.0
CTRL_Z = b"\x1a"


@dataclass(frozen=True)
class Response:
    info: list[str]
    final: Final


@dataclass(frozen=True)
class _Gone:
    reason: str


class _NoAnswer(Exception):
    def __init__(self, data_written: bool) -> None:
        super().__init__("no answer")
        self.data_written = data_written


def loggable(command: str) -> str:
    """The command as logged: a PIN is never written to a log."""
    return "AT+CPIN=<pin>" if command.upper().startswith("AT+CPIN=") else command


async def open_port(path: str, baudrate: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The serial port at `path`, held exclusively; ModemGone if it cannot be opened."""
    try:
        reader, writer = await serial_asyncio.open_serial_connection(
            url=path, baudrate=baudrate, exclusive=True
        )
    except OSError as error:  # serial.SerialException is an OSError
        raise ModemGone(f"cannot open {path}: {error}") from error
    return reader, writer


class AtChannel:
    """One open port. `on_urc(urc)` and `on_echo(line)` are called in the reader task."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        on_urc: Callable[[Urc], None],
        on_echo: Callable[[str], None],
    ) -> None:
        self._writer = writer
        self._on_urc = on_urc
        self._on_echo = on_echo
        self._parser = AtParser()
        self._events: asyncio.Queue[Event | _Gone] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._gone: str | None = None
        self._closed = asyncio.Event()
        self._reader_task = asyncio.create_task(self._read_loop(reader))

    @property
    def alive(self) -> bool:
        return self._gone is None

    @property
    def gone_reason(self) -> str | None:
        return self._gone

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        self.die("closed")
        self._reader_task.cancel()
        try:
            await asyncio.wait([self._reader_task])  # unlike awaiting it, never eats our own cancel
        finally:  # cancelled while closing: the port is still closed, not left to the GC
            with contextlib.suppress(OSError):
                self._writer.close()
        try:  # the port (and its exclusive lock) is released when the transport has closed
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()  # unflushed bytes to a device that takes none
        except OSError:
            pass

    def die(self, reason: str) -> None:
        """The conversation is over: the command in flight and every later one get ModemGone."""
        if self._gone is not None:
            return
        self._gone = reason
        self._events.put_nowait(_Gone(reason))
        self._closed.set()
        if reason != "closed":
            log.warning("modem_session_dead", reason=reason)

    # --- commands ----------------------------------------------------------------------------

    async def run(self, command: str, timeout_s: float, data: str | None = None) -> Response:
        """Run `command` (and write `data` + Ctrl-Z at the prompt); a missed deadline kills
        the channel: ModemGone, or SendTimeout when `data` was involved."""
        try:
            return await self._exchange(command, timeout_s, data)
        except _NoAnswer as no_answer:
            reason = f"no answer to {loggable(command)} within {timeout_s} s"
            self.die(reason)
            if data is not None:
                raise SendTimeout(reason, maybe_sent=no_answer.data_written) from None
            raise ModemGone(reason) from None

    async def probe(self, command: str, timeout_s: float) -> bool:
        """True if `command` got any final answer within `timeout_s` (even ERROR: the modem is
        listening); no answer leaves the channel alive (a late answer comes out as a stray)."""
        try:
            await self._exchange(command, timeout_s)
        except _NoAnswer:
            return False
        return True

    async def write(self, data: bytes) -> None:
        self._raise_if_gone()
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as error:
            self.die(f"write failed: {error}")
            raise ModemGone(f"write failed: {error}") from error

    async def _exchange(self, command: str, timeout_s: float, data: str | None = None) -> Response:
        async with self._lock:
            self._raise_if_gone()
            while not self._events.empty():  # leftovers of a command given up on
                self._events.get_nowait()
            self._parser.begin(command, data)
            written: list[bool] = [False]
            try:
                async with asyncio.timeout(timeout_s):
                    await self.write(command.encode("ascii") + b"\r")
                    return await self._collect(data, written)
            except TimeoutError:
                self._parser.abandon()
                raise _NoAnswer(written[0]) from None

    async def _collect(self, data: str | None, written: list[bool]) -> Response:
        info: list[str] = []
        while True:
            event = await self._events.get()
            if isinstance(event, _Gone):
                raise ModemGone(event.reason, maybe_sent=written[0])
            if isinstance(event, Info):
                info.append(event.line)
            elif isinstance(event, Prompt) and data is not None and not written[0]:
                await self.write(data.encode("ascii") + CTRL_Z)
                written[0] = True
            elif isinstance(event, Final):
                return Response(info, event)

    def _raise_if_gone(self) -> None:
        if self._gone is not None:
            raise ModemGone(self._gone)

    # --- reading -----------------------------------------------------------------------------

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while chunk := await reader.read(4096):
                for event in self._parser.feed(chunk):
                    self._dispatch(event)
        except OSError as error:
            self.die(f"read failed: {error}")
        else:
            self.die("end of file")

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Urc):
            self._on_urc(event)
        elif isinstance(event, Stray):
            log.info("modem_stray_result", line=event.line)
        elif isinstance(event, Echo):
            self._on_echo(event.line)
        else:
            self._events.put_nowait(event)
