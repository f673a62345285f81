"""The emulated modem's way from power-on to ready: "RDY", the SIM busy, then ready (or asking
for its PIN), registration searching, then home or roaming, the signal unknown for a while."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.rig.modem.records import EmulatorSettings, ModemCounts, ModemState


class PowerOnSequence:
    """The boot and network timeline of EmulatedModem (mixed into it), and the conditions a
    test sets on it (registration state, signal)."""

    model: str
    settings: EmulatorSettings
    counts: ModemCounts
    _state: ModemState
    _pin: str | None
    _pin_attempts_left: int
    _rssi: int
    _home_state: int
    _network_state: int | None

    if TYPE_CHECKING:

        def _later(self, delay_s: float, callback: Callable[[], None]) -> None: ...

        def _urcs(self, *lines: str) -> None: ...

    def set_registration(self, state: int | None) -> None:
        """Force a 27.007 registration state from now on, or from SIM ready if earlier (None:
        back to normal after the registration delay); sends +CREG if enabled."""
        self._network_state = state
        if self._state.sim == "READY" and self._state.registration != 0:
            self._set_registration(state if state is not None else self._home_state)

    def set_signal(self, rssi: int) -> None:
        """AT+CSQ says `rssi` from now on (99: unknown)."""
        self._rssi = rssi
        self._state.signal_known = True

    def _boot_done(self) -> None:
        self._state.booted = True
        self._state.sim = "busy"
        self.counts.boots += 1
        if self.model == "SIM800":
            self._urcs("RDY", "+CFUN: 1")
        else:
            self._urcs("RDY")
        self._later(self.settings.sim_busy_s, self._sim_initialised)

    def finish_sim_init(self) -> None:
        """End the SIM-busy phase after boot now (for tests that set sim_busy_s to inf)."""
        if self._state.booted and not self._state.sim_initialised:
            self._sim_initialised()

    def _sim_initialised(self) -> None:
        self._state.sim_initialised = True
        if self._pin is None:
            self._sim_ready()
        else:
            self._state.sim = "SIM PIN" if self._pin_attempts_left else "SIM PUK"
            self._urcs(f"+CPIN: {self._state.sim}")

    def _sim_ready(self) -> None:
        self._state.sim = "READY"
        forced = self._network_state
        self._state.registration = forced if forced is not None else 2
        ready = ("Call Ready", "SMS Ready") if self.model == "SIM800" else ("SMS DONE", "PB DONE")
        self._urcs("+CPIN: READY", *ready)
        self._later(self.settings.registration_s, self._registered)
        self._later(self.settings.signal_unknown_s, self._signal_found)

    def _registered(self) -> None:
        forced = self._network_state
        self._set_registration(forced if forced is not None else self._home_state)

    def _set_registration(self, state: int) -> None:
        self._state.registration = state
        if self._state.creg_n:
            self._urcs(f"+CREG: {state}")
        if self._state.cereg_n:
            self._urcs(f"+CEREG: {state}")

    def _signal_found(self) -> None:
        self._state.signal_known = True
