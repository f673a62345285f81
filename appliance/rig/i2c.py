"""Register-level emulation of an I2C bus carrying a TMP117 and an INA219.

It has the smbus2.SMBus methods the drivers use, with SMBus's byte order: a word transfer
carries the low byte first, so a big-endian chip register 0x1234 comes back from
read_word_data as 0x3412 (and write_word_data(0x3412) stores 0x1234), exactly like the real
bus. Absent addresses raise OSError(121, 'Remote I/O error') like the Linux i2c driver on NACK.

Values come from a small plant model: a machine load that drifts slowly, a motor current that
follows it, and a bearing temperature that follows the load with a thermal lag.
"""

from __future__ import annotations

import errno
import math
import os
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from appliance.capture.i2c import (
    INA219_BUS_VOLTAGE,
    INA219_CALIBRATION,
    INA219_CONFIG,
    INA219_CURRENT,
    INA219_DEFAULT_CONFIG,
    INA219_POWER,
    INA219_SHUNT_VOLTAGE,
    TMP117_CELSIUS_PER_LSB,
    TMP117_DEVICE_ID,
    TMP117_ID,
    TMP117_TEMPERATURE,
    swap_bytes,
)

Clock = Callable[[], float]


def nack() -> OSError:
    return OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))


def to_register(value: int) -> int:
    """Two's complement 16-bit register image of a signed value (saturating)."""
    return max(-0x8000, min(0x7FFF, value)) & 0xFFFF


class PlantModel:
    """A machine whose load drifts over minutes; current follows load, temperature lags it."""

    def __init__(
        self,
        now: Clock = time.monotonic,
        *,
        ambient_c: float = 22.0,
        thermal_lag_s: float = 300.0,
        supply_v: float = 24.0,
    ) -> None:
        self._now = now
        self._start = now()
        self._ambient_c = ambient_c
        self._thermal_lag_s = thermal_lag_s
        self._supply_v = supply_v
        self._temperature_c = ambient_c + 30.0 * self.load()
        self._temperature_at = self._start

    def load(self) -> float:
        """Fraction of rated load, 0..1."""
        t = self._now() - self._start
        value = 0.6 + 0.25 * math.sin(2 * math.pi * t / 900.0) + 0.08 * math.sin(t / 37.0)
        return min(1.0, max(0.0, value))

    def current_a(self) -> float:
        return 0.3 + 2.5 * self.load()

    def bus_voltage_v(self) -> float:
        return self._supply_v - 0.15 * self.current_a()

    def temperature_c(self) -> float:
        now = self._now()
        target = self._ambient_c + 30.0 * self.load()
        weight = 1.0 - math.exp(-max(0.0, now - self._temperature_at) / self._thermal_lag_s)
        self._temperature_c += (target - self._temperature_c) * weight
        self._temperature_at = now
        return self._temperature_c


class EmulatedChip(Protocol):
    address: int

    def read_register(self, register: int) -> int: ...

    def write_register(self, register: int, value: int) -> None: ...

    def power_on_reset(self) -> None: ...


class EmulatedTmp117:
    """TMP117 registers; faults: fixed temperature, stuck reading, forced raw register value."""

    def __init__(self, plant: PlantModel, address: int = 0x48) -> None:
        self.address = address
        self._plant = plant
        self.fixed_temperature_c: float | None = None
        self.forced_raw: int | None = None
        self._stuck_raw: int | None = None
        self._writable: dict[int, int] = {}
        self.power_on_reset()

    def power_on_reset(self) -> None:
        # config, THigh, TLow, temperature offset: the datasheet's power-on values
        self._writable = {0x01: 0x0220, 0x02: 0x6000, 0x03: 0x8000, 0x07: 0x0000}

    def stick(self, stuck: bool = True) -> None:
        """Freeze the temperature register at its current value (a hung conversion)."""
        self._stuck_raw = self._temperature_raw() if stuck else None

    def read_register(self, register: int) -> int:
        if register == TMP117_TEMPERATURE:
            return self._stuck_raw if self._stuck_raw is not None else self._temperature_raw()
        if register == TMP117_DEVICE_ID:
            return TMP117_ID
        return self._writable.get(register, 0)

    def write_register(self, register: int, value: int) -> None:
        if register in self._writable:
            self._writable[register] = value

    def _temperature_raw(self) -> int:
        if self.forced_raw is not None:
            return self.forced_raw
        celsius = self.fixed_temperature_c
        if celsius is None:
            celsius = self._plant.temperature_c()
        return to_register(round(celsius / TMP117_CELSIUS_PER_LSB))


_PGA_FULL_SCALE_V = {0: 0.04, 1: 0.08, 2: 0.16, 3: 0.32}
_SHUNT_LSB_V = 10e-6
_BUS_LSB_V = 4e-3
_CONVERSION_S = 532e-6
_CONFIG_RESET = 0x8000


class EmulatedIna219:
    """INA219 registers computed like the chip: current = shunt * calibration / 4096 and so on.

    Faults: fixed current/voltage, stuck readings, and `overflow` (shunt voltage beyond the PGA
    range sets the OVF flag, as a short circuit would).
    """

    def __init__(
        self,
        plant: PlantModel,
        address: int = 0x40,
        *,
        shunt_ohms: float = 0.1,
        now: Clock = time.monotonic,
    ) -> None:
        self.address = address
        self._plant = plant
        self._shunt_ohms = shunt_ohms
        self._now = now
        self.fixed_current_a: float | None = None
        self.fixed_bus_voltage_v: float | None = None
        self._stuck: tuple[float, float] | None = None
        self.power_on_reset()

    def power_on_reset(self) -> None:
        self.config = INA219_DEFAULT_CONFIG
        self.calibration = 0
        self._last_power_read = self._now()

    def stick(self, stuck: bool = True) -> None:
        self._stuck = (self._current_a(), self._bus_voltage_v()) if stuck else None

    def read_register(self, register: int) -> int:
        shunt_raw, overflow = self._shunt_raw()
        current_raw = (shunt_raw * self.calibration) // 4096 if self.calibration else 0
        bus_raw = round(self._inputs()[1] / _BUS_LSB_V)
        if register == INA219_CONFIG:
            return self.config
        if register == INA219_SHUNT_VOLTAGE:
            return to_register(shunt_raw)
        if register == INA219_BUS_VOLTAGE:
            ready = self._now() - self._last_power_read >= _CONVERSION_S
            return ((bus_raw << 3) | (int(ready) << 1) | int(overflow)) & 0xFFFF
        if register == INA219_POWER:
            self._last_power_read = self._now()
            return to_register(abs(current_raw) * bus_raw // 5000)
        if register == INA219_CURRENT:
            return to_register(current_raw)
        if register == INA219_CALIBRATION:
            return self.calibration
        return 0

    def write_register(self, register: int, value: int) -> None:
        if register == INA219_CONFIG:
            if value & _CONFIG_RESET:
                self.power_on_reset()
            else:
                self.config = value
        elif register == INA219_CALIBRATION:
            self.calibration = value & 0xFFFE

    def _inputs(self) -> tuple[float, float]:
        if self._stuck is not None:
            return self._stuck
        return self._current_a(), self._bus_voltage_v()

    def _current_a(self) -> float:
        if self.fixed_current_a is not None:
            return self.fixed_current_a
        return self._plant.current_a()

    def _bus_voltage_v(self) -> float:
        if self.fixed_bus_voltage_v is not None:
            return self.fixed_bus_voltage_v
        return self._plant.bus_voltage_v()

    def _shunt_raw(self) -> tuple[int, bool]:
        full_scale = _PGA_FULL_SCALE_V[(self.config >> 11) & 0x3]
        shunt_v = self._inputs()[0] * self._shunt_ohms
        clamped = max(-full_scale, min(full_scale, shunt_v))
        return round(clamped / _SHUNT_LSB_V), abs(shunt_v) > full_scale


class EmulatedI2cBus:
    """An smbus2.SMBus look-alike with emulated chips attached at their addresses."""

    def __init__(self, chips: Iterable[EmulatedChip] = ()) -> None:
        self._chips: dict[int, EmulatedChip] = {}
        self._detached: dict[int, EmulatedChip] = {}
        self.transfers = 0
        self.nacks = 0
        for chip in chips:
            self.attach(chip)

    @classmethod
    def with_default_chips(cls, now: Clock = time.monotonic) -> EmulatedI2cBus:
        """TMP117 at 0x48 and INA219 (0.1 Ω shunt) at 0x40 on one plant, like the example config."""
        plant = PlantModel(now)
        return cls([EmulatedTmp117(plant, 0x48), EmulatedIna219(plant, 0x40, now=now)])

    def attach(self, chip: EmulatedChip) -> None:
        self._chips[chip.address] = chip

    def chip(self, address: int) -> EmulatedChip:
        return self._chips.get(address) or self._detached[address]

    def vanish(self, address: int) -> None:
        """The chip stops answering (loose connector, lost power)."""
        self._detached[address] = self._chips.pop(address)

    def reappear(self, address: int) -> None:
        """The chip answers again, freshly powered: registers back at their power-on values."""
        chip = self._detached.pop(address)
        chip.power_on_reset()
        self._chips[address] = chip

    # --- smbus2.SMBus interface --------------------------------------------------------------

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        return swap_bytes(self._target(i2c_addr).read_register(register))

    def write_word_data(
        self, i2c_addr: int, register: int, value: int, force: bool | None = None
    ) -> None:
        self._target(i2c_addr).write_register(register, swap_bytes(value & 0xFFFF))

    def read_i2c_block_data(
        self, i2c_addr: int, register: int, length: int, force: bool | None = None
    ) -> list[int]:
        word = self._target(i2c_addr).read_register(register)
        # These chips do not auto-increment: further bytes repeat the same register.
        return [(word >> 8) & 0xFF if i % 2 == 0 else word & 0xFF for i in range(length)]

    def write_i2c_block_data(
        self, i2c_addr: int, register: int, data: list[int], force: bool | None = None
    ) -> None:
        chip = self._target(i2c_addr)
        if len(data) >= 2:
            chip.write_register(register, ((data[0] & 0xFF) << 8) | (data[1] & 0xFF))

    def close(self) -> None:
        """Nothing to release; present because smbus2.SMBus has it."""

    def _target(self, address: int) -> EmulatedChip:
        self.transfers += 1
        chip = self._chips.get(address)
        if chip is None:
            self.nacks += 1
            raise nack()
        return chip
