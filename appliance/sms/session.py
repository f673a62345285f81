"""A GSM modem session: one open port, the modem set up on it, its radio state and the sends.

`ModemSession.initialise()` wakes the modem and sets it up (echo off, numeric errors, SIM
ready, PDU mode, registration URCs); `wait_ready()` polls registration and signal into
`ModemHealth`; `send_sms()` sends a message's parts. The conversation itself (one command at a
time, answers, URCs) is the `AtChannel` under it (sms/channel.py). A command that misses its
deadline, a vanished port and a modem that announces a restart ("RDY" after initialisation:
its echo, error and PDU settings are gone) kill the session. Nothing inside a session
reconnects: `ModemLink` (sms/link.py) opens a new one.

A modem may also restart without a word, back to its power-on settings: echo on, text mode
(where `AT+CMGS=<length>` would text the PDU's hex to the number <length>), no registration
URCs. So before every part the session asks `AT+CMGF?`, and it also takes as clues the echo of
a command after ATE0 and a registration answer whose <n> is no longer the 1 it set. Any clue
is a restart: the session sets the modem up again in place (counted in
`health.restarts_detected`, logged as modem_restart_detected) before the part goes; if that
fails, or the modem still says text mode afterwards, the session dies and the link reopens it.
A clue the modem shows right after being set up is its habit, not a restart: ignored from then
on (AT+CMGF? still guards every part).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from appliance.sms.at import (
    Urc,
    error_for,
    info_value,
    leading_int,
    message_reference,
    operator_name,
    registration_status,
    signal_quality,
)
from appliance.sms.channel import AtChannel, Response, loggable, open_port
from appliance.sms.errors import ModemGone, ModemNotReady, ModemRefused, PinRejected, SmsError
from appliance.sms.health import REGISTERED, ModemHealth
from appliance.sms.pdu import DEFAULT_VALIDITY_MINUTES, Pdu, encode_sms

log = structlog.get_logger(__name__)

ESC = b"\x1b"
BOOT_URCS = frozenset({"RDY", "^SYSSTART", "*ATREADY"})  # the modem restarted: setup is lost

UrcHandler = Callable[[Urc], None]
PartSent = Callable[[int], Awaitable[None]]
"""Called after each part the modem accepted with the number of parts now known to be sent
(a durable queue records it, so a restart resumes from the next part)."""


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
        self._settings = settings
        self._health = health
        self._on_urc = on_urc
        self._registration: dict[str, int | None] = {"+CREG": None, "+CEREG": None}
        self._has_eps = False  # the modem answers AT+CEREG (LTE)
        self._initialised = False
        self._pin: str | None = None
        self._restart_clue: tuple[str, str] | None = None  # (kind, what was seen)
        self._ignored_clues: set[str] = set()  # kinds this modem shows even when set up
        self._channel = AtChannel(reader, writer, on_urc=self._note_urc, on_echo=self._note_echo)

    @classmethod
    async def open(
        cls,
        path: str,
        settings: ModemSettings,
        health: ModemHealth,
        on_urc: UrcHandler | None = None,
    ) -> ModemSession:
        reader, writer = await open_port(path, settings.baudrate)
        return cls(reader, writer, settings, health, on_urc)

    @property
    def alive(self) -> bool:
        return self._channel.alive

    @property
    def gone_reason(self) -> str | None:
        return self._channel.gone_reason

    async def wait_closed(self) -> None:
        await self._channel.wait_closed()

    async def close(self) -> None:
        await self._channel.close()

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
        await self._channel.write(ESC)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.boot_timeout_s
        while not await self._probe():
            if loop.time() >= deadline:
                raise ModemGone(f"no answer to AT within {self._settings.boot_timeout_s} s")

    async def _probe(self) -> bool:
        """True if AT got any final answer (even ERROR: the modem is listening)."""
        answered = await self._channel.probe("AT", self._settings.probe_timeout_s)
        if answered:
            self._health.last_answer_utc = time.time()
        return answered

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
            self._channel.die(f"setting the modem up again after a restart failed: {error}")
            raise
        if self._restart_clue is not None:
            kind, habit = self._restart_clue
            self._ignored_clues.add(kind)
            self._restart_clue = None
            log.warning("modem_clue_ignored", clue=habit, why="seen right after setting up")

    # --- commands and what the modem says unasked --------------------------------------------

    async def command(self, command: str, timeout_s: float | None = None) -> list[str]:
        """Run `command`; its information lines, or the typed error for an error result."""
        response = await self.run(command, timeout_s)
        if not response.final.ok:
            raise error_for(loggable(command), response.final)
        return response.info

    async def run(
        self, command: str, timeout_s: float | None = None, data: str | None = None
    ) -> Response:
        """Run `command` (and write `data` + Ctrl-Z at the prompt); a missed deadline kills
        the session: ModemGone, or SendTimeout when `data` was involved."""
        timeout_s = timeout_s if timeout_s is not None else self._settings.command_timeout_s
        response = await self._channel.run(command, timeout_s, data)
        self._health.last_answer_utc = time.time()
        return response

    def _note_echo(self, line: str) -> None:
        if line[:2].upper() == "AT":  # a command's echo (not PDU data) after ATE0
            self._note_clue("echo", f"echo is on again ({loggable(line)})")

    def _note_urc(self, urc: Urc) -> None:
        self._health.urcs += 1
        name = urc.name.upper()
        if name in self._registration:
            self._registration[name] = registration_status(urc.value, solicited=False)
            self._update_registration()
        elif name == "+CPIN":
            self._health.sim = urc.value
        elif name in BOOT_URCS and self._initialised:
            self._channel.die(f"modem restarted ({urc.line}): echo, PDU mode and URCs are lost")
        log.debug("modem_urc", line=urc.line)
        if self._on_urc is not None:
            try:
                self._on_urc(urc)
            except Exception:
                log.exception("modem_urc_handler_failed", line=urc.line)

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
