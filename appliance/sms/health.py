"""What the status page shows of a modem (`ModemHealth`), pure: the link and the session
write it, the status board, /metrics and the summary read it."""

from __future__ import annotations

from dataclasses import dataclass

REGISTERED = (1, 5)  # home, roaming
RSSI_UNKNOWN = 99
_STATES = {0: "not searching", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming"}


@dataclass
class ModemHealth:
    """What the status page shows. ModemLink writes the first block, the session the second."""

    path: str = ""
    connected: bool = False  # port open and modem initialised
    reopens: int = 0  # sessions opened after the first one
    open_failures: int = 0  # opens or initialisations that failed
    consecutive_failures: int = 0
    power_cycles: int = 0
    last_error: str | None = None
    last_error_utc: float | None = None

    sim: str | None = None  # "READY", "SIM PIN", "busy", ...
    registration: int | None = None  # 27.007 <stat>: 1 home, 5 roaming, 2 searching, 3 denied
    signal_rssi: int | None = None  # 0-31, 99 unknown
    operator: str | None = None
    last_answer_utc: float | None = None  # the modem last completed a command
    last_success_utc: float | None = None  # the modem last accepted an SMS part
    messages_sent: int = 0
    parts_sent: int = 0
    urcs: int = 0
    restarts_detected: int = 0  # silent restarts (no RDY) noticed and set up again

    @property
    def registered(self) -> bool:
        return self.registration in REGISTERED

    @property
    def signal_known(self) -> bool:
        return self.signal_rssi is not None and self.signal_rssi != RSSI_UNKNOWN

    @property
    def signal_dbm(self) -> int | None:
        if self.signal_rssi is None or not self.signal_known:
            return None
        return -113 + 2 * self.signal_rssi

    @property
    def radio_ready(self) -> bool:
        return self.registered and self.signal_known

    @property
    def ready(self) -> bool:
        return self.connected and self.radio_ready

    def registration_text(self) -> str:
        return _STATES.get(self.registration, "none") if self.registration is not None else "none"
