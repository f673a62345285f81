"""The modem's power-cycle hook: one GPIO line that cuts the modem's power while active.

Wiring: a relay or load switch in the modem's supply (or its enable pin), driven by one GPIO
line of the Pi. `power_cycle_gpio` is the line's offset on `power_cycle_gpio_chip` (on a Pi 4
gpiochip0 line 17 is BCM GPIO 17, header pin 11). A power cycle drives the line active (high,
or low with `active_low`) for `off_s`, then inactive again; ModemLink calls it after
`power_cycle_after` consecutive failed opens or dead sessions (see link.py).

Backends, in this order:
  * libgpiod v2 Python bindings (`import gpiod`, Debian package python3-libgpiod or the
    `gpiod` wheel): the line is requested for the pulse only;
  * the sysfs interface (/sys/class/gpio, deprecated but still in Raspberry Pi OS kernels): the
    global number is the chip's `base` plus the offset (on a Pi 5 kernel base is 512+, which is
    why the offset and the chip are configured, not a global number).
A modem that must be switched with a PWRKEY pulse instead (SIM7600 HATs) needs a pulse of
~0.5 s to switch off and another to switch on: not this hook.

Tests use a fake hook, or `SysfsGpio` with a temporary directory as the sysfs root.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from appliance.errors import DeviceError
from appliance.sms.modem import PowerCycle

log = structlog.get_logger(__name__)

SYSFS_ROOT = Path("/sys/class/gpio")
CONSUMER = "appliance-modem-power"


class GpioLine(Protocol):
    def pulse(self, off_s: float) -> None:
        """Drive the line active for `off_s` (blocking), then inactive."""


@dataclass(frozen=True)
class SysfsGpio:
    chip: str
    offset: int
    active_low: bool = False
    root: Path = SYSFS_ROOT

    def number(self) -> int:
        try:
            base = int((self.root / self.chip / "base").read_text().strip())
        except (OSError, ValueError) as error:
            raise DeviceError(f"gpio: cannot read the base of {self.chip}: {error}") from error
        return base + self.offset

    def pulse(self, off_s: float) -> None:
        line = self.root / f"gpio{self.number()}"
        try:
            if not line.exists():
                (self.root / "export").write_text(str(self.number()))
            (line / "active_low").write_text("1" if self.active_low else "0")
            # "high"/"low" set the direction and the initial value in one write (no glitch)
            (line / "direction").write_text("low" if not self.active_low else "high")
            (line / "value").write_text("1")
            time.sleep(off_s)
            (line / "value").write_text("0")
        except OSError as error:
            raise DeviceError(f"gpio: {line}: {error}") from error


@dataclass(frozen=True)
class GpiodLine:
    chip: str
    offset: int
    active_low: bool = False

    def pulse(self, off_s: float) -> None:
        gpiod: Any = importlib.import_module("gpiod")
        line: Any = importlib.import_module("gpiod.line")
        settings = gpiod.LineSettings(
            direction=line.Direction.OUTPUT,
            output_value=line.Value.INACTIVE,
            active_low=self.active_low,
        )
        try:
            with gpiod.request_lines(
                f"/dev/{self.chip}", consumer=CONSUMER, config={self.offset: settings}
            ) as request:
                request.set_value(self.offset, line.Value.ACTIVE)
                time.sleep(off_s)
                request.set_value(self.offset, line.Value.INACTIVE)
        except OSError as error:
            raise DeviceError(f"gpio: /dev/{self.chip} line {self.offset}: {error}") from error


def gpiod_available() -> bool:
    try:
        importlib.import_module("gpiod.line")
    except ImportError:
        return False
    return True


def gpio_line(chip: str, offset: int, *, active_low: bool = False) -> GpioLine:
    """libgpiod if its Python bindings are installed, else sysfs."""
    if gpiod_available():
        return GpiodLine(chip, offset, active_low)
    return SysfsGpio(chip, offset, active_low)


def power_cycle_hook(line: GpioLine, off_s: float) -> PowerCycle:
    """The async hook ModemLink calls: the blocking pulse runs in a worker thread."""

    async def power_cycle() -> None:
        log.warning("modem_power_cut", line=repr(line), off_s=off_s)
        await asyncio.to_thread(line.pulse, off_s)

    return power_cycle
