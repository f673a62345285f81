"""Slow I2C sensors (TMP117 temperature, INA219 voltage/current) and the task that polls them.

The drivers talk to an smbus2-compatible bus object. Both chips have big-endian 16-bit
registers while SMBus word transfers are little-endian (first byte on the wire is the low
byte), so every word read and written is byte-swapped here.

Bus calls block, so the poller runs them in a thread. A driver turns OSError into I2cBusError
and implausible chip values into SensorValueError (both DeviceError), each naming bus and address.
"""

from __future__ import annotations

import asyncio
import errno
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import structlog

from appliance.errors import DeviceError
from appliance.records import SampleBlock

log = structlog.get_logger(__name__)


class SmbusLike(Protocol):
    """The subset of smbus2.SMBus the drivers use (an EmulatedI2cBus provides it too)."""

    def read_word_data(self, i2c_addr: int, register: int, /) -> int: ...

    def write_word_data(self, i2c_addr: int, register: int, value: int, /) -> None: ...

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int, /) -> list[int]: ...

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int], /) -> None: ...


class I2cBusError(DeviceError):
    """A transfer failed: no ACK (absent/unpowered chip), bus stuck, timeout."""

    def __init__(self, message: str, errno_code: int | None) -> None:
        super().__init__(message)
        self.errno_code = errno_code


class SensorValueError(DeviceError):
    """The chip answered, but with a value it cannot mean (no conversion yet, out of range)."""


def swap_bytes(word: int) -> int:
    return ((word & 0xFF) << 8) | ((word >> 8) & 0xFF)


def signed16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def describe_os_error(error: OSError) -> str:
    if error.errno == errno.EREMOTEIO:
        return f"no ACK (chip absent, unpowered or wrong address): {error}"
    return str(error)


class RegisterAccess:
    """Big-endian 16-bit register reads and writes for one chip; errors name bus and address."""

    def __init__(self, bus: SmbusLike, address: int, bus_name: str, chip: str) -> None:
        self.bus = bus
        self.address = address
        self.label = f"{chip} on {bus_name} at address 0x{address:02x}"
        self.ident = f"{chip.lower()}@0x{address:02x}"

    def read(self, register: int) -> int:
        try:
            return swap_bytes(self.bus.read_word_data(self.address, register))
        except OSError as error:
            raise self._bus_error(f"reading register 0x{register:02x}", error) from error

    def write(self, register: int, value: int) -> None:
        try:
            self.bus.write_word_data(self.address, register, swap_bytes(value))
        except OSError as error:
            raise self._bus_error(f"writing register 0x{register:02x}", error) from error

    def value_error(self, message: str) -> SensorValueError:
        return SensorValueError(f"{self.label}: {message}")

    def _bus_error(self, action: str, error: OSError) -> I2cBusError:
        return I2cBusError(f"{self.label}: {action}: {describe_os_error(error)}", error.errno)


class I2cSensor(Protocol):
    """A chip that yields named quantities; both methods block (run them in a thread)."""

    @property
    def name(self) -> str: ...

    @property
    def ident(self) -> str:
        """Short and unique on its bus, for metric labels: chip@address ("tmp117@0x48")."""
        ...

    def initialize(self) -> None:
        """Verify identity and configure; called at start and again after any failure."""

    def read(self) -> dict[str, float]:
        """Quantity name -> value in SI units (°C for temperature)."""


TMP117_TEMPERATURE = 0x00
TMP117_DEVICE_ID = 0x0F
TMP117_ID = 0x0117
TMP117_CELSIUS_PER_LSB = 0.0078125
TMP117_NO_CONVERSION = 0x8000  # power-on value of the temperature register
TMP117_RANGE_C = (-55.0, 150.0)


class Tmp117:
    """TI TMP117 digital thermometer (default continuous conversion, 1 s cycle)."""

    quantities = ("temperature",)

    def __init__(self, bus: SmbusLike, address: int = 0x48, bus_name: str = "i2c-1") -> None:
        self._registers = RegisterAccess(bus, address, bus_name, "TMP117")

    @property
    def name(self) -> str:
        return self._registers.label

    @property
    def ident(self) -> str:
        return self._registers.ident

    def initialize(self) -> None:
        device_id = self._registers.read(TMP117_DEVICE_ID) & 0x0FFF  # bits 15..12: revision
        if device_id != TMP117_ID:
            raise self._registers.value_error(
                f"device id register reads 0x{device_id:04x}, expected 0x{TMP117_ID:04x} "
                "(another chip at this address?)"
            )

    def read(self) -> dict[str, float]:
        raw = self._registers.read(TMP117_TEMPERATURE)
        if raw == TMP117_NO_CONVERSION:
            raise self._registers.value_error("no temperature conversion yet (reads 0x8000)")
        celsius = signed16(raw) * TMP117_CELSIUS_PER_LSB
        low, high = TMP117_RANGE_C
        if not low <= celsius <= high:
            raise self._registers.value_error(f"temperature {celsius:.3f} °C out of range")
        return {"temperature": celsius}


INA219_CONFIG = 0x00
INA219_SHUNT_VOLTAGE = 0x01
INA219_BUS_VOLTAGE = 0x02
INA219_POWER = 0x03
INA219_CURRENT = 0x04
INA219_CALIBRATION = 0x05
# 32 V bus range, shunt PGA /8 (±320 mV), 12-bit ADCs, shunt and bus continuous (power-on value).
INA219_DEFAULT_CONFIG = 0x399F
INA219_SHUNT_VOLTS_PER_LSB = 10e-6
INA219_BUS_VOLTS_PER_LSB = 4e-3
INA219_OVERFLOW = 0x0001


def ina219_calibration(shunt_ohms: float, max_current_a: float) -> tuple[int, float]:
    """Calibration register value and current LSB (A) per the datasheet's equation 1."""
    current_lsb = max_current_a / 32768
    calibration = math.trunc(0.04096 / (current_lsb * shunt_ohms)) & 0xFFFE  # bit 0 is fixed 0
    if not 0 < calibration <= 0xFFFE:
        raise ValueError(f"INA219: shunt {shunt_ohms} Ω / {max_current_a} A gives no calibration")
    return calibration, current_lsb


class Ina219:
    """TI INA219 current/power monitor; current and power need the calibration register set.

    The calibration is read back on every poll and rewritten if the chip lost it (a brown-out
    resets the chip to calibration 0, which silently reads as zero current).
    """

    quantities = ("bus_voltage", "shunt_voltage", "current", "power")

    def __init__(
        self,
        bus: SmbusLike,
        address: int = 0x40,
        bus_name: str = "i2c-1",
        *,
        shunt_ohms: float = 0.1,
        max_current_a: float = 3.2,
    ) -> None:
        self._registers = RegisterAccess(bus, address, bus_name, "INA219")
        self._calibration, self._current_lsb = ina219_calibration(shunt_ohms, max_current_a)
        self.recalibrations = 0

    @property
    def name(self) -> str:
        return self._registers.label

    @property
    def ident(self) -> str:
        return self._registers.ident

    def initialize(self) -> None:
        self._registers.write(INA219_CONFIG, INA219_DEFAULT_CONFIG)
        config = self._registers.read(INA219_CONFIG)
        if config != INA219_DEFAULT_CONFIG:
            raise self._registers.value_error(
                f"config register reads back 0x{config:04x} after writing "
                f"0x{INA219_DEFAULT_CONFIG:04x} (not an INA219?)"
            )
        self._registers.write(INA219_CALIBRATION, self._calibration)

    def read(self) -> dict[str, float]:
        if self._registers.read(INA219_CALIBRATION) != self._calibration:
            self.recalibrations += 1
            self._registers.write(INA219_CALIBRATION, self._calibration)
        bus_raw = self._registers.read(INA219_BUS_VOLTAGE)
        if bus_raw & INA219_OVERFLOW:
            raise self._registers.value_error("math overflow: current or power out of range")
        bus_voltage = (bus_raw >> 3) * INA219_BUS_VOLTS_PER_LSB
        shunt_raw = signed16(self._registers.read(INA219_SHUNT_VOLTAGE))
        current_raw = signed16(self._registers.read(INA219_CURRENT))
        power_raw = self._registers.read(INA219_POWER)
        return {
            "bus_voltage": bus_voltage,
            "shunt_voltage": shunt_raw * INA219_SHUNT_VOLTS_PER_LSB,
            "current": current_raw * self._current_lsb,
            "power": power_raw * 20 * self._current_lsb,
        }


def build_sensor(
    kind: str,
    bus: SmbusLike,
    address: int,
    bus_name: str,
    *,
    shunt_ohms: float = 0.1,
    max_current_a: float = 3.2,
) -> I2cSensor:
    """Driver for a config `sensor` key ("tmp117" or "ina219")."""
    if kind == "tmp117":
        return Tmp117(bus, address, bus_name)
    if kind == "ina219":
        return Ina219(bus, address, bus_name, shunt_ohms=shunt_ohms, max_current_a=max_current_a)
    raise ValueError(f"unknown I2C sensor kind: {kind!r}")


def open_smbus(bus_number: int) -> SmbusLike:
    """Open the real /dev/i2c-N (untested here: there is no I2C hardware on the build machine)."""
    from smbus2 import SMBus

    try:
        bus: SmbusLike = SMBus(bus_number)
    except OSError as error:
        raise DeviceError(f"cannot open I2C bus /dev/i2c-{bus_number}: {error}") from error
    return bus


@dataclass(frozen=True, slots=True)
class PolledSensor:
    """One sensor and where its quantities go: quantity -> (asset, channel)."""

    sensor: I2cSensor
    channels: Mapping[str, tuple[str, str]]


@dataclass
class SensorStats:
    name: str
    ident: str = ""
    """The sensor's short identifier ("tmp117@0x48"); its name is the sentence."""
    reads: int = 0
    read_errors: int = 0
    invalid_values: int = 0
    consecutive_failures: int = 0
    failed: bool = False
    initialized: bool = False
    last_error: str | None = None
    last_values: dict[str, float] = field(default_factory=dict)
    last_read_utc: float | None = None


@dataclass
class I2cStats:
    sensors: dict[str, SensorStats]
    queue_full: int = 0


class I2cPoller:
    """Polls its sensors every `period_s`, one SampleBlock (one sample) per mapped quantity.

    A sensor that fails `fail_after` times in a row is marked failed (logged once) and retried
    every period; it is re-initialized (identity check, configuration) before the next read
    after any failure, so a chip that lost power comes back configured.
    """

    def __init__(
        self,
        sensors: Sequence[PolledSensor],
        queue: asyncio.Queue[SampleBlock],
        *,
        period_s: float = 1.0,
        fail_after: int = 3,
    ) -> None:
        self._sensors = list(sensors)
        self._queue = queue
        self._period_s = period_s
        self._fail_after = fail_after
        self.stats = I2cStats(
            {p.sensor.name: SensorStats(p.sensor.name, p.sensor.ident) for p in sensors}
        )

    async def check(self) -> None:
        """Initialize every sensor now; DeviceError listing each one that is absent or wrong."""
        problems = []
        for polled in self._sensors:
            try:
                await asyncio.to_thread(polled.sensor.initialize)
            except DeviceError as error:
                problems.append(str(error))
            else:
                self.stats.sensors[polled.sensor.name].initialized = True
        if problems:
            raise DeviceError("; ".join(problems))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_poll = loop.time()
        while True:
            await self.poll_once()
            next_poll += self._period_s
            now = loop.time()
            if next_poll < now:  # overran (slow bus): skip the missed polls, don't burst
                next_poll = now + self._period_s
            await asyncio.sleep(next_poll - now)

    async def poll_once(self) -> None:
        for polled in self._sensors:
            values = await self._read(polled.sensor)
            if values is not None:
                await self._publish(polled, values, time.time())

    async def _read(self, sensor: I2cSensor) -> dict[str, float] | None:
        stats = self.stats.sensors[sensor.name]
        try:
            if not stats.initialized:
                await asyncio.to_thread(sensor.initialize)
                stats.initialized = True
            values = await asyncio.to_thread(sensor.read)
        except DeviceError as error:
            self._record_failure(stats, error)
            return None
        self._record_success(stats, values)
        return values

    def _record_failure(self, stats: SensorStats, error: DeviceError) -> None:
        if isinstance(error, SensorValueError):
            stats.invalid_values += 1
        else:
            stats.read_errors += 1
        stats.initialized = False
        stats.consecutive_failures += 1
        stats.last_error = str(error)
        if stats.consecutive_failures == 1:
            log.warning("i2c_sensor_error", sensor=stats.name, error=str(error))
        if stats.consecutive_failures == self._fail_after:
            stats.failed = True
            log.error("i2c_sensor_failed", sensor=stats.name, failures=self._fail_after)

    def _record_success(self, stats: SensorStats, values: dict[str, float]) -> None:
        if stats.failed:
            log.info("i2c_sensor_recovered", sensor=stats.name)
        stats.failed = False
        stats.consecutive_failures = 0
        stats.reads += 1
        stats.last_values = values
        stats.last_read_utc = time.time()

    async def _publish(self, polled: PolledSensor, values: dict[str, float], t0: float) -> None:
        for quantity, (asset, channel) in polled.channels.items():
            samples = np.array([values[quantity]], dtype=np.float64)
            block = SampleBlock(asset, channel, t0, 1.0 / self._period_s, samples)
            if self._queue.full():
                self.stats.queue_full += 1
                log.warning("i2c_queue_full", sensor=polled.sensor.name, channel=channel)
            await self._queue.put(block)
