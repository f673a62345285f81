"""attach(config): the emulated devices for the parts of a config that ask for them, handed to
the runtime as an `EmulatedDevices` (appliance/devices.py). The runtime never imports this."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from appliance import app
from appliance.capture.i2c import SmbusLike
from appliance.config import ApplianceConfig, I2cSource, SerialConfig, SerialSource
from appliance.diagnosis.from_config import bearing_orders
from appliance.errors import ConfigError
from appliance.rig.i2c import (
    EmulatedChip,
    EmulatedI2cBus,
    EmulatedIna219,
    EmulatedTmp117,
    PlantModel,
)
from appliance.rig.mcu import EmulatedMcu, FaultPlan, MachineSignal, parse_faults
from appliance.rig.modem import EmulatedModem, EmulatorSettings
from appliance.sms.sender import ShownSms
from appliance.sms.settings import sms_settings

log = structlog.get_logger(__name__)

ORDER_NAMES = ("bpfo", "bpfi", "bsf", "ftf")
"""DefectOrders fields, each the emulator's <name>_order fault."""

EMULATED_MODEM = EmulatorSettings(
    boot_s=0.2,
    sim_busy_s=0.3,
    pin_unlock_s=0.1,
    registration_s=1.0,
    signal_unknown_s=0.5,
    response_delay_s=0.005,
    prompt_delay_s=0.01,
    submit_delay_s=0.3,
)
"""The demo's modem: the same sequence of events as a real SIM800 (boot, SIM busy,
registration, CSQ 99 first) in about a second, and a network round trip of 0.3 s per part."""


class Rig:
    """The emulated MCUs, I2C buses and modem of one config; their ptys live in `run_dir`
    (an emulated MCU with a configured port appears there instead)."""

    def __init__(self, config: ApplianceConfig, run_dir: Path) -> None:
        self._mcus = {
            device.name: emulated_mcu(
                device, device.port or str(run_dir / device.name), machine_faults(config, device)
            )
            for device in config.serial
            if device.emulate is not None
        }
        self._buses: dict[str, SmbusLike] = {
            bus.name: emulated_bus(config, bus.name) for bus in config.i2c if bus.bus == "emulated"
        }
        self._modem_port: str | None = None
        self._modem_pin: str | None = None
        if config.sms is not None and config.sms.emulate:
            self._modem_port = str(run_dir / "modem")
            self._modem_pin = sms_settings(config.gateway.id, config.sms).modem.pin

    @property
    def serial_ports(self) -> Mapping[str, str]:
        return {name: str(mcu.link_path) for name, mcu in self._mcus.items()}

    @property
    def i2c_buses(self) -> Mapping[str, SmbusLike]:
        return self._buses

    @property
    def modem_port(self) -> str | None:
        return self._modem_port

    @contextlib.asynccontextmanager
    async def running(self, on_sms_delivered: Callable[[ShownSms], None]) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if self._modem_port is not None:
                modem = EmulatedModem(
                    link_path=self._modem_port,
                    settings=EMULATED_MODEM,
                    pin=self._modem_pin,
                    on_delivered=on_sms_delivered,
                )
                await stack.enter_async_context(modem)
            for mcu in self._mcus.values():
                stack.enter_context(mcu)
            # Plain tasks, not a TaskGroup: an error of the caller's must pass through unwrapped.
            streams = [asyncio.create_task(mcu.run(), name=n) for n, mcu in self._mcus.items()]
            for stream in streams:
                stream.add_done_callback(_log_failure)
            try:
                yield
            finally:
                for stream in streams:
                    stream.cancel()
                await asyncio.gather(*streams, return_exceptions=True)


def _log_failure(stream: asyncio.Task[None]) -> None:
    if not stream.cancelled() and stream.exception() is not None:
        log.error("emulated_mcu_failed", serial=stream.get_name(), error=repr(stream.exception()))


@contextlib.asynccontextmanager
async def attach(config: ApplianceConfig) -> AsyncIterator[Rig]:
    """The emulated devices for `config` (ConfigError for a bad fault); their ptys in a
    temporary directory that goes with them."""
    with tempfile.TemporaryDirectory(prefix="appliance-rig-") as run_dir:
        yield Rig(config, Path(run_dir))


def check(config: ApplianceConfig) -> None:
    """What attach would refuse (a bad [serial.emulate] fault), as a ConfigError."""
    for device in config.serial:
        if device.emulate is not None:
            _faults(device)


async def run_appliance(config: ApplianceConfig, **options: Any) -> int:
    """appliance.app.run_appliance with the rig attached for the config's emulated parts;
    its exit status."""
    async with attach(config) as rig:
        return await app.run_appliance(config, devices=rig, **options)


def emulated_mcu(device: SerialConfig, port: str, machine_given: Sequence[str] = ()) -> EmulatedMcu:
    """`machine_given`: name=value settings of the machine (machine_faults), which the
    device's own faults override."""
    assert device.emulate is not None
    faults, machine = _faults(device, machine_given)
    return EmulatedMcu(
        link_path=port,
        rate_hz=device.emulate.rate_hz,
        channels=device.emulate.channels,
        faults=faults,
        signal=machine,
        seed=hash(device.name) & 0xFFFF,
    )


def machine_faults(config: ApplianceConfig, device: SerialConfig) -> list[str]:
    """The emulated machine as the config describes the asset this MCU measures: its shaft
    speed and its first bearing's defect orders (so an injected defect rings where the
    diagnosis looks); none for an MCU of no asset with an [assets.machine] table."""
    for asset in config.assets:
        fed = any(
            isinstance(c.source, SerialSource) and c.source.serial == device.name
            for c in asset.channels
        )
        if not fed or asset.machine is None:
            continue
        given = [f"shaft_hz={asset.speed_rpm / 60}"] if asset.speed_rpm is not None else []
        orders = list(bearing_orders(asset.machine).values())
        if orders:
            first = orders[0]
            given += [f"{name}_order={getattr(first, name)}" for name in ORDER_NAMES]
        return given
    return []


def _faults(
    device: SerialConfig, machine_given: Sequence[str] = ()
) -> tuple[FaultPlan, MachineSignal]:
    assert device.emulate is not None
    try:
        return parse_faults([*machine_given, *device.emulate.faults])
    except ValueError as exc:
        raise ConfigError(f"serial[{device.name}].emulate.faults: {exc}") from None


def emulated_bus(config: ApplianceConfig, bus_name: str) -> EmulatedI2cBus:
    """The bus with an emulated TMP117 or INA219 at each address the config's channels name."""
    sources: dict[int, I2cSource] = {}
    for asset in config.assets:
        for channel in asset.channels:
            source = channel.source
            if isinstance(source, I2cSource) and source.i2c == bus_name:
                sources.setdefault(source.address, source)
    plant = PlantModel()
    chips: list[EmulatedChip] = [
        EmulatedTmp117(plant, s.address)
        if s.sensor == "tmp117"
        else EmulatedIna219(plant, s.address)
        for s in sources.values()
    ]
    return EmulatedI2cBus(chips)
