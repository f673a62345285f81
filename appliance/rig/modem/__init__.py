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

Parts: records.py (settings, counts, what was delivered), session.py (EmulatedModem: the pty,
input, answers, faults), commands.py (the AT commands), boot.py (power-on to registered),
network.py (references, refusals, reassembly).

Standalone (prints each SMS that would have been sent):
    python -m appliance.rig.modem --link /tmp/modem --fast
"""

from appliance.rig.modem.records import (
    MODELS,
    AcceptedPart,
    DeliveredSms,
    EmulatorSettings,
    ModemCounts,
)
from appliance.rig.modem.session import EmulatedModem

__all__ = [
    "MODELS",
    "AcceptedPart",
    "DeliveredSms",
    "EmulatedModem",
    "EmulatorSettings",
    "ModemCounts",
]
