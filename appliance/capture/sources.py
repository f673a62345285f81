"""The capture stage's sources built from the config: a SerialLink per [serial] MCU and an
I2cPoller per [i2c] bus, each channel mapped to its (asset, channel); emulated ones on the
devices the rig hands in (appliance/devices.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from appliance.capture.i2c import I2cPoller, PolledSensor, SmbusLike, build_sensor, open_smbus
from appliance.capture.serial_link import SerialLink
from appliance.config import ApplianceConfig, I2cConfig, I2cSource, SerialConfig, SerialSource
from appliance.devices import EmulatedDevices, emulated
from appliance.records import SampleBlock

log = structlog.get_logger(__name__)


@dataclass
class Sources:
    """Everything that produces SampleBlocks."""

    links: dict[str, SerialLink] = field(default_factory=dict)
    pollers: dict[str, I2cPoller] = field(default_factory=dict)

    def tasks(self) -> list[Coroutine[Any, Any, None]]:
        return [
            *(link.run() for link in self.links.values()),
            *(poller.run() for poller in self.pollers.values()),
        ]

    async def check_i2c(self) -> None:
        """Identify every sensor once at start; a missing one is logged loudly and retried
        later."""
        for name, poller in self.pollers.items():
            try:
                await poller.check()
            except Exception as exc:
                log.error("i2c_sensor_check_failed", bus=name, problems=str(exc))


def build_sources(
    config: ApplianceConfig,
    blocks: asyncio.Queue[SampleBlock],
    devices: EmulatedDevices | None = None,
) -> Sources:
    sources = Sources()
    for device in config.serial:
        port = device.port
        if device.emulate is not None:
            port = emulated(devices, f"serial[{device.name}]").serial_ports[device.name]
        assert port is not None
        sources.links[device.name] = serial_link(config, device, port, blocks)
    for bus in config.i2c:
        sources.pollers[bus.name] = i2c_poller(config, bus, blocks, devices)
    return sources


def serial_link(
    config: ApplianceConfig,
    device: SerialConfig,
    port: str,
    blocks: asyncio.Queue[SampleBlock],
) -> SerialLink:
    channel_map: dict[int, tuple[str, str]] = {}
    rates: dict[int, float] = {}
    for asset in config.assets:
        for channel in asset.channels:
            source = channel.source
            if isinstance(source, SerialSource) and source.serial == device.name:
                channel_map[source.channel] = (asset.name, channel.name)
                rates[source.channel] = channel.rate_hz
    return SerialLink(port, channel_map, blocks, expected_rate_hz=rates, baudrate=device.baudrate)


def i2c_poller(
    config: ApplianceConfig,
    bus_config: I2cConfig,
    blocks: asyncio.Queue[SampleBlock],
    devices: EmulatedDevices | None,
) -> I2cPoller:
    by_address: dict[int, tuple[I2cSource, dict[str, tuple[str, str]]]] = {}
    for asset in config.assets:
        for channel in asset.channels:
            source = channel.source
            if isinstance(source, I2cSource) and source.i2c == bus_config.name:
                _, quantities = by_address.setdefault(source.address, (source, {}))
                quantities[source.quantity] = (asset.name, channel.name)
    bus = open_bus(bus_config, devices)
    sensors = [
        PolledSensor(
            build_sensor(
                source.sensor,
                bus,
                address,
                bus_config.name,
                shunt_ohms=source.shunt_ohms,
                max_current_a=source.max_current_a,
            ),
            quantities,
        )
        for address, (source, quantities) in by_address.items()
    ]
    return I2cPoller(sensors, blocks, period_s=bus_config.poll_s)


def open_bus(bus_config: I2cConfig, devices: EmulatedDevices | None) -> SmbusLike:
    if bus_config.bus != "emulated":
        return open_smbus(int(bus_config.bus))
    return emulated(devices, f"i2c[{bus_config.name}]").i2c_buses[bus_config.name]
