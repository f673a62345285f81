"""The emulated modem's answers to AT commands (everything but the bytes after the "> "
prompt, which modem/session.py takes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.rig.modem.records import (
    ERROR,
    OK,
    PROMPT,
    EmulatorSettings,
    ModemCounts,
    ModemState,
    as_line,
)
from appliance.sms.at import response_prefix, split_fields
from appliance.sms.result_codes import CME_ERRORS, CMS_ERRORS, ErrorCode


class AtCommands:
    """Command handling for EmulatedModem (mixed into it): each handler returns the pieces of
    the answer and changes the modem's state the way the command does."""

    model: str
    operator: str
    settings: EmulatorSettings
    counts: ModemCounts
    _state: ModemState
    _pin: str | None
    _pin_attempts_left: int
    _rssi: int
    _loop: asyncio.AbstractEventLoop | None

    if TYPE_CHECKING:

        def _later(self, delay_s: float, callback: Callable[[], None]) -> None: ...

        def _sim_ready(self) -> None: ...

        def power_cycle(self) -> None: ...

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
            "+CGMM": lambda _: [as_line(self.model), OK],
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
            return [as_line(f"{self.model} emulated"), OK]
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
            return [as_line(f"+CPIN: {sim}"), OK]
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
            return [as_line(f"+CMGF: {self._state.cmgf}"), OK]
        return [ERROR]

    def _creg(self, argument: str) -> list[str]:
        if argument in ("=0", "=1", "=2"):
            self._state.creg_n = int(argument[1])
            return [OK]
        if argument == "?":
            return [as_line(f"+CREG: {self._state.creg_n},{self._state.registration}"), OK]
        return [ERROR]

    def _cereg(self, argument: str) -> list[str]:
        if self.model == "SIM800":
            return [ERROR]
        if argument in ("=0", "=1", "=2"):
            self._state.cereg_n = int(argument[1])
            return [OK]
        if argument == "?":
            return [as_line(f"+CEREG: {self._state.cereg_n},{self._state.registration}"), OK]
        return [ERROR]

    def _csq(self, argument: str) -> list[str]:
        rssi = self._rssi if self._state.signal_known else 99
        return [as_line(f"+CSQ: {rssi},{0 if rssi != 99 else 99}"), OK]

    def _cops(self, argument: str) -> list[str]:
        if argument != "?":
            return [OK]
        if self._state.registration not in (1, 5):
            return [as_line("+COPS: 0"), OK]
        technology = 7 if self.model == "SIM7600" else 0
        return [as_line(f'+COPS: 0,0,"{self.operator}",{technology}'), OK]

    def _cfun(self, argument: str) -> list[str]:
        if argument == "?":
            return [as_line("+CFUN: 1"), OK]
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

    def _cme(self, code: int) -> str:
        return self._error("+CME ERROR", code, CME_ERRORS.get(code))

    def _cms(self, code: int) -> str:
        return self._error("+CMS ERROR", code, CMS_ERRORS.get(code))

    def _error(self, prefix: str, code: int, entry: ErrorCode | None) -> str:
        if self._state.cmee == 0:
            return ERROR
        if self._state.cmee == 2 and entry is not None:
            return as_line(f"{prefix}: {entry.name}")
        return as_line(f"{prefix}: {code}")
