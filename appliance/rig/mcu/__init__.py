"""The emulated vibration MCU: the machine it measures and the faults it injects (signal.py),
the firmware's behaviour on a pty (device.py), and a standalone command (__main__.py)."""

from appliance.rig.mcu.device import (
    DEFAULT_FIRMWARE,
    RESET_POWER_ON,
    RESET_SOFTWARE,
    RESET_WATCHDOG,
    EmulatedMcu,
    EmulatorCounts,
    default_samples_per_frame,
    default_scale,
)
from appliance.rig.mcu.signal import FAULT_NAMES, FaultPlan, MachineSignal, parse_faults

__all__ = [
    "DEFAULT_FIRMWARE",
    "FAULT_NAMES",
    "RESET_POWER_ON",
    "RESET_SOFTWARE",
    "RESET_WATCHDOG",
    "EmulatedMcu",
    "EmulatorCounts",
    "FaultPlan",
    "MachineSignal",
    "default_samples_per_frame",
    "default_scale",
    "parse_faults",
]
