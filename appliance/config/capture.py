"""Where readings come from: [[serial]] MCUs, [[i2c]] buses, and each channel with its source."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from appliance.config.fields import Name, PositiveFloat, Strict, path_text


class McuEmulation(Strict):
    """Run an emulated microcontroller on a pseudo-terminal instead of opening real hardware."""

    channels: Annotated[int, Field(ge=1, le=32)] = 4
    rate_hz: Annotated[int, Field(gt=0, le=100_000)] = 1000
    faults: list[str] = []


class SerialConfig(Strict):
    name: Name
    port: str = ""
    """Device path; prefer /dev/serial/by-id/... so it survives re-enumeration."""
    baudrate: Annotated[int, Field(gt=0)] = 921600
    emulate: McuEmulation | None = None

    @field_validator("port")
    @classmethod
    def _absolute_device_path(cls, port: str) -> str:
        if port:
            path_text(port)
            if not port.startswith("/"):
                raise ValueError("must be an absolute device path (/dev/serial/by-id/...)")
        return port

    @model_validator(mode="after")
    def _port_or_emulation(self) -> SerialConfig:
        if not self.port and self.emulate is None:
            raise ValueError("port is required (or an [serial.emulate] table for a simulated MCU)")
        return self


class I2cConfig(Strict):
    name: Name
    bus: int | str
    """Linux bus number (/dev/i2c-N), or "emulated" for the built-in emulated bus."""
    poll_s: Annotated[float, Field(ge=0.05, le=3600)] = 1.0

    @field_validator("bus")
    @classmethod
    def _bus_number_or_emulated(cls, bus: int | str) -> int | str:
        if (isinstance(bus, int) and bus >= 0) or bus == "emulated":
            return bus
        raise ValueError('must be a bus number >= 0 (/dev/i2c-N) or "emulated"')


class SerialSource(Strict):
    serial: Name
    channel: Annotated[int, Field(ge=0, le=255)]
    """Channel id in the MCU's frames (see firmware_bridge/PROTOCOL.md)."""


I2cSensor = Literal["tmp117", "ina219"]
I2cQuantity = Literal["temperature", "bus_voltage", "shunt_voltage", "current", "power"]
SENSOR_QUANTITIES: dict[str, set[str]] = {
    "tmp117": {"temperature"},
    "ina219": {"bus_voltage", "shunt_voltage", "current", "power"},
}


class I2cSource(Strict):
    i2c: Name
    sensor: I2cSensor
    address: Annotated[int, Field(ge=0x03, le=0x77)]
    quantity: I2cQuantity
    shunt_ohms: PositiveFloat = 0.1
    """INA219 only: shunt resistor value."""
    max_current_a: PositiveFloat = 3.2
    """INA219 only: the current range used to compute its calibration register."""

    @model_validator(mode="after")
    def _quantity_fits_sensor(self) -> I2cSource:
        if self.quantity not in SENSOR_QUANTITIES[self.sensor]:
            allowed = ", ".join(sorted(SENSOR_QUANTITIES[self.sensor]))
            raise ValueError(
                f"quantity {self.quantity!r} is not measured by {self.sensor} ({allowed})"
            )
        return self


def _source_kind(value: Any) -> str | None:
    if isinstance(value, SerialSource | I2cSource):
        return "serial" if isinstance(value, SerialSource) else "i2c"
    if isinstance(value, dict):
        return "serial" if "serial" in value else "i2c" if "i2c" in value else None
    return None


Source = Annotated[
    Annotated[SerialSource, Tag("serial")] | Annotated[I2cSource, Tag("i2c")],
    Discriminator(
        _source_kind,
        custom_error_type="source_kind",
        custom_error_message="source needs either a 'serial' key (MCU channel) or an 'i2c' key",
    ),
]

ChannelKind = Literal["vibration", "temperature", "current", "voltage", "power", "pressure", "flow"]


class ChannelConfig(Strict):
    name: Name
    kind: ChannelKind
    rate_hz: Annotated[float, Field(gt=0, le=1_000_000)]
    unit: Annotated[str, Field(min_length=1, max_length=16)]
    valid_range: Annotated[list[float], Field(min_length=2, max_length=2)]
    """[min, max] physically possible values; readings outside mean a broken sensor."""
    source: Source

    @property
    def is_vibration(self) -> bool:
        return self.kind == "vibration"

    @model_validator(mode="after")
    def _check(self) -> ChannelConfig:
        lo, hi = self.valid_range
        if lo >= hi:
            raise ValueError(f"valid_range: min {lo} must be below max {hi}")
        if self.is_vibration and not isinstance(self.source, SerialSource):
            raise ValueError("a vibration channel must come from a serial (MCU) source")
        return self
