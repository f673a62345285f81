"""A GSM modem over a serial port: one session per open port, and the link that keeps one open.

`ModemSession` is one open port (pyserial-asyncio): a reader task feeds `AtParser`, URCs go
to a callback, everything else to the one command in flight (commands are serialised by a
lock). A command that misses its deadline leaves the conversation out of step, so it kills
the session (ModemGone); so do a vanished port and a modem that announces a restart ("RDY"
after initialisation: its echo, error and PDU settings are gone). Nothing inside a session
reconnects.

A modem may also restart without a word, back to its power-on settings: echo on, text mode
(where `AT+CMGS=<length>` would text the PDU's hex to the number <length>), no registration
URCs. So before every part the session asks `AT+CMGF?`, and it also takes as clues the echo of
a command after ATE0 and a registration answer whose <n> is no longer the 1 it set. Any clue
is a restart: the session sets the modem up again in place (counted in
`health.restarts_detected`, logged as modem_restart_detected) before the part goes; if that
fails, or the modem still says text mode afterwards, the session dies and the link reopens it.
A clue the modem shows right after being set up is its habit, not a restart: ignored from then
on (AT+CMGF? still guards every part).

`ModemLink` owns the session: it opens the port by path (a stable /dev/serial/by-id link),
initialises the modem, runs the watchdog (`check()` every `check_interval_s`), and when the
session dies closes it and reopens by path with doubling backoff and jitter, calling an
optional power-cycle hook after `power_cycle_after` consecutive failures. Senders call
`link.send_sms()`; `await link.wait_ready()` waits until a send can be tried.

Standalone, to try a real modem or the emulator:
    python -m appliance.sms.modem --port /dev/serial/by-id/usb-SimTech... --to +4917... "text"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import serial_asyncio
import structlog

from appliance.logging import configure_logging
from appliance.sms.at import (
    AtParser,
    Echo,
    Event,
    Final,
    Info,
    Prompt,
    Stray,
    Urc,
    error_for,
    info_value,
    leading_int,
    message_reference,
    operator_name,
    registration_status,
    signal_quality,
)
from appliance.sms.errors import (
    ModemGone,
    ModemNotReady,
    ModemRefused,
    PinRejected,
    SendTimeout,
    SmsError,
)
from appliance.sms.pdu import DEFAULT_VALIDITY_MINUTES, Pdu, encode_sms

log = structlog.get_logger(__name__)

CLOSE_TIMEOUT_S = 2.0
CTRL_Z = b"\x1a"
ESC = b"\x1b"
REGISTERED = (1, 5)  # home, roaming
RSSI_UNKNOWN = 99
BOOT_URCS = frozenset({"RDY", "^SYSSTART", "*ATREADY"})  # the modem restarted: setup is lost
_STATES = {0: "not searching", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming"}

UrcHandler = Callable[[Urc], None]
PowerCycle = Callable[[], Awaitable[None]]
PartSent = Callable[[int], Awaitable[None]]
"""Called after each part the modem accepted with the number of parts now known to be sent
(a durable queue records it, so a restart resumes from the next part)."""
PinRejectedHandler = Callable[[PinRejected], None]


@dataclass(frozen=True)
class ModemSettings:
    """Deadlines and intervals (seconds); tests shrink them. `pin` is the SIM PIN, if any."""

    pin: str | None = None
    baudrate: int = 115200
    probe_timeout_s: float = 1.0  # one AT while waking the modem
    boot_timeout_s: float = 30.0  # the modem answers AT within this after opening
    command_timeout_s: float = 10.0  # any ordinary command
    sim_timeout_s: float = 60.0  # +CPIN: READY within this (SIM busy is waited out)
    registration_timeout_s: float = 180.0  # registered (home/roaming) + signal after init
    ready_timeout_s: float = 30.0  # the send gate waits this long for registration + signal
    send_timeout_s: float = 60.0  # per part: AT+CMGS ... +CMGS: <mr> / OK
    poll_interval_s: float = 2.0  # between SIM / registration / signal polls
    check_interval_s: float = 60.0  # watchdog period
    check_timeout_s: float = 5.0  # the watchdog's AT must be answered within this
    reopen_initial_s: float = 2.0
    reopen_max_s: float = 300.0
    power_cycle_after: int = 5  # consecutive failed opens / dead sessions
    validity_minutes: int | None = DEFAULT_VALIDITY_MINUTES


@dataclass
class ModemHealth:
    """What the status page shows. ModemLink writes the first block, the session the second."""

    path: str = ""
    connected: bool = False  # port open and modem initialised
    reopens: int = 0  # sessions opened after the first one
    open_failures: int = 0  # opens or initialisations that failed
    consecutive_failures: int = 0
    power_cycles: int = 0
    last_error: str | None = None
    last_error_utc: float | None = None

    sim: str | None = None  # "READY", "SIM PIN", "busy", ...
    registration: int | None = None  # 27.007 <stat>: 1 home, 5 roaming, 2 searching, 3 denied
    signal_rssi: int | None = None  # 0-31, 99 unknown
    operator: str | None = None
    last_answer_utc: float | None = None  # the modem last completed a command
    last_success_utc: float | None = None  # the modem last accepted an SMS part
    messages_sent: int = 0
    parts_sent: int = 0
    urcs: int = 0
    restarts_detected: int = 0  # silent restarts (no RDY) noticed and set up again

    @property
    def registered(self) -> bool:
        return self.registration in REGISTERED

    @property
    def signal_known(self) -> bool:
        return self.signal_rssi is not None and self.signal_rssi != RSSI_UNKNOWN

    @property
    def signal_dbm(self) -> int | None:
        if self.signal_rssi is None or not self.signal_known:
            return None
        return -113 + 2 * self.signal_rssi

    @property
    def radio_ready(self) -> bool:
        return self.registered and self.signal_known

    @property
    def ready(self) -> bool:
        return self.connected and self.radio_ready

    def registration_text(self) -> str:
        return _STATES.get(self.registration, "none") if self.registration is not None else "none"


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


class ModemSession:
    """One open port. Build with `await ModemSession.open(...)`, then `initialise()`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settings: ModemSettings,
        health: ModemHealth,
        on_urc: UrcHandler | None = None,
    ) -> None:
        self._writer = writer
        self._settings = settings
        self._health = health
        self._on_urc = on_urc
        self._parser = AtParser()
        self._events: asyncio.Queue[Event | _Gone] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._gone: str | None = None
        self._closed = asyncio.Event()
        self._registration: dict[str, int | None] = {"+CREG": None, "+CEREG": None}
        self._has_eps = False  # the modem answers AT+CEREG (LTE)
        self._initialised = False
        self._pin: str | None = None
        self._restart_clue: tuple[str, str] | None = None  # (kind, what was seen)
        self._ignored_clues: set[str] = set()  # kinds this modem shows even when set up
        self._reader_task = asyncio.create_task(self._read_loop(reader))

    @classmethod
    async def open(
        cls,
        path: str,
        settings: ModemSettings,
        health: ModemHealth,
        on_urc: UrcHandler | None = None,
    ) -> ModemSession:
        try:
            reader, writer = await serial_asyncio.open_serial_connection(
                url=path, baudrate=settings.baudrate, exclusive=True
            )
        except OSError as error:  # serial.SerialException is an OSError
            raise ModemGone(f"cannot open {path}: {error}") from error
        return cls(reader, writer, settings, health, on_urc)

    @property
    def alive(self) -> bool:
        return self._gone is None

    @property
    def gone_reason(self) -> str | None:
        return self._gone

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        self._die("closed")
        self._reader_task.cancel()
        await asyncio.wait([self._reader_task])  # unlike awaiting it, never eats our own cancel
        with contextlib.suppress(OSError):
            self._writer.close()
        try:  # the port (and its exclusive lock) is released when the transport has closed
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()  # unflushed bytes to a device that takes none
        except OSError:
            pass

    # --- initialisation ----------------------------------------------------------------------

    async def initialise(self, pin: str | None = None) -> None:
        """Wake, echo off, numeric errors, SIM ready (PIN if asked), PDU mode, CREG URCs.

        Registration and signal are not waited for here: see `wait_ready()`.
        """
        self._initialised = False
        self._restart_clue = None
        self._pin = pin
        await self._wake()
        await self.command("ATE0")
        await self.command("AT+CMEE=1")
        await self._unlock_sim(pin)
        await self.command("AT+CMGF=0")
        await self._enable_registration_urcs()
        self._initialised = True
        log.info("modem_initialised", sim=self._health.sim)

    async def _wake(self) -> None:
        """AT until it answers; ESC first ends a PDU prompt an earlier session left open."""
        await self._write(ESC)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.boot_timeout_s
        while not await self._probe():
            if loop.time() >= deadline:
                raise ModemGone(f"no answer to AT within {self._settings.boot_timeout_s} s")

    async def _probe(self) -> bool:
        """True if AT got any final answer (even ERROR: the modem is listening)."""
        try:
            await self._exchange("AT", self._settings.probe_timeout_s)
        except _NoAnswer:
            return False
        return True

    async def _unlock_sim(self, pin: str | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.sim_timeout_s
        pin_sent = False
        while True:
            state = await self._sim_state()
            self._health.sim = state or "busy"
            if state == "READY":
                return
            if state == "SIM PIN" and pin is None:
                raise ModemRefused("AT+CPIN?", "CME", 11, "SIM PIN required, no PIN configured")
            if state == "SIM PIN" and not pin_sent:
                pin_sent = await self._enter_pin(pin or "")
            elif state not in (None, "NOT READY", "SIM PIN"):
                raise PinRejected("AT+CPIN?", "CME", None, f"SIM wants {state}")
            if loop.time() >= deadline:
                raise ModemNotReady(f"SIM not ready within {self._settings.sim_timeout_s} s")
            await asyncio.sleep(self._settings.poll_interval_s)

    async def _sim_state(self) -> str | None:
        """ "READY", "SIM PIN", ... or None while the SIM is busy (a transient error)."""
        response = await self.run("AT+CPIN?")
        if response.final.ok:
            return info_value(response.info, "+CPIN")
        error = error_for("AT+CPIN?", response.final)
        if error.retry:
            return None
        raise error

    async def _enter_pin(self, pin: str) -> bool:
        """True once the SIM took the PIN; a wrong PIN is never sent again (PinRejected)."""
        response = await self.run(f'AT+CPIN="{pin}"')
        if response.final.ok:
            return True
        error = error_for("AT+CPIN=<pin>", response.final)
        if error.retry:
            return False
        raise PinRejected(error.command, error.kind, error.code, error.description)

    async def _enable_registration_urcs(self) -> None:
        await self.command("AT+CREG=1")
        response = await self.run("AT+CEREG=1")  # LTE modems; a 2G modem says ERROR
        self._has_eps = response.final.ok

    # --- silent restarts ---------------------------------------------------------------------

    @property
    def restart_clue(self) -> str | None:
        """Why the modem seems to have restarted since it was set up (None: no sign of it)."""
        return self._restart_clue[1] if self._restart_clue is not None else None

    def _note_clue(self, kind: str, clue: str) -> None:
        if self._initialised and self._restart_clue is None and kind not in self._ignored_clues:
            self._restart_clue = (kind, clue)
            log.info("modem_restart_clue", clue=clue)

    async def ensure_setup(self) -> None:
        """Make sure the modem is still in PDU mode (and set up): `AT+CMGF?`, and with any
        restart clue, set the modem up again here. Before each part and at each watchdog check."""
        if await self._in_text_mode():
            self._note_clue("text mode", "text mode (AT+CMGF? says 1)")
        if self._restart_clue is not None:
            await self._set_up_again(self._restart_clue[1])

    async def _in_text_mode(self) -> bool:
        response = await self.run("AT+CMGF?")
        answer = info_value(response.info, "+CMGF") if response.final.ok else None
        mode = leading_int(answer) if answer is not None else None
        if mode is None:  # no usable answer (an odd firmware): set it, which is what matters
            await self.command("AT+CMGF=0")
            return False
        return mode != 0

    async def _set_up_again(self, clue: str) -> None:
        """Initialise again in place. A modem still in text mode right after AT+CMGF=0 kills
        the session (no PDU may go to it); another clue seen right after the set-up is this
        modem's habit, not a restart, and is ignored from then on."""
        self._health.restarts_detected += 1
        log.warning(
            "modem_restart_detected",
            clue=clue,
            count=self._health.restarts_detected,
            action="setting the modem up again (echo off, PDU mode, registration URCs)",
        )
        try:
            await self.initialise(self._pin)
            await self.refresh()
            if await self._in_text_mode():
                raise ModemGone("the modem is still in text mode after AT+CMGF=0")
        except SmsError as error:
            self._die(f"setting the modem up again after a restart failed: {error}")
            raise
        if self._restart_clue is not None:
            kind, habit = self._restart_clue
            self._ignored_clues.add(kind)
            self._restart_clue = None
            log.warning("modem_clue_ignored", clue=habit, why="seen right after setting up")

    # --- commands ----------------------------------------------------------------------------

    async def command(self, command: str, timeout_s: float | None = None) -> list[str]:
        """Run `command`; its information lines, or the typed error for an error result."""
        response = await self.run(command, timeout_s)
        if not response.final.ok:
            raise error_for(_label(command), response.final)
        return response.info

    async def run(
        self, command: str, timeout_s: float | None = None, data: str | None = None
    ) -> Response:
        """Run `command` (and write `data` + Ctrl-Z at the prompt); a missed deadline kills
        the session: ModemGone, or SendTimeout when `data` was involved."""
        timeout_s = timeout_s if timeout_s is not None else self._settings.command_timeout_s
        try:
            return await self._exchange(command, timeout_s, data)
        except _NoAnswer as no_answer:
            reason = f"no answer to {_label(command)} within {timeout_s} s"
            self._die(reason)
            if data is not None:
                raise SendTimeout(reason, maybe_sent=no_answer.data_written) from None
            raise ModemGone(reason) from None

    async def _exchange(self, command: str, timeout_s: float, data: str | None = None) -> Response:
        async with self._lock:
            self._raise_if_gone()
            while not self._events.empty():  # leftovers of a command given up on
                self._events.get_nowait()
            self._parser.begin(command, data)
            written: list[bool] = [False]
            try:
                async with asyncio.timeout(timeout_s):
                    await self._write(command.encode("ascii") + b"\r")
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
                await self._write(data.encode("ascii") + CTRL_Z)
                written[0] = True
            elif isinstance(event, Final):
                self._health.last_answer_utc = time.time()
                return Response(info, event)

    async def _write(self, data: bytes) -> None:
        self._raise_if_gone()
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as error:
            self._die(f"write failed: {error}")
            raise ModemGone(f"write failed: {error}") from error

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
            self._die(f"read failed: {error}")
        else:
            self._die("end of file")

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Urc):
            self._note_urc(event)
        elif isinstance(event, Stray):
            log.info("modem_stray_result", line=event.line)
        elif isinstance(event, Echo):
            if event.line[:2].upper() == "AT":  # a command's echo (not PDU data) after ATE0
                self._note_clue("echo", f"echo is on again ({_label(event.line)})")
        else:
            self._events.put_nowait(event)

    def _note_urc(self, urc: Urc) -> None:
        self._health.urcs += 1
        name = urc.name.upper()
        if name in self._registration:
            self._registration[name] = registration_status(urc.value, solicited=False)
            self._update_registration()
        elif name == "+CPIN":
            self._health.sim = urc.value
        elif name in BOOT_URCS and self._initialised:
            self._die(f"modem restarted ({urc.line}): echo, PDU mode and URCs are lost")
        log.debug("modem_urc", line=urc.line)
        if self._on_urc is not None:
            try:
                self._on_urc(urc)
            except Exception:
                log.exception("modem_urc_handler_failed", line=urc.line)

    def _die(self, reason: str) -> None:
        if self._gone is not None:
            return
        self._gone = reason
        self._events.put_nowait(_Gone(reason))
        self._closed.set()
        if reason != "closed":
            log.warning("modem_session_dead", reason=reason)

    # --- radio state and the send gate -------------------------------------------------------

    async def refresh(self) -> None:
        """Registration, signal and operator into health; error answers are ignored."""
        self._registration["+CREG"] = await self._query_registration("AT+CREG?", "+CREG")
        if self._has_eps:
            self._registration["+CEREG"] = await self._query_registration("AT+CEREG?", "+CEREG")
        self._update_registration()
        response = await self.run("AT+CSQ")
        quality = signal_quality(info_value(response.info, "+CSQ") or "")
        self._health.signal_rssi = quality[0] if quality is not None else None
        if self._health.registered:
            response = await self.run("AT+COPS?")
            self._health.operator = operator_name(info_value(response.info, "+COPS") or "")

    async def _query_registration(self, command: str, prefix: str) -> int | None:
        response = await self.run(command)
        value = info_value(response.info, prefix)
        if value is None:
            return None
        mode = leading_int(value)
        if mode is not None and mode != 1:  # set to 1 at initialisation: the modem forgot it
            self._note_clue(prefix, f"{prefix}: {value} (registration URCs off again)")
        return registration_status(value, solicited=True)

    def _update_registration(self) -> None:
        states = [s for s in self._registration.values() if s is not None]
        registered = [s for s in states if s in REGISTERED]
        best = registered or states
        self._health.registration = best[0] if best else None

    async def wait_ready(self, timeout_s: float) -> None:
        """Poll until registered (home or roaming) with a known signal; ModemNotReady if not
        by `timeout_s` (the session stays usable)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            await self.refresh()
            if self._health.radio_ready:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ModemNotReady(self._not_ready_reason())
            await asyncio.sleep(min(self._settings.poll_interval_s, remaining))

    def _not_ready_reason(self) -> str:
        health = self._health
        if not health.registered:
            return f"not registered ({health.registration_text()})"
        return f"no usable signal (CSQ {health.signal_rssi})"

    async def check(self) -> None:
        """Watchdog probe: AT answered within check_timeout_s, or ModemGone."""
        await self.run("AT", self._settings.check_timeout_s)

    # --- sending -----------------------------------------------------------------------------

    async def send_pdu(self, pdu: Pdu) -> int:
        """One part; its TP-MR (-1 if the modem said OK without +CMGS)."""
        command = f"AT+CMGS={pdu.tpdu_length}"
        response = await self.run(command, self._settings.send_timeout_s, data=pdu.hex)
        if not response.final.ok:
            raise error_for(command, response.final)
        self._health.parts_sent += 1
        self._health.last_success_utc = time.time()
        reference = message_reference(info_value(response.info, "+CMGS") or "")
        if reference is None:
            log.warning("modem_cmgs_without_reference", info=response.info)
        return reference if reference is not None else -1

    async def send_sms(
        self,
        number: str,
        text: str,
        *,
        reference: int,
        first_part: int = 0,
        on_part: PartSent | None = None,
        setup_checked: bool = False,
    ) -> list[int]:
        """Send the parts of `text` from `first_part` on; their TP-MRs. On failure the error's
        `parts_done` is the first part not known to be sent. `on_part(parts_done)` is awaited
        after each accepted part. Each part is preceded by `ensure_setup()`, except the first
        when the caller has just run it (`setup_checked`)."""
        pdus = encode_sms(number, text, reference, validity_minutes=self._settings.validity_minutes)
        references: list[int] = []
        try:
            for index, pdu in enumerate(pdus[first_part:]):
                if index > 0 or not setup_checked:
                    await self.ensure_setup()
                if not self._health.radio_ready:
                    await self.wait_ready(self._settings.ready_timeout_s)
                references.append(await self.send_pdu(pdu))
                if on_part is not None:
                    await on_part(first_part + len(references))
        except SmsError as error:
            error.parts_done = first_part + len(references)
            raise
        self._health.messages_sent += 1
        return references


def _label(command: str) -> str:
    """The command as logged: a PIN is never written to a log."""
    return "AT+CPIN=<pin>" if command.upper().startswith("AT+CPIN=") else command


class ModemLink:
    """Keeps a session open on `path`: connect, watchdog, reopen with backoff, power cycle.

    Run `run()` as a task for the life of the app. `health` is the status board entry.
    `on_urc` is called in the reader task and must not block. `on_pin_rejected(error)` is
    called (without blocking) when the SIM refused the configured PIN: the link stops using
    it at once; the caller may persist that, so a restart does not try it again either.
    """

    def __init__(
        self,
        path: str,
        settings: ModemSettings | None = None,
        *,
        power_cycle: PowerCycle | None = None,
        on_urc: UrcHandler | None = None,
        on_pin_rejected: PinRejectedHandler | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.path = path
        self.settings = settings if settings is not None else ModemSettings()
        self.health = ModemHealth(path=path)
        self._power_cycle = power_cycle
        self._on_urc = on_urc
        self._on_pin_rejected = on_pin_rejected
        self._rng = rng if rng is not None else random.Random()
        self._pin = self.settings.pin
        self._session: ModemSession | None = None
        self._ready = asyncio.Event()
        self._has_connected = False
        self._next_reference = self._rng.randrange(256)

    # --- for senders -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """A session is up, registered and with a known signal (what `wait_ready` waits for)."""
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        """Until a session is up, registered and with a known signal."""
        await self._ready.wait()

    def next_reference(self) -> int:
        """A concatenation reference (0-255) for a sender that does not keep its own."""
        reference = self._next_reference
        self._next_reference = (reference + 1) % 256
        return reference

    async def send_sms(
        self,
        number: str,
        text: str,
        *,
        reference: int | None = None,
        first_part: int = 0,
        on_part: PartSent | None = None,
        setup_checked: bool = False,
    ) -> list[int]:
        """Send `text`; the TP-MR of each part sent. Raises an SmsError (see errors.py).
        `on_part(parts_done)` is awaited after each part the modem accepted. `setup_checked`:
        `check_setup()` has just passed, so the first part goes without asking again."""
        session = self._connected_session()
        chosen = reference if reference is not None else self.next_reference()
        try:
            return await session.send_sms(
                number,
                text,
                reference=chosen,
                first_part=first_part,
                on_part=on_part,
                setup_checked=setup_checked,
            )
        except SmsError as error:
            self._note_error(error)
            raise
        finally:
            self._update_ready()

    async def check_setup(self) -> None:
        """The check that precedes each part (PDU mode; set up again after a silent restart),
        on its own: a sender runs it while it commits the message's `sending` state, then
        sends with `setup_checked=True`. Raises an SmsError as a send would."""
        session = self._connected_session()
        try:
            await session.ensure_setup()
        except SmsError as error:
            self._note_error(error)
            raise
        finally:
            self._update_ready()

    def _connected_session(self) -> ModemSession:
        session = self._session
        if session is None or not session.alive:
            raise ModemNotReady(f"modem not connected: {self.health.last_error or 'starting'}")
        return session

    # --- supervision -------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, supervise, reconnect; until cancelled."""
        delay_s = self.settings.reopen_initial_s
        while True:
            session = await self._connect()
            if session is not None:
                delay_s = self.settings.reopen_initial_s
                await self._supervise(session)
            await self._after_failure()
            await asyncio.sleep(delay_s * self._rng.uniform(0.5, 1.0))
            delay_s = min(delay_s * 2, self.settings.reopen_max_s)

    async def _connect(self) -> ModemSession | None:
        try:
            session = await ModemSession.open(self.path, self.settings, self.health, self._urc)
        except ModemGone as error:
            self._note_open_failure(error)
            return None
        try:
            await session.initialise(self._pin)
        except SmsError as error:
            self._note_open_failure(error)
        except BaseException:
            await session.close()
            raise
        else:
            self._note_connected()
            return session
        await session.close()
        return None

    async def _supervise(self, session: ModemSession) -> None:
        self._session = session
        try:
            with contextlib.suppress(ModemNotReady):
                await session.wait_ready(self.settings.registration_timeout_s)
            self._update_ready()
            while True:
                await self._wait_for_next_check(session)
                await session.check()
                await session.refresh()
                await session.ensure_setup()
                self._update_ready()
        except SmsError as error:
            self._note_error(error)
        finally:
            self._session = None
            self.health.connected = False
            self._update_ready()
            await session.close()

    async def _wait_for_next_check(self, session: ModemSession) -> None:
        try:
            async with asyncio.timeout(self.settings.check_interval_s):
                await session.wait_closed()
        except TimeoutError:
            return
        raise ModemGone(session.gone_reason or "closed")

    async def _after_failure(self) -> None:
        self.health.consecutive_failures += 1
        if self._power_cycle is None:
            return
        if self.health.consecutive_failures < self.settings.power_cycle_after:
            return
        self.health.consecutive_failures = 0
        self.health.power_cycles += 1
        log.warning("modem_power_cycle", path=self.path, count=self.health.power_cycles)
        try:
            await self._power_cycle()
        except Exception:
            log.exception("modem_power_cycle_failed", path=self.path)

    # --- bookkeeping -------------------------------------------------------------------------

    def _urc(self, urc: Urc) -> None:
        self._update_ready()
        if self._on_urc is not None:
            self._on_urc(urc)

    def _update_ready(self) -> None:
        if self.health.ready:
            self._ready.set()
        else:
            self._ready.clear()

    def _note_connected(self) -> None:
        if self._has_connected:
            self.health.reopens += 1
        self._has_connected = True
        self.health.connected = True
        self.health.consecutive_failures = 0
        log.info("modem_connected", path=self.path, reopens=self.health.reopens)

    def _note_open_failure(self, error: SmsError) -> None:
        self.health.open_failures += 1
        self._note_error(error)

    def _note_error(self, error: SmsError) -> None:
        """Record the error; log it when it differs from the last one (a modem that stays
        away would otherwise log every reopen attempt). A refused PIN is dropped at once,
        whether initialisation or setting up again after a restart met the refusal."""
        text = f"{type(error).__name__}: {error}"
        if text != self.health.last_error:
            log.warning("modem_error", path=self.path, error=text)
        self.health.last_error = text
        self.health.last_error_utc = time.time()
        if isinstance(error, PinRejected):
            self._drop_pin(error)

    def _drop_pin(self, error: PinRejected) -> None:
        had_pin, self._pin = self._pin is not None, None  # tried again it would lock the SIM
        if had_pin and self._on_pin_rejected is not None:
            self._on_pin_rejected(error)


# --- command line ---------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m appliance.sms.modem", description="Send one SMS through a modem."
    )
    parser.add_argument("--port", required=True, help="serial port (a by-id path on the Pi)")
    parser.add_argument("--to", required=True, help="destination number, +<country><number>")
    parser.add_argument("--pin", help="SIM PIN, if the SIM asks for one")
    parser.add_argument("--timeout", type=float, default=240.0, help="give up after (s)")
    parser.add_argument("text")
    return parser.parse_args(argv)


async def _send_once(args: argparse.Namespace) -> int:
    link = ModemLink(args.port, ModemSettings(pin=args.pin))
    task = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(args.timeout):
            await link.wait_ready()
            references = await link.send_sms(args.to, args.text)
        print(f"sent, message references {references}")
        return 0
    except (SmsError, TimeoutError) as error:
        print(f"not sent: {error!r}; last error: {link.health.last_error}", file=sys.stderr)
        return 1
    finally:
        print(dataclasses.asdict(link.health), file=sys.stderr)
        task.cancel()
        await asyncio.wait([task])


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging("info")  # to stderr: stdout shows the result
    return asyncio.run(_send_once(_parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
