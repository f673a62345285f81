"""The error result codes of a modem (3GPP TS 27.007 +CME ERROR, TS 27.005 +CMS ERROR), pure:
what each code is called and what it means for the message being sent (`Disposition`).

Codes not in the tables (vendor codes 512 and up, e.g. +CMS ERROR: 515 "please wait, init in
progress") are transient, and so is a bare ERROR (verbose errors are switched on with AT+CMEE=1
first): see `disposition_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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


def code_entry(kind: ResultKind, code: int | None) -> ErrorCode | None:
    """The table entry for +CME / +CMS ERROR `code` (None: no code, another kind, unknown)."""
    if code is None:
        return None
    if kind is ResultKind.CME:
        return CME_ERRORS.get(code)
    if kind is ResultKind.CMS:
        return CMS_ERRORS.get(code)
    return None


def code_named(kind: ResultKind, name: str) -> int | None:
    """The code of a verbose error ("+CME ERROR: SIM busy" -> 14), if the table knows it."""
    by_name = _CME_BY_NAME if kind is ResultKind.CME else _CMS_BY_NAME
    return by_name.get(name.lower())


def disposition_of(kind: ResultKind, code: int | None) -> Disposition:
    """Unknown codes and a bare ERROR are transient (the queue's give-up time bounds them)."""
    found = code_entry(kind, code)
    return found.disposition if found is not None else Disposition.RETRY
