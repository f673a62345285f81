"""An emulated GSM modem (SIM800 or SIM7600 behaviour) on a real pseudo-terminal.

It boots like the real thing: input is ignored until "RDY"; echo is on until ATE0; AT+CPIN?
answers +CME ERROR: 14 (SIM busy) for a while, then "+CPIN: READY" (or "SIM PIN" until the
right AT+CPIN="<pin>"; three wrong ones and the SIM wants a PUK); registration goes from 2
(searching) to 1 (home) or 5 (roaming) after a delay and AT+CSQ says 99 until the signal is
known. The profile starts in text mode, like a real one: there `AT+CMGS=<n>` takes n as the
destination number and the line after "> " as the text, so a host that never sends AT+CMGF=0
(or missed a restart) texts its PDU hex to a number like "25". In PDU mode AT+CMGS gives the
"> " prompt; the PDU that follows is decoded with the real decoder (a bad one gets +CMS ERROR:
304), concatenated parts are reassembled by reference, and each whole message lands in
`delivered` (number, text, parts, time) so a test can compare it with what was sent.

Faults: `fail_sends` (the next N sends get a +CMS error, or every send), `fail_text` (every
part whose text contains a marker gets a +CMS error), `answer_submits_late` (the +CMGS answer
comes long after the SMS went), `hang` (stops answering, keeps the port),
`hang_on_next_submit` (takes the PDU, then hangs: the host cannot know whether it went),
`unplug` / `replug` (pty and symlink vanish; a new pty appears under the same symlink, freshly
booted), `power_cycle`, `silent_restart` (back to the power-on settings without "RDY": echo on,
text mode, no registration URCs), URCs now (`inject_urc`), inside the next answer
(`queue_urc`, e.g. between "> " and +CMGS) or at random (`urc_probability`). Every delay is in
`EmulatorSettings`; `EmulatorSettings.fast()` shrinks them for tests and demos.

Standalone (prints each SMS that would have been sent):
    python -m appliance.sms.emulator --link /tmp/modem --fast
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from appliance.logging import configure_logging
from appliance.pty_device import close_pty, open_pty
from appliance.sms.at import CME_ERRORS, CMS_ERRORS, ErrorCode, response_prefix, split_fields
from appliance.sms.errors import PduError
from appliance.sms.pdu import Encoding, Submit, decode_submit

log = structlog.get_logger(__name__)

OK = "\r\nOK\r\n"
ERROR = "\r\nERROR\r\n"
PROMPT = "\r\n> "
CTRL_Z = 0x1A
ESC = 0x1B
MODELS = ("SIM800", "SIM7600")


@dataclass(frozen=True)
class EmulatorSettings:
    """Every delay of the emulated modem, in seconds."""

    boot_s: float = 2.0  # power on -> "RDY"; input is ignored until then
    sim_busy_s: float = 3.0  # "RDY" -> SIM initialised (AT+CPIN? says SIM busy meanwhile)
    pin_unlock_s: float = 1.0  # right PIN -> SIM ready
    registration_s: float = 10.0  # SIM ready -> registered (searching meanwhile)
    signal_unknown_s: float = 5.0  # SIM ready -> AT+CSQ stops saying 99
    response_delay_s: float = 0.02  # command -> answer
    prompt_delay_s: float = 0.05  # AT+CMGS -> "> "
    submit_delay_s: float = 1.5  # Ctrl-Z -> +CMGS (the network round trip)
    urc_probability: float = 0.0  # chance that a random URC lands inside an answer
    boot_noise: bytes = b"\x00\xff\xfe\r\n"

    @classmethod
    def fast(cls, **changes: Any) -> EmulatorSettings:
        """Same sequence of events, delays shrunk to a few ms."""
        quick = cls(
            boot_s=0.02,
            sim_busy_s=0.05,
            pin_unlock_s=0.02,
            registration_s=0.08,
            signal_unknown_s=0.04,
            response_delay_s=0.0,
            prompt_delay_s=0.0,
            submit_delay_s=0.005,
        )
        return dataclasses.replace(quick, **changes)


@dataclass(frozen=True)
class AcceptedPart:
    number: str
    submit: Submit
    message_reference: int
    time_utc: float


@dataclass(frozen=True)
class DeliveredSms:
    """A whole message as the recipient's phone would show it."""

    number: str
    text: str
    parts: int
    reference: int | None  # the concatenation reference, None for a single part
    message_references: tuple[int, ...]
    encoding: Encoding
    time_utc: float

    def describe(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.time_utc))
        plural = "s" if self.parts > 1 else ""
        return f"[{when}] SMS to {self.number} ({self.parts} part{plural}): {self.text}"


@dataclass
class ModemCounts:
    boots: int = 0
    commands: int = 0
    ignored_bytes: int = 0  # arrived while booting, hung or unplugged
    sim_busy_answers: int = 0
    pin_attempts: int = 0
    pdus_received: int = 0  # Ctrl-Z seen (answered after submit_delay_s)
    submits: int = 0
    text_mode_sends: int = 0  # AT+CMGS in text mode: the "PDU" went out as text
    send_errors: int = 0
    parts_accepted: int = 0
    duplicate_parts: int = 0
    messages_delivered: int = 0
    urcs: int = 0
    hangs: int = 0
    unplugs: int = 0
    replugs: int = 0
    power_cycles: int = 0
    silent_restarts: int = 0
    late_answers: int = 0


@dataclass
class _SendFault:
    code: int
    remaining: int | None  # None: every send from now on
    after: int  # successful sends first


@dataclass
class _LateAnswers:
    delay_s: float
    remaining: int | None  # None: every send from now on


@dataclass
class _Volatile:
    """What a power cycle resets."""

    booted: bool = False
    hung: bool = False
    echo: bool = True
    cmee: int = 0
    cmgf: int = 1
    creg_n: int = 0
    cereg_n: int = 0
    sim: str = "off"  # off, busy, SIM PIN, SIM PUK, READY
    sim_initialised: bool = False
    registration: int = 0
    signal_known: bool = False
    line: bytearray = field(default_factory=bytearray)
    pdu: bytearray | None = None  # collecting a PDU (or in text mode the text) after the prompt
    pdu_length: int = 0
    text_to: str | None = None  # text mode: the number AT+CMGS named
    queued_urcs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Command:
    text: str


@dataclass(frozen=True)
class _Submit:
    data: bytes
    text_to: str | None = None  # text mode: the destination, `data` is the text
    delay_s: float = 0.0  # until the +CMGS answer


_Input = _Command | _Submit


class EmulatedModem:
    """A SIM800/SIM7600-like modem on a pty at `path` (and `link_path`, if given).

    Use as `async with EmulatedModem(...) as modem:` (it needs a running loop).
    `on_delivered(sms)` is called for each whole message (the demo prints them);
    `on_command(line)` for each command line as it arrives (before it is answered).
    """

    def __init__(
        self,
        *,
        link_path: str | Path | None = None,
        settings: EmulatorSettings | None = None,
        model: str = "SIM800",
        pin: str | None = None,
        operator: str = "Emulated Mobile",
        rssi: int = 20,
        roaming: bool = False,
        seed: int = 0,
        on_delivered: Callable[[DeliveredSms], None] | None = None,
        on_command: Callable[[str], None] | None = None,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}")
        self.link_path = Path(link_path) if link_path is not None else None
        self.settings = settings if settings is not None else EmulatorSettings()
        self.model = model
        self.operator = operator
        self.counts = ModemCounts()
        self.delivered: list[DeliveredSms] = []
        self.parts: list[AcceptedPart] = []
        self.commands: list[str] = []
        self._pin = pin
        self._pin_attempts_left = 3
        self._rssi = rssi
        self._home_state = 5 if roaming else 1
        self._network_state: int | None = None  # forced by set_registration
        self._on_delivered = on_delivered
        self._on_command = on_command
        self._random = random.Random(seed)
        self._faults: list[_SendFault] = []
        self._text_faults: dict[str, int] = {}
        self._late_answers: _LateAnswers | None = None
        self._hang_on_submit = False
        self._partial: dict[tuple[str, int, int], dict[int, AcceptedPart]] = {}
        self._next_mr = 0
        self._state = _Volatile()
        self._epoch = 0
        self._inbox: asyncio.Queue[_Input] = asyncio.Queue()
        self._master: int | None = None
        self._slave: int | None = None
        self._tx = bytearray()
        self._writing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._responder: asyncio.Task[None] | None = None
        self._replug_timer: asyncio.TimerHandle | None = None

    # --- plugging ----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        if self._slave is None:
            raise RuntimeError("emulated modem is unplugged")
        return os.ttyname(self._slave)

    @property
    def plugged_in(self) -> bool:
        return self._master is not None

    def open(self) -> None:
        """Plug in and power on."""
        self._open_pty()
        self._power_on()

    def close(self) -> None:
        """Unplug for good (no replug pending)."""
        if self._replug_timer is not None:
            self._replug_timer.cancel()
        self._close_pty()
        self._epoch += 1

    async def __aenter__(self) -> EmulatedModem:
        self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        responder = self._responder
        self.close()
        if responder is not None:
            await asyncio.wait([responder])

    def _open_pty(self) -> None:
        master, self._slave = open_pty(self.link_path)  # the modem echoes, not the kernel
        self._master = master
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(master, self._on_readable)
        self._responder = self._loop.create_task(self._respond_forever())

    def _close_pty(self) -> None:
        if self._loop is not None and self._master is not None:
            self._loop.remove_reader(self._master)
            self._loop.remove_writer(self._master)
        close_pty(self.link_path, self._master, self._slave)
        self._master = self._slave = None
        self._tx.clear()
        self._writing = False
        if self._responder is not None:
            self._responder.cancel()
            self._responder = None

    # --- faults and conditions ---------------------------------------------------------------

    def fail_sends(self, code: int, count: int | None = 1, *, after: int = 0) -> None:
        """After `after` good sends, the next `count` sends (None: all) get +CMS ERROR: code."""
        self._faults.append(_SendFault(code, count, after))

    def fail_text(self, containing: str, code: int = 42) -> None:
        """Every part whose text contains `containing` gets +CMS ERROR: code (42, congestion,
        is transient: the host retries), until `clear_faults()`."""
        self._text_faults[containing] = code

    def answer_submits_late(self, delay_s: float, count: int | None = 1) -> None:
        """The next `count` sends (None: all) are delivered as usual, but their +CMGS answer
        comes `delay_s` after the PDU (a slow network acknowledgement); commands sent
        meanwhile are answered after it, in order."""
        self._late_answers = _LateAnswers(delay_s, count)

    def clear_faults(self) -> None:
        self._faults.clear()
        self._text_faults.clear()
        self._late_answers = None
        self._hang_on_submit = False

    def hang_on_next_submit(self) -> None:
        """The next PDU is taken (and delivered), then the modem hangs before answering."""
        self._hang_on_submit = True

    def hang(self) -> None:
        """Stop answering anything; the port stays open."""
        self._state.hung = True
        self._state.pdu = None
        self.counts.hangs += 1
        _drain(self._inbox)
        log.info("modem_emulator_hung")

    def resume(self) -> None:
        self._state.hung = False

    def unplug(self, for_s: float | None = None) -> None:
        """Vanish now (pty and symlink gone); come back on a new pty after `for_s`, if given."""
        if not self.plugged_in:
            return
        self.close()
        self.counts.unplugs += 1
        log.info("modem_emulator_unplugged", for_s=for_s)
        if for_s is not None and self._loop is not None:
            self._replug_timer = self._loop.call_later(for_s, self.replug)

    def replug(self) -> None:
        """A new pty under the same symlink, booting from scratch (USB re-enumeration)."""
        if self.plugged_in:
            return
        self.open()
        self.counts.replugs += 1
        log.info("modem_emulator_replugged", path=self.path)

    def power_cycle(self) -> None:
        """Reboot on the same port (what a GPIO power switch does to a UART modem)."""
        self.counts.power_cycles += 1
        if self.plugged_in:
            self._power_on()
        else:
            self.replug()

    def silent_restart(self, *, echo: bool = True) -> None:
        """Restart without a word (no "RDY"): the settings are back at their power-on values
        (echo on, unless `echo` is False for a profile saved with ATE0&W; text mode; error codes
        and registration URCs off; a PDU being typed is lost). The SIM and the network come
        back at once, except that a SIM with a PIN asks for it again."""
        state = self._state
        state.echo, state.cmee, state.cmgf, state.creg_n, state.cereg_n = echo, 0, 1, 0, 0
        state.pdu, state.text_to = None, None
        state.line.clear()
        if self._pin is not None and state.sim == "READY":
            state.sim = "SIM PIN"
        self.counts.silent_restarts += 1
        log.info("modem_emulator_restarted_silently", echo=echo)

    def inject_urc(self, line: str) -> None:
        """An unsolicited line now, wherever the conversation is."""
        if self._write_pieces([_line(line)], with_urcs=False):
            self.counts.urcs += 1

    def queue_urc(self, line: str) -> None:
        """An unsolicited line inside the next answer, right after its first piece (after
        the "> " prompt for AT+CMGS, between an information line and OK otherwise)."""
        self._state.queued_urcs.append(line)

    def set_registration(self, state: int | None) -> None:
        """Force a 27.007 registration state from now on, or from SIM ready if earlier (None:
        back to normal after the registration delay); sends +CREG if enabled."""
        self._network_state = state
        if self._state.sim == "READY" and self._state.registration != 0:
            self._set_registration(state if state is not None else self._home_state)

    def set_signal(self, rssi: int) -> None:
        """AT+CSQ says `rssi` from now on (99: unknown)."""
        self._rssi = rssi
        self._state.signal_known = True

    # --- power and timers --------------------------------------------------------------------

    def _power_on(self) -> None:
        self._epoch += 1
        self._state = _Volatile()
        _drain(self._inbox)
        self._send_raw(self.settings.boot_noise)
        self._later(self.settings.boot_s, self._boot_done)

    def _later(self, delay_s: float, callback: Callable[[], None]) -> None:
        """Run `callback` after `delay_s` unless the modem was power-cycled or unplugged."""
        if self._loop is None or math.isinf(delay_s):
            return
        epoch = self._epoch

        def fire() -> None:
            if epoch == self._epoch:
                callback()

        self._loop.call_later(delay_s, fire)

    def _boot_done(self) -> None:
        self._state.booted = True
        self._state.sim = "busy"
        self.counts.boots += 1
        if self.model == "SIM800":
            self._urcs("RDY", "+CFUN: 1")
        else:
            self._urcs("RDY")
        self._later(self.settings.sim_busy_s, self._sim_initialised)

    def finish_sim_init(self) -> None:
        """End the SIM-busy phase after boot now (for tests that set sim_busy_s to inf)."""
        if self._state.booted and not self._state.sim_initialised:
            self._sim_initialised()

    def _sim_initialised(self) -> None:
        self._state.sim_initialised = True
        if self._pin is None:
            self._sim_ready()
        else:
            self._state.sim = "SIM PIN" if self._pin_attempts_left else "SIM PUK"
            self._urcs(f"+CPIN: {self._state.sim}")

    def _sim_ready(self) -> None:
        self._state.sim = "READY"
        forced = self._network_state
        self._state.registration = forced if forced is not None else 2
        ready = ("Call Ready", "SMS Ready") if self.model == "SIM800" else ("SMS DONE", "PB DONE")
        self._urcs("+CPIN: READY", *ready)
        self._later(self.settings.registration_s, self._registered)
        self._later(self.settings.signal_unknown_s, self._signal_found)

    def _registered(self) -> None:
        forced = self._network_state
        self._set_registration(forced if forced is not None else self._home_state)

    def _set_registration(self, state: int) -> None:
        self._state.registration = state
        if self._state.creg_n:
            self._urcs(f"+CREG: {state}")
        if self._state.cereg_n:
            self._urcs(f"+CEREG: {state}")

    def _signal_found(self) -> None:
        self._state.signal_known = True

    def _urcs(self, *lines: str) -> None:
        for line in lines:
            self.inject_urc(line)

    # --- input -------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not self._state.booted or self._state.hung:
            self.counts.ignored_bytes += len(data)
            return
        for byte in data:
            self._receive_byte(byte)

    def _receive_byte(self, byte: int) -> None:
        state = self._state
        if state.echo:
            self._send_raw(bytes([byte]))
        if state.pdu is not None:
            self._receive_pdu_byte(byte)
        elif byte == ord("\r"):
            self._command_line(state.line.decode("ascii", errors="replace"))
            state.line.clear()
        elif byte != ord("\n") and len(state.line) < 4096:
            state.line.append(byte)

    def _receive_pdu_byte(self, byte: int) -> None:
        state = self._state
        assert state.pdu is not None
        if byte == CTRL_Z:
            self.counts.pdus_received += 1
            self._inbox.put_nowait(_Submit(bytes(state.pdu), state.text_to, self._answer_delay()))
            state.pdu, state.text_to = None, None
        elif byte == ESC:
            state.pdu, state.text_to = None, None  # cancelled: no answer
        else:
            state.pdu.append(byte)

    def _answer_delay(self) -> float:
        late = self._late_answers
        if late is None:
            return self.settings.submit_delay_s
        self.counts.late_answers += 1
        if late.remaining is not None:
            late.remaining -= 1
            if late.remaining <= 0:
                self._late_answers = None
        return late.delay_s

    def _command_line(self, line: str) -> None:
        start = line.upper().find("AT")  # anything before "AT" is noise
        if start < 0:
            return
        command = line[start:].strip()
        self.commands.append(command)
        self.counts.commands += 1
        if self._on_command is not None:
            self._on_command(command)
        self._inbox.put_nowait(_Command(command))

    # --- answering ---------------------------------------------------------------------------

    async def _respond_forever(self) -> None:
        while True:
            item = await self._inbox.get()
            await self._answer(item)

    async def _answer(self, item: _Input) -> None:
        epoch = self._epoch
        await asyncio.sleep(self._delay_for(item))
        if epoch != self._epoch or self._state.hung:
            return
        self._write_pieces(self._pieces_for(item))

    def _pieces_for(self, item: _Input) -> list[str]:
        if isinstance(item, _Command):
            return self._execute(item.text)
        if item.text_to is not None:
            return self._submit_text(item.text_to, item.data)
        return self._submit(item.data)

    def _delay_for(self, item: _Input) -> float:
        if isinstance(item, _Submit):
            return item.delay_s
        if item.text.upper().startswith("AT+CMGS="):
            return self.settings.prompt_delay_s
        return self.settings.response_delay_s

    def _execute(self, command: str) -> list[str]:
        upper = command.upper()
        name = response_prefix(command)
        if name is None:
            return self._basic(upper[2:])
        handlers: dict[str, Callable[[str], list[str]]] = {
            "+CMEE": self._cmee,
            "+CPIN": self._cpin,
            "+CMGF": self._cmgf,
            "+CREG": self._creg,
            "+CEREG": self._cereg,
            "+CSQ": self._csq,
            "+COPS": self._cops,
            "+CMGS": self._cmgs,
            "+CFUN": self._cfun,
            "+CGMM": lambda _: [_line(self.model), OK],
        }
        handler = handlers.get(name)
        argument = command[2 + len(name) :].strip()
        return handler(argument) if handler is not None else [ERROR]

    def _basic(self, body: str) -> list[str]:
        if body in ("", "Z"):
            return [OK]
        if body in ("E", "E0", "E1"):
            self._state.echo = body == "E1"
            return [OK]
        if body == "I":
            return [_line(f"{self.model} emulated"), OK]
        return [ERROR]

    def _cmee(self, argument: str) -> list[str]:
        if argument in ("=0", "=1", "=2"):
            self._state.cmee = int(argument[1])
            return [OK]
        return [ERROR]

    def _cpin(self, argument: str) -> list[str]:
        sim = self._state.sim
        if argument == "?":
            if sim in ("off", "busy"):
                self.counts.sim_busy_answers += 1
                return [self._cme(14)]
            return [_line(f"+CPIN: {sim}"), OK]
        if not argument.startswith("="):
            return [ERROR]
        return self._enter_pin((split_fields(argument[1:]) or [""])[0])

    def _enter_pin(self, pin: str) -> list[str]:
        sim = self._state.sim
        if sim in ("off", "busy"):
            return [self._cme(14)]
        if sim != "SIM PIN":
            return [self._cme(3 if sim == "READY" else 12)]
        self.counts.pin_attempts += 1
        if pin == self._pin:
            self._pin_attempts_left = 3
            self._state.sim = "busy"
            self._later(self.settings.pin_unlock_s, self._sim_ready)
            return [OK]
        self._pin_attempts_left -= 1
        if not self._pin_attempts_left:
            self._state.sim = "SIM PUK"
        return [self._cme(16)]

    def _cmgf(self, argument: str) -> list[str]:
        if argument in ("=0", "=1"):
            self._state.cmgf = int(argument[1])
            return [OK]
        if argument == "?":
            return [_line(f"+CMGF: {self._state.cmgf}"), OK]
        return [ERROR]

    def _creg(self, argument: str) -> list[str]:
        if argument in ("=0", "=1", "=2"):
            self._state.creg_n = int(argument[1])
            return [OK]
        if argument == "?":
            return [_line(f"+CREG: {self._state.creg_n},{self._state.registration}"), OK]
        return [ERROR]

    def _cereg(self, argument: str) -> list[str]:
        if self.model == "SIM800":
            return [ERROR]
        if argument in ("=0", "=1", "=2"):
            self._state.cereg_n = int(argument[1])
            return [OK]
        if argument == "?":
            return [_line(f"+CEREG: {self._state.cereg_n},{self._state.registration}"), OK]
        return [ERROR]

    def _csq(self, argument: str) -> list[str]:
        rssi = self._rssi if self._state.signal_known else 99
        return [_line(f"+CSQ: {rssi},{0 if rssi != 99 else 99}"), OK]

    def _cops(self, argument: str) -> list[str]:
        if argument != "?":
            return [OK]
        if self._state.registration not in (1, 5):
            return [_line("+COPS: 0"), OK]
        technology = 7 if self.model == "SIM7600" else 0
        return [_line(f'+COPS: 0,0,"{self.operator}",{technology}'), OK]

    def _cfun(self, argument: str) -> list[str]:
        if argument == "?":
            return [_line("+CFUN: 1"), OK]
        if argument == "=1,1" and self._loop is not None:
            self._loop.call_soon(self.power_cycle)
        return [OK]

    def _cmgs(self, argument: str) -> list[str]:
        if self._state.cmgf != 0:
            return self._cmgs_text(argument)
        length = argument[1:]
        if not argument.startswith("=") or not length.isdigit() or not 7 <= int(length) <= 164:
            return [self._cms(304)]
        self._state.pdu = bytearray()
        self._state.pdu_length = int(length)
        return [PROMPT]

    def _cmgs_text(self, argument: str) -> list[str]:
        """Text mode: AT+CMGS=<da>[,<toda>] (quotes optional, as real modems take it)."""
        fields = split_fields(argument[1:]) if argument.startswith("=") else []
        number = fields[0] if fields else ""
        if not number or not all(c.isdigit() or c in "+*#" for c in number):
            return [self._cms(305)]
        self._state.pdu = bytearray()
        self._state.text_to = number
        return [PROMPT]

    # --- submitting --------------------------------------------------------------------------

    def _submit_text(self, number: str, data: bytes) -> list[str]:
        """A text-mode send: `data` is the text, as typed (a PDU's hex, for a confused host)."""
        self.counts.submits += 1
        self.counts.text_mode_sends += 1
        text = data.decode("ascii", errors="replace")
        code = self._network_refusal() or self._scripted_fault() or self._text_fault(text)
        if code is not None:
            return self._send_error(code)
        mr = self._take_mr()
        log.warning("modem_emulator_text_mode_send", number=number, text=text[:40])
        self.counts.parts_accepted += 1
        sms = DeliveredSms(number, text, 1, None, (mr,), Encoding.GSM7, time.time())
        self._record_delivery(sms)
        return [_line(f"+CMGS: {mr}"), OK]

    def _submit(self, data: bytes) -> list[str]:
        self.counts.submits += 1
        try:
            submit = decode_submit(data.decode("ascii"), self._state.pdu_length)
        except (PduError, UnicodeDecodeError) as error:
            log.warning("modem_emulator_bad_pdu", error=str(error))
            return self._send_error(304)
        code = self._network_refusal() or self._scripted_fault() or self._text_fault(submit.text)
        if code is not None:
            return self._send_error(code)
        mr = self._take_mr()
        self._accept(submit, mr)
        if self._hang_on_submit:
            self._hang_on_submit = False
            self.hang()
            return []
        return [_line(f"+CMGS: {mr}"), OK]

    def _send_error(self, code: int) -> list[str]:
        self.counts.send_errors += 1
        return [self._cms(code)]

    def _take_mr(self) -> int:
        mr = self._next_mr
        self._next_mr = (mr + 1) % 256
        return mr

    def _text_fault(self, text: str) -> int | None:
        return next((code for marker, code in self._text_faults.items() if marker in text), None)

    def _network_refusal(self) -> int | None:
        sim = self._state.sim
        if sim != "READY":
            return {"busy": 314, "SIM PIN": 311, "SIM PUK": 316}.get(sim, 310)
        if self._state.registration not in (1, 5):
            return 331
        return None

    def _scripted_fault(self) -> int | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        if fault.after > 0:
            fault.after -= 1
            return None
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.pop(0)
        return fault.code

    def _accept(self, submit: Submit, mr: int) -> None:
        part = AcceptedPart(submit.number, submit, mr, time.time())
        self.parts.append(part)
        self.counts.parts_accepted += 1
        concat = submit.concat
        if concat is None:
            self._deliver([part], None)
            return
        key = (submit.number, concat.reference, concat.total)
        pieces = self._partial.setdefault(key, {})
        if concat.sequence in pieces:
            self.counts.duplicate_parts += 1
        pieces[concat.sequence] = part
        if len(pieces) == concat.total:
            del self._partial[key]
            self._deliver([pieces[i] for i in sorted(pieces)], concat.reference)

    def _deliver(self, parts: list[AcceptedPart], reference: int | None) -> None:
        sms = DeliveredSms(
            number=parts[0].number,
            text="".join(p.submit.text for p in parts),
            parts=len(parts),
            reference=reference,
            message_references=tuple(p.message_reference for p in parts),
            encoding=parts[0].submit.encoding,
            time_utc=time.time(),
        )
        self._record_delivery(sms)

    def _record_delivery(self, sms: DeliveredSms) -> None:
        self.delivered.append(sms)
        self.counts.messages_delivered += 1
        log.info("modem_emulator_delivered", number=sms.number, parts=sms.parts)
        if self._on_delivered is not None:
            self._on_delivered(sms)

    # --- output ------------------------------------------------------------------------------

    def _cme(self, code: int) -> str:
        return self._error("+CME ERROR", code, CME_ERRORS.get(code))

    def _cms(self, code: int) -> str:
        return self._error("+CMS ERROR", code, CMS_ERRORS.get(code))

    def _error(self, prefix: str, code: int, entry: ErrorCode | None) -> str:
        if self._state.cmee == 0:
            return ERROR
        if self._state.cmee == 2 and entry is not None:
            return _line(f"{prefix}: {entry.name}")
        return _line(f"{prefix}: {code}")

    def _write_pieces(self, pieces: list[str], *, with_urcs: bool = True) -> bool:
        """Write an answer (with queued and random URCs inside); False if nobody listens."""
        state = self._state
        if not state.booted or state.hung:
            return False
        if with_urcs:
            pieces = self._with_urcs(pieces)
        self._send_raw("".join(pieces).encode("ascii"))
        return True

    def _with_urcs(self, pieces: list[str]) -> list[str]:
        pieces = list(pieces)
        queued, self._state.queued_urcs = self._state.queued_urcs, []
        for urc in queued:
            pieces.insert(min(1, len(pieces)), _line(urc))
        if pieces and self._random.random() < self.settings.urc_probability:
            pieces.insert(self._random.randint(0, len(pieces)), _line(self._random_urc()))
            queued.append("random")
        self.counts.urcs += len(queued)
        return pieces

    def _random_urc(self) -> str:
        choices = [
            f'+CMTI: "SM",{self._random.randint(1, 30)}',
            "RING",
            '+CLIP: "+4915112345678",145,"",0,"",0',
            "+CFUN: 1",
            "SMS Ready",
        ]
        if self._state.sim == "READY":
            choices.append("+CPIN: READY")
        if self._state.creg_n:
            choices.append(f"+CREG: {self._state.registration}")
        return self._random.choice(choices)

    def _send_raw(self, data: bytes) -> None:
        if self._master is None or not data:
            return
        self._tx += data
        self._flush()

    def _flush(self) -> None:
        master = self._master
        if master is None or self._loop is None:
            return
        try:
            written = os.write(master, self._tx) if self._tx else 0
        except BlockingIOError:
            written = 0
        del self._tx[:written]
        if self._tx and not self._writing:
            self._writing = True
            self._loop.add_writer(master, self._flush)
        elif not self._tx and self._writing:
            self._writing = False
            self._loop.remove_writer(master)


def _line(text: str) -> str:
    return f"\r\n{text}\r\n"


def _drain(queue: asyncio.Queue[_Input]) -> None:
    while not queue.empty():
        queue.get_nowait()


# --- command line ---------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m appliance.sms.emulator", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--link", help="maintain this symlink to the pty (like /dev/serial/by-id)")
    parser.add_argument("--model", choices=MODELS, default="SIM800")
    parser.add_argument("--pin", help="the SIM asks for this PIN")
    parser.add_argument("--roaming", action="store_true")
    parser.add_argument("--fast", action="store_true", help="shrink every delay to a few ms")
    parser.add_argument("--urc-probability", type=float, default=0.0)
    parser.add_argument("--fail-sends", metavar="CODE[:COUNT]", help="+CMS error for sends")
    parser.add_argument(
        "--commands", action="store_true", help="print each command: <time.monotonic()> > <line>"
    )
    parser.add_argument("--seconds", type=float, help="stop after this long (default: never)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    base = EmulatorSettings.fast() if args.fast else EmulatorSettings()
    settings = dataclasses.replace(base, urc_probability=args.urc_probability)
    modem = EmulatedModem(
        link_path=args.link,
        settings=settings,
        model=args.model,
        pin=args.pin,
        roaming=args.roaming,
        seed=args.seed,
        on_delivered=lambda sms: print(sms.describe(), flush=True),
        on_command=_print_command if args.commands else None,
    )
    if args.fail_sends:
        code, _, count = args.fail_sends.partition(":")
        modem.fail_sends(int(code), int(count) if count else None)
    async with modem:
        where = modem.path if args.link is None else f"{modem.path} (symlink {args.link})"
        print(f"emulated {args.model} on {where}", flush=True)
        if args.seconds is None:
            await asyncio.Event().wait()
        await asyncio.sleep(args.seconds)


def _print_command(line: str) -> None:
    print(f"{time.monotonic():.6f} > {line}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    configure_logging("info")  # to stderr: stdout shows the SMS
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
