"""The network behind the emulated modem: message references, scripted refusals, and the
reassembly of concatenated parts into the whole messages a recipient's phone would show."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from appliance.rig.modem.records import AcceptedPart, DeliveredSms, ModemCounts
from appliance.sms.pdu import Encoding, Submit

log = structlog.get_logger(__name__)


@dataclass
class _SendFault:
    code: int
    remaining: int | None  # None: every send from now on
    after: int  # successful sends first


class SmsCenter:
    """Takes the parts the modem submits; `delivered` holds every whole message, `parts` every
    accepted part. `on_delivered(sms)` is called for each whole message."""

    def __init__(
        self, counts: ModemCounts, on_delivered: Callable[[DeliveredSms], None] | None
    ) -> None:
        self.delivered: list[DeliveredSms] = []
        self.parts: list[AcceptedPart] = []
        self._counts = counts
        self._on_delivered = on_delivered
        self._faults: list[_SendFault] = []
        self._text_faults: dict[str, int] = {}
        self._partial: dict[tuple[str, int, int], dict[int, AcceptedPart]] = {}
        self._next_mr = 0

    def fail_sends(self, code: int, count: int | None, after: int) -> None:
        self._faults.append(_SendFault(code, count, after))

    def fail_text(self, containing: str, code: int) -> None:
        self._text_faults[containing] = code

    def clear_faults(self) -> None:
        self._faults.clear()
        self._text_faults.clear()

    def refusal(self, text: str) -> int | None:
        """The +CMS error code a scripted fault gives this part, or None (it is taken)."""
        return self._scripted_fault() or self._text_fault(text)

    def accept_text(self, number: str, text: str) -> int:
        """A text-mode send (one part, delivered as typed); its message reference."""
        mr = self._take_mr()
        log.warning("modem_emulator_text_mode_send", number=number, text=text[:40])
        self._counts.parts_accepted += 1
        self._record(DeliveredSms(number, text, 1, None, (mr,), Encoding.GSM7, time.time()))
        return mr

    def accept(self, submit: Submit) -> int:
        """A PDU-mode part; delivered once every part of its message is in. Its reference."""
        mr = self._take_mr()
        part = AcceptedPart(submit.number, submit, mr, time.time())
        self.parts.append(part)
        self._counts.parts_accepted += 1
        concat = submit.concat
        if concat is None:
            self._deliver([part], None)
            return mr
        key = (submit.number, concat.reference, concat.total)
        pieces = self._partial.setdefault(key, {})
        if concat.sequence in pieces:
            self._counts.duplicate_parts += 1
        pieces[concat.sequence] = part
        if len(pieces) == concat.total:
            del self._partial[key]
            self._deliver([pieces[i] for i in sorted(pieces)], concat.reference)
        return mr

    def _take_mr(self) -> int:
        mr = self._next_mr
        self._next_mr = (mr + 1) % 256
        return mr

    def _text_fault(self, text: str) -> int | None:
        return next((code for marker, code in self._text_faults.items() if marker in text), None)

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
        self._record(sms)

    def _record(self, sms: DeliveredSms) -> None:
        self.delivered.append(sms)
        self._counts.messages_delivered += 1
        log.info("modem_emulator_delivered", number=sms.number, parts=sms.parts)
        if self._on_delivered is not None:
            self._on_delivered(sms)
