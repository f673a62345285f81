"""EmulatedModem: the emulated GSM modem on a pty (plugging, bytes in, answers out, faults).
The package docstring (appliance/rig/modem/__init__.py) describes what it does."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import structlog

from appliance.rig.modem.boot import PowerOnSequence
from appliance.rig.modem.commands import AtCommands
from appliance.rig.modem.network import SmsCenter
from appliance.rig.modem.records import (
    MODELS,
    OK,
    AcceptedPart,
    DeliveredSms,
    EmulatorSettings,
    ModemCounts,
    ModemState,
    as_line,
)
from appliance.rig.pty import PtyPort
from appliance.sms.errors import PduError
from appliance.sms.pdu import decode_submit

log = structlog.get_logger(__name__)

CTRL_Z = 0x1A
ESC = 0x1B


@dataclass
class _LateAnswers:
    delay_s: float
    remaining: int | None  # None: every send from now on


@dataclass(frozen=True)
class _Command:
    text: str


@dataclass(frozen=True)
class _Submit:
    data: bytes
    text_to: str | None = None  # text mode: the destination, `data` is the text
    delay_s: float = 0.0  # until the +CMGS answer


_Input = _Command | _Submit


class EmulatedModem(AtCommands, PowerOnSequence):
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
        self.network = SmsCenter(self.counts, on_delivered)
        self.commands: list[str] = []
        self._pin = pin
        self._pin_attempts_left = 3
        self._rssi = rssi
        self._home_state = 5 if roaming else 1
        self._network_state: int | None = None  # forced by set_registration
        self._on_command = on_command
        self._random = random.Random(seed)
        self._late_answers: _LateAnswers | None = None
        self._hang_on_submit = False
        self._state = ModemState()
        self._epoch = 0
        self._inbox: asyncio.Queue[_Input] = asyncio.Queue()
        self._port = PtyPort(self.link_path, "emulated modem")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._responder: asyncio.Task[None] | None = None
        self._replug_timer: asyncio.TimerHandle | None = None

    @property
    def delivered(self) -> list[DeliveredSms]:
        """Every whole message, as the recipient's phone would show it."""
        return self.network.delivered

    @property
    def parts(self) -> list[AcceptedPart]:
        return self.network.parts

    # --- plugging ----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._port.path

    @property
    def plugged_in(self) -> bool:
        return self._port.plugged_in

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
        self._loop = asyncio.get_running_loop()
        self._port.plug(self._on_readable)  # raw: the modem echoes, not the kernel
        self._responder = self._loop.create_task(self._respond_forever())

    def _close_pty(self) -> None:
        self._port.unplug()
        if self._responder is not None:
            self._responder.cancel()
            self._responder = None

    # --- faults and conditions ---------------------------------------------------------------

    def fail_sends(self, code: int, count: int | None = 1, *, after: int = 0) -> None:
        """After `after` good sends, the next `count` sends (None: all) get +CMS ERROR: code."""
        self.network.fail_sends(code, count, after)

    def fail_text(self, containing: str, code: int = 42) -> None:
        """Every part whose text contains `containing` gets +CMS ERROR: code (42, congestion,
        is transient: the host retries), until `clear_faults()`."""
        self.network.fail_text(containing, code)

    def answer_submits_late(self, delay_s: float, count: int | None = 1) -> None:
        """The next `count` sends (None: all) are delivered as usual, but their +CMGS answer
        comes `delay_s` after the PDU (a slow network acknowledgement); commands sent
        meanwhile are answered after it, in order."""
        self._late_answers = _LateAnswers(delay_s, count)

    def clear_faults(self) -> None:
        self.network.clear_faults()
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
        if self._write_pieces([as_line(line)], with_urcs=False):
            self.counts.urcs += 1

    def queue_urc(self, line: str) -> None:
        """An unsolicited line inside the next answer, right after its first piece (after
        the "> " prompt for AT+CMGS, between an information line and OK otherwise)."""
        self._state.queued_urcs.append(line)

    # --- power and timers --------------------------------------------------------------------

    def _power_on(self) -> None:
        self._epoch += 1
        self._state = ModemState()
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

    def _urcs(self, *lines: str) -> None:
        for line in lines:
            self.inject_urc(line)

    # --- input -------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        data = self._port.read()
        if data is None:
            return
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

    # --- submitting --------------------------------------------------------------------------

    def _submit_text(self, number: str, data: bytes) -> list[str]:
        """A text-mode send: `data` is the text, as typed (a PDU's hex, for a confused host)."""
        self.counts.submits += 1
        self.counts.text_mode_sends += 1
        text = data.decode("ascii", errors="replace")
        code = self._network_refusal() or self.network.refusal(text)
        if code is not None:
            return self._send_error(code)
        mr = self.network.accept_text(number, text)
        return [as_line(f"+CMGS: {mr}"), OK]

    def _submit(self, data: bytes) -> list[str]:
        self.counts.submits += 1
        try:
            submit = decode_submit(data.decode("ascii"), self._state.pdu_length)
        except (PduError, UnicodeDecodeError) as error:
            log.warning("modem_emulator_bad_pdu", error=str(error))
            return self._send_error(304)
        code = self._network_refusal() or self.network.refusal(submit.text)
        if code is not None:
            return self._send_error(code)
        mr = self.network.accept(submit)
        if self._hang_on_submit:
            self._hang_on_submit = False
            self.hang()
            return []
        return [as_line(f"+CMGS: {mr}"), OK]

    def _send_error(self, code: int) -> list[str]:
        self.counts.send_errors += 1
        return [self._cms(code)]

    def _network_refusal(self) -> int | None:
        sim = self._state.sim
        if sim != "READY":
            return {"busy": 314, "SIM PIN": 311, "SIM PUK": 316}.get(sim, 310)
        if self._state.registration not in (1, 5):
            return 331
        return None

    # --- output ------------------------------------------------------------------------------

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
            pieces.insert(min(1, len(pieces)), as_line(urc))
        if pieces and self._random.random() < self.settings.urc_probability:
            pieces.insert(self._random.randint(0, len(pieces)), as_line(self._random_urc()))
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
        if data:
            self._port.write(data)


def _drain(queue: asyncio.Queue[_Input]) -> None:
    while not queue.empty():
        queue.get_nowait()
