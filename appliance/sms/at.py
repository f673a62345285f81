"""AT command responses (V.250, 3GPP TS 27.007/27.005), pure: bytes in, events out.

`AtParser.feed(bytes)` returns what the modem said, line by line:

- `Echo`   the modem repeating the pending command (echo stays on until ATE0 takes effect)
- `Info`   an information response belonging to the pending command ("+CSQ: 18,99")
- `Prompt` the "> " that asks for the PDU after AT+CMGS (it has no line end)
- `Final`  the result code that ends the pending command: OK, ERROR, +CME ERROR, +CMS ERROR
- `Urc`    an unsolicited result code ("+CMTI", "RING", "+CREG: 1", "SMS Ready", ...)
- `Stray`  a result code with no command pending (the late answer to a command given up on)

URCs may arrive anywhere between lines, also between "> " and "+CMGS:". The line after +CMT,
+CDS or +CBM is that URC's data, unless it is a result code (a cut-off URC must not swallow
the OK of the command in flight). A line is the
pending command's only if its prefix is the command's own ("+CSQ" for AT+CSQ) or it has a
prefix no URC uses (the text lines of ATI); "+CREG: <stat>" with a single field is the
unsolicited form even while AT+CREG? is pending (the session sets AT+CREG=1, so the answer
to AT+CREG? always has two fields: <n>,<stat>). "+CPIN: READY" arriving late while AT+CPIN?
is pending is taken as the answer, which says the same thing.

Bytes are read as ASCII (anything else becomes U+FFFD); control characters are dropped, so
boot noise and an echoed Ctrl-Z or ESC never end up in a line.

What an error result code means for the sender: appliance.sms.result_codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from appliance.sms.errors import CommandRejected, ModemError, ModemRefused
from appliance.sms.result_codes import (
    Disposition,
    ResultKind,
    code_entry,
    code_named,
    disposition_of,
)

MAX_LINE_BYTES = 4096


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Echo:
    line: str


@dataclass(frozen=True)
class Info:
    line: str

    @property
    def value(self) -> str:
        return split_line(self.line)[1]


@dataclass(frozen=True)
class Prompt:
    pass


@dataclass(frozen=True)
class Final:
    kind: ResultKind
    code: int | None
    line: str

    @property
    def ok(self) -> bool:
        return self.kind is ResultKind.OK

    @property
    def description(self) -> str:
        entry = code_entry(self.kind, self.code)
        return entry.name if entry is not None else self.line

    @property
    def disposition(self) -> Disposition:
        """Unknown codes and a bare ERROR are transient (the queue's give-up time bounds them)."""
        return disposition_of(self.kind, self.code)


@dataclass(frozen=True)
class Urc:
    name: str  # "+CMTI", "RING", "SMS Ready"
    value: str  # after "<name>: ", "" for a bare line
    line: str
    data: str | None = None  # the second line of +CMT / +CDS / +CBM

    @property
    def fields(self) -> list[str]:
        return split_fields(self.value)


@dataclass(frozen=True)
class Stray:
    line: str


Event = Echo | Info | Prompt | Final | Urc | Stray

_URC_ONLY = {
    name.upper()
    for name in [
        "RING",
        "+CRING",
        "+CLIP",
        "+CMTI",
        "+CMT",
        "+CDSI",
        "+CDS",
        "+CBM",
        "+CBMI",
        "+CUSD",
        "+CIEV",
        "+CGEV",
        "+CTZV",
        "+CSQN",
        "+STIN",
        "+QIND",
        "+PBREADY",
        "*PSUTTZ",
        "*ATREADY",
        "^SYSSTART",
        "^RSSI",
        "^MODE",
        "^BOOT",
        "^SRVST",
        "^SIMST",
        "RDY",
        "Call Ready",
        "SMS Ready",
        "SMS DONE",
        "PB DONE",
        "NORMAL POWER DOWN",
        "UNDER-VOLTAGE POWER DOWN",
        "UNDER-VOLTAGE WARNNING",  # sic, SIMCom
        "UNDER-VOLTAGE WARNING",
        "OVER-VOLTAGE POWER DOWN",
        "OVER-VOLTAGE WARNNING",
        "OVER-VOLTAGE WARNING",
    ]
}
REGISTRATION_PREFIXES = frozenset({"+CREG", "+CEREG", "+CGREG", "+C5GREG"})
_ALSO_ANSWERS = {"+CPIN", "+CFUN", "+CSQ", "+COPS", *REGISTRATION_PREFIXES}
_URC_WITH_DATA = {"+CMT", "+CDS", "+CBM"}
_FINAL_WORDS = {
    "OK": ResultKind.OK,
    "ERROR": ResultKind.ERROR,
    "NO CARRIER": ResultKind.ERROR,
    "BUSY": ResultKind.ERROR,
    "NO ANSWER": ResultKind.ERROR,
    "NO DIALTONE": ResultKind.ERROR,
}


@dataclass(frozen=True)
class _Pending:
    command: str
    prefix: str | None
    data: str | None


class AtParser:
    """Splits modem output into events; `begin()` tells it which command is pending."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pending: _Pending | None = None
        self._urc_awaiting_data: Urc | None = None

    @property
    def pending(self) -> str | None:
        return self._pending.command if self._pending is not None else None

    def begin(self, command: str, data: str | None = None) -> None:
        """`command` (without CR) was written; `data` is the PDU hex that follows the prompt."""
        self._pending = _Pending(command, response_prefix(command), data)

    def abandon(self) -> None:
        """The pending command was given up on; its late answer will come out as Stray."""
        self._pending = None

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += chunk
        events: list[Event] = []
        while True:
            self._skip_line_ends()
            if self._buffer.startswith(b"> "):
                del self._buffer[:2]
                events.append(Prompt())
                continue
            raw = self._take_line()
            if raw is None:
                return events
            line = clean_line(raw)
            event = self._classify(line) if line else None
            if event is not None:
                events.append(event)

    def _skip_line_ends(self) -> None:
        start = 0
        while start < len(self._buffer) and self._buffer[start] in b"\r\n":
            start += 1
        del self._buffer[:start]

    def _take_line(self) -> bytes | None:
        ends = [i for i in (self._buffer.find(b"\r"), self._buffer.find(b"\n")) if i >= 0]
        if not ends:
            if len(self._buffer) < MAX_LINE_BYTES:
                return None
            ends = [len(self._buffer)]  # runaway noise: cut it off as a line
        end = min(ends)
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return raw

    def _classify(self, line: str) -> Event | None:
        if self._urc_awaiting_data is not None and parse_final(line) is None:
            urc = replace(self._urc_awaiting_data, data=line)
            self._urc_awaiting_data = None
            return urc
        self._urc_awaiting_data = None  # a result code is no data line: that URC is dropped
        pending = self._pending
        if pending is not None and _is_echo(line, pending):
            return Echo(line)
        final = parse_final(line)
        if final is not None:
            if pending is None:
                return Stray(line)
            self._pending = None
            return final
        name, value = split_line(line)
        if _is_solicited(name, value, pending):
            return Info(line)
        urc = Urc(name, value, line)
        if name.upper() in _URC_WITH_DATA:
            self._urc_awaiting_data = urc
            return None
        return urc


def _is_echo(line: str, pending: _Pending) -> bool:
    echoes = (pending.command, pending.data) if pending.data else (pending.command,)
    return any(line.upper() == echo.upper() for echo in echoes)


def _is_solicited(name: str, value: str, pending: _Pending | None) -> bool:
    upper = name.upper()
    if pending is None or upper in _URC_ONLY:
        return False
    if upper == pending.prefix:
        return not (upper in REGISTRATION_PREFIXES and len(split_fields(value)) == 1)
    return upper not in _ALSO_ANSWERS


# --- pure helpers ---------------------------------------------------------------------------


def clean_line(raw: bytes) -> str:
    text = raw.decode("ascii", errors="replace")
    return "".join(char for char in text if char >= " " and char != "\x7f").strip()


def response_prefix(command: str) -> str | None:
    """ "+CSQ" for "AT+CSQ", "+CREG" for "AT+CREG?", None for basic commands such as ATI."""
    body = command.strip()[2:].upper()
    if not body or body[0] not in "+^*$%#":
        return None
    for index, char in enumerate(body):
        if char in "=?":
            return body[:index]
    return body


def split_line(line: str) -> tuple[str, str]:
    """("+CREG", "0,1") for "+CREG: 0,1"; (line, "") for a bare line such as "RING"."""
    if line[:1] in "+^*$%#" and ":" in line:
        name, _, value = line.partition(":")
        return name.strip(), value.strip()
    return line, ""


def split_fields(value: str) -> list[str]:
    """Comma-separated fields, quotes removed; commas inside quotes are kept."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if current or fields:
        fields.append("".join(current).strip())
    return fields


def parse_final(line: str) -> Final | None:
    upper = line.upper()
    if upper in _FINAL_WORDS:
        return Final(_FINAL_WORDS[upper], None, line)
    for prefix, kind in (("+CME ERROR:", ResultKind.CME), ("+CMS ERROR:", ResultKind.CMS)):
        if upper.startswith(prefix):
            detail = line[len(prefix) :].strip()
            code = int(detail) if detail.isdigit() else code_named(kind, detail)
            return Final(kind, code, line)
    return None


def error_for(command: str, final: Final) -> ModemError:
    """The typed exception for an error result code (see appliance.sms.errors)."""
    kinds: dict[Disposition, type[ModemError]] = {
        Disposition.RETRY: ModemError,
        Disposition.GIVE_UP_MESSAGE: CommandRejected,
        Disposition.GIVE_UP_MODEM: ModemRefused,
    }
    error_type = kinds[final.disposition]
    return error_type(command, final.kind.value, final.code, final.description, line=final.line)


def info_value(lines: Iterable[str], prefix: str) -> str | None:
    """The value of the last information line with `prefix` ("+CSQ"), if any."""
    found = None
    for line in lines:
        name, value = split_line(line)
        if name.upper() == prefix.upper():
            found = value
    return found


def registration_status(value: str, *, solicited: bool) -> int | None:
    """<stat> of "+CREG: <n>,<stat>[,...]" (answer) or "+CREG: <stat>[,...]" (URC)."""
    fields = split_fields(value)
    index = 1 if solicited else 0
    return _int(fields, index)


def signal_quality(value: str) -> tuple[int, int] | None:
    """(rssi 0-31 or 99 unknown, ber 0-7 or 99) of "+CSQ: <rssi>,<ber>"."""
    fields = split_fields(value)
    rssi, ber = _int(fields, 0), _int(fields, 1)
    return (rssi, ber) if rssi is not None and ber is not None else None


def operator_name(value: str) -> str | None:
    """<oper> of "+COPS: <mode>,<format>,<oper>[,<AcT>]" (None when not registered)."""
    fields = split_fields(value)
    return fields[2] if len(fields) >= 3 and fields[2] else None


def message_reference(value: str) -> int | None:
    """<mr> of "+CMGS: <mr>"."""
    return _int(split_fields(value), 0)


def leading_int(value: str) -> int | None:
    """The first field as a number: <mode> of "+CMGF: <mode>", <n> of "+CREG: <n>,<stat>"."""
    return _int(split_fields(value), 0)


def _int(fields: Sequence[str], index: int) -> int | None:
    if index < len(fields) and fields[index].isdigit():
        return int(fields[index])
    return None
