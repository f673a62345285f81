"""One exception root for SMS, shaped around what the sender should do with the message.

    SmsError                      retry = True: the same message may go through later, unchanged
    ├── MessageRejected           retry = False: this message will never go; give up on it
    │   ├── PduError              the text or number cannot be encoded (or a PDU cannot be decoded)
    │   └── CommandRejected       the modem/network refused it (+CMS 21, 28, 29, 96, 304, ...)
    ├── ModemUnusable             retry = False: nothing can be sent until a human acts (no SIM,
    │   └── ModemRefused          PIN/PUK, SMSC unknown, barred); keep the messages, show it
    │       └── PinRejected       the configured PIN was refused: it is never tried again
    ├── ModemError                the modem answered with a transient error (+CMS 38, 41, 42, 331)
    ├── ModemNotReady             not registered / no signal / SIM busy by the deadline
    └── ModemGone                 the port vanished or the modem missed a deadline (hung); the
        └── SendTimeout           session is dead and the link reopens the port

CommandRejected and ModemRefused are also ModemErrors (they carry the command and result code).
`maybe_sent` is True when the PDU had been written before the failure (the SMS may have left:
a retry can duplicate it). `parts_done` is the index of the first part of a multipart message
not known to be sent: resend with `first_part=parts_done` to avoid repeating earlier parts.
"""

from __future__ import annotations

from appliance.errors import ApplianceError


class SmsError(ApplianceError):
    """Root of every SMS error. `retry`: sending the same message again later may succeed."""

    retry: bool = True

    def __init__(self, message: str, *, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent
        self.parts_done = 0


class MessageRejected(SmsError):
    """This message can never be sent as it is: give up on it (visibly)."""

    retry = False


class ModemUnusable(SmsError):
    """The modem or SIM needs a human (SIM missing, PIN, SMSC, subscription); keep the messages."""

    retry = False


class PduError(MessageRejected, ValueError):
    """Text or number cannot be encoded as SMS-SUBMIT, or bytes are not a valid SMS-SUBMIT."""


class ModemError(SmsError):
    """The modem answered `command` with an error result code (transient unless subclassed).

    `kind` is "ERROR", "CME" or "CMS"; `code` the numeric code (None for a bare ERROR or an
    unknown verbose text); `description` the name from the code tables in `at.py`.
    """

    def __init__(
        self, command: str, kind: str, code: int | None, description: str, *, line: str = ""
    ) -> None:
        label = kind if code is None else f"{kind} {code}"
        super().__init__(f"{command} failed: {label} ({description})")
        self.command = command
        self.kind = kind
        self.code = code
        self.description = description
        self.line = line


class CommandRejected(ModemError, MessageRejected):
    """A permanent error for this message (e.g. +CMS ERROR: 21 short message rejected)."""


class ModemRefused(ModemError, ModemUnusable):
    """A permanent error of the modem/SIM (e.g. +CMS ERROR: 310 SIM not inserted)."""


class PinRejected(ModemRefused):
    """The SIM refused the configured PIN (or wants a PUK); the link stops using that PIN."""


class ModemNotReady(SmsError):
    """Not registered, no usable signal, or SIM not ready by a deadline; try again later."""


class ModemGone(SmsError):
    """The port vanished, was closed, or the modem missed a deadline; the session is dead."""


class SendTimeout(ModemGone):
    """No final answer to AT+CMGS within the send deadline (`maybe_sent` says if the PDU left)."""
