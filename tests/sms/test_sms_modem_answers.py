"""ModemSession against any answer to the queries that now decide whether the modem restarted
(AT+CMGF?, AT+CREG?): a scripted far end on a real pty says what hypothesis picks. The session
either carries on (set up, alive, no clue left over) or refuses with a typed SmsError that
names the command or the reason; never another exception, never a wedged session."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from sms_helpers import FAST_LINK

from appliance.rig.pty import close_pty, open_pty
from appliance.sms.errors import ModemGone, SmsError
from appliance.sms.modem import ModemHealth, ModemSession

OK = b"\r\nOK\r\n"
SETTINGS = dataclasses.replace(FAST_LINK, command_timeout_s=0.05, probe_timeout_s=0.05)
GOOD_ANSWERS = {
    "AT+CPIN?": b"\r\n+CPIN: READY\r\n" + OK,
    "AT+CEREG=1": b"\r\nERROR\r\n",
    "AT+CMGF?": b"\r\n+CMGF: 0\r\n" + OK,
    "AT+CREG?": b"\r\n+CREG: 1,1\r\n" + OK,
    "AT+CSQ": b"\r\n+CSQ: 20,0\r\n" + OK,
    "AT+COPS?": b'\r\n+COPS: 0,0,"Scripted",0\r\n' + OK,
}


class ScriptedModem:
    """The far end of a pty: each command line gets `answer(line)` (nothing for None)."""

    def __init__(self, answer: Callable[[str], bytes | None]) -> None:
        self.answer = answer
        self.commands: list[str] = []
        self.master, self.slave = open_pty(None)
        self.path = os.ttyname(self.slave)
        self._line = bytearray()
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        for byte in os.read(self.master, 4096):
            if byte == ord("\r"):
                self._command(self._line.decode("ascii", errors="replace").strip())
                self._line.clear()
            elif byte >= 0x20:
                self._line += bytes([byte])

    def _command(self, line: str) -> None:
        if not line.upper().startswith("AT"):
            return
        self.commands.append(line)
        reply = self.answer(line)
        if reply:
            os.write(self.master, reply)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        close_pty(None, self.master, self.slave)


def scripted(cmgf: bytes, creg: bytes) -> Callable[[str], bytes | None]:
    """Good answers, except that after initialisation AT+CMGF? and AT+CREG? get the fuzz."""
    initialised = False

    def answer(line: str) -> bytes | None:
        nonlocal initialised
        if line == "AT+CEREG=1":
            initialised = True
        if initialised and line == "AT+CMGF?":
            return cmgf
        if initialised and line == "AT+CREG?":
            return creg
        return GOOD_ANSWERS.get(line, OK)

    return answer


@dataclasses.dataclass(frozen=True)
class Outcome:
    error: SmsError | None
    alive: bool
    gone_reason: str | None
    clue: str | None


async def exercise(cmgf: bytes, creg: bytes) -> Outcome:
    """Initialise, then twice: refresh and ensure_setup, as the watchdog does."""
    modem = ScriptedModem(scripted(cmgf, creg))
    session = await ModemSession.open(modem.path, SETTINGS, ModemHealth())
    error: SmsError | None = None
    try:
        await session.initialise()
        for _ in range(2):
            await session.refresh()
            await session.ensure_setup()
    except SmsError as raised:
        error = raised
    outcome = Outcome(error, session.alive, session.gone_reason, session.restart_clue)
    await session.close()
    modem.close()
    return outcome


answer_lines = st.lists(
    st.sampled_from(
        [b"+CMGF: 1", b"+CMGF: 0", b"+CMGF:", b"+CMGF: x", b"+CREG: 0,1", b"+CREG: 1,5",
         b"+CREG: 2", b"+CREG:", b'+CREG: ,"1"', b"OK", b"ERROR", b"+CMS ERROR: 500", b"RDY",
         b"+CMT: ,3", b"> ", b"AT+CMGF?"]
    ) | st.binary(max_size=12),
    max_size=5,
).map(lambda lines: b"".join(b"\r\n" + line + b"\r\n" for line in lines))  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(answer_lines, answer_lines, st.booleans(), st.booleans())
def test_any_answer_to_the_restart_checks_leaves_a_usable_or_a_dead_session(
    cmgf: bytes, creg: bytes, cmgf_ends: bool, creg_ends: bool
) -> None:
    outcome = asyncio.run(
        exercise(cmgf + (OK if cmgf_ends else b""), creg + (OK if creg_ends else b""))
    )
    if outcome.error is None:
        assert outcome.alive and outcome.clue is None  # every clue was acted on
    elif isinstance(outcome.error, ModemGone):  # dead, and says why
        assert not outcome.alive and outcome.gone_reason
    else:  # an error answer: refused naming the command, the session still usable
        assert outcome.alive and "AT+" in str(outcome.error)


async def test_a_modem_that_stays_in_text_mode_is_never_sent_a_pdu() -> None:
    outcome = await exercise(b"\r\n+CMGF: 1\r\n" + OK, GOOD_ANSWERS["AT+CREG?"])
    assert isinstance(outcome.error, ModemGone) and not outcome.alive
    assert "still in text mode after AT+CMGF=0" in (outcome.gone_reason or "")


async def test_a_clue_the_modem_shows_even_when_set_up_is_ignored_from_then_on() -> None:
    """A modem that answers AT+CREG? with <n> 0 whatever it was told: set up again once, then
    that clue no longer counts (AT+CMGF? still guards every part)."""
    outcome = await exercise(GOOD_ANSWERS["AT+CMGF?"], b"\r\n+CREG: 0,1\r\n" + OK)
    assert outcome.error is None and outcome.alive and outcome.clue is None
