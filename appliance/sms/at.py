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

The code tables say what an error means for the sender (see `Disposition`). Codes not in the
tables (vendor codes 512 and up, e.g. +CMS ERROR: 515 "please wait, init in progress") are
transient, and so is a bare ERROR (verbose errors are switched on with AT+CMEE=1 first).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from appliance.sms.errors import CommandRejected, ModemError, ModemRefused

MAX_LINE_BYTES = 4096


class Disposition(Enum):
    """What an error result code means for the message being sent."""

    RETRY = "retry"  # transient: the same command later will likely work
    GIVE_UP_MESSAGE = "give up on the message"  # this message is refused for good
    GIVE_UP_MODEM = "modem needs a human"  # SIM/PIN/SMSC/subscription: nothing can be sent


@dataclass(frozen=True)
class ErrorCode:
    name: str
    disposition: Disposition


_R, _M, _H = Disposition.RETRY, Disposition.GIVE_UP_MESSAGE, Disposition.GIVE_UP_MODEM

# +CME ERROR codes, TS 27.007 9.2 (only those a modem used for SMS plausibly returns).
CME_ERRORS: dict[int, ErrorCode] = {
    code: ErrorCode(name, disposition)
    for code, name, disposition in [
        (0, "phone failure", _R),
        (3, "operation not allowed", _R),
        (4, "operation not supported", _H),
        (5, "PH-SIM PIN required", _H),
        (10, "SIM not inserted", _H),
        (11, "SIM PIN required", _H),
        (12, "SIM PUK required", _H),
        (13, "SIM failure", _H),
        (14, "SIM busy", _R),
        (15, "SIM wrong", _H),
        (16, "incorrect password", _H),
        (17, "SIM PIN2 required", _H),
        (18, "SIM PUK2 required", _H),
        (20, "memory full", _R),
        (23, "memory failure", _R),
        (24, "text string too long", _M),
        (25, "invalid characters in text string", _M),
        (26, "dial string too long", _M),
        (27, "invalid characters in dial string", _M),
        (30, "no network service", _R),
        (31, "network timeout", _R),
        (32, "network not allowed - emergency calls only", _R),
        (100, "unknown", _R),
        (103, "illegal MS", _H),
        (106, "illegal ME", _H),
        (111, "PLMN not allowed", _R),
        (112, "location area not allowed", _R),
        (113, "roaming not allowed in this location area", _R),
        (515, "please wait, init or command processing in progress", _R),
    ]
}

# +CMS ERROR codes, TS 27.005 3.2.5: 0-127 network causes (TS 24.011), 128-255 TP-FCS
# (TS 23.040), 300-500 modem errors, 512 and up vendor specific.
CMS_ERRORS: dict[int, ErrorCode] = {
    code: ErrorCode(name, disposition)
    for code, name, disposition in [
        (1, "unassigned number", _M),
        (8, "operator determined barring", _H),
        (10, "call barred", _H),
        (17, "network failure", _R),
        (21, "short message transfer rejected", _M),
        (22, "memory capacity exceeded", _R),
        (27, "destination out of service", _R),
        (28, "unidentified subscriber", _M),
        (29, "facility rejected", _M),
        (30, "unknown subscriber", _M),
        (38, "network out of order", _R),
        (41, "temporary failure", _R),
        (42, "congestion", _R),
        (47, "resources unavailable, unspecified", _R),
        (50, "requested facility not subscribed", _H),
        (69, "requested facility not implemented", _H),
        (81, "invalid short message transfer reference value", _R),
        (95, "invalid message, unspecified", _M),
        (96, "invalid mandatory information", _M),
        (97, "message type non-existent or not implemented", _M),
        (98, "message not compatible with short message protocol state", _R),
        (99, "information element non-existent or not implemented", _M),
        (111, "protocol error, unspecified", _R),
        (127, "interworking, unspecified", _R),
        (128, "telematic interworking not supported", _M),
        (143, "unspecified TP-PID error", _M),
        (144, "data coding scheme not supported", _M),
        (159, "unspecified TP-DCS error", _M),
        (176, "TPDU not supported", _M),
        (192, "SC busy", _R),
        (193, "no SC subscription", _H),
        (194, "SC system failure", _R),
        (195, "invalid SME address", _M),
        (196, "destination SME barred", _M),
        (197, "SM rejected-duplicate SM", _M),
        (198, "TP-VPF not supported", _M),
        (199, "TP-VP not supported", _M),
        (255, "unspecified error cause", _R),
        (300, "ME failure", _R),
        (301, "SMS service of ME reserved", _R),
        (302, "operation not allowed", _R),
        (303, "operation not supported", _H),
        (304, "invalid PDU mode parameter", _M),
        (305, "invalid text mode parameter", _M),
        (310, "SIM not inserted", _H),
        (311, "SIM PIN required", _H),
        (312, "PH-SIM PIN required", _H),
        (313, "SIM failure", _H),
        (314, "SIM busy", _R),
        (315, "SIM wrong", _H),
        (316, "SIM PUK required", _H),
        (317, "SIM PIN2 required", _H),
        (318, "SIM PUK2 required", _H),
        (320, "memory failure", _R),
        (322, "memory full", _R),
        (330, "SMSC address unknown", _H),
        (331, "no network service", _R),
        (332, "network timeout", _R),
        (500, "unknown error", _R),
        (512, "vendor: SIM not ready or MM establishment failure", _R),
        (515, "please wait, init or command processing in progress", _R),
    ]
}

_CME_BY_NAME = {entry.name.lower(): code for code, entry in CME_ERRORS.items()}
_CMS_BY_NAME = {entry.name.lower(): code for code, entry in CMS_ERRORS.items()}


class ResultKind(Enum):
    OK = "OK"
    ERROR = "ERROR"
    CME = "CME"
    CMS = "CMS"


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
        entry = self._entry()
        return entry.name if entry is not None else self.line

    @property
    def disposition(self) -> Disposition:
        """Unknown codes and a bare ERROR are transient (the queue's give-up time bounds them)."""
        entry = self._entry()
        return entry.disposition if entry is not None else Disposition.RETRY

    def _entry(self) -> ErrorCode | None:
        if self.code is None:
            return None
        table = CME_ERRORS if self.kind is ResultKind.CME else CMS_ERRORS
        return table.get(self.code) if self.kind in (ResultKind.CME, ResultKind.CMS) else None


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
    for prefix, kind, by_name in (
        ("+CME ERROR:", ResultKind.CME, _CME_BY_NAME),
        ("+CMS ERROR:", ResultKind.CMS, _CMS_BY_NAME),
    ):
        if upper.startswith(prefix):
            detail = line[len(prefix) :].strip()
            code = int(detail) if detail.isdigit() else by_name.get(detail.lower())
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
