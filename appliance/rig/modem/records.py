"""The emulated modem's settings, what it counts and what it delivers, and the state a power
cycle resets."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from appliance.sms.pdu import Encoding, Submit

OK = "\r\nOK\r\n"
ERROR = "\r\nERROR\r\n"
PROMPT = "\r\n> "
MODELS = ("SIM800", "SIM7600")


def as_line(text: str) -> str:
    return f"\r\n{text}\r\n"


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
class ModemState:
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
