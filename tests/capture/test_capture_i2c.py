"""I2C drivers and poller against the register-level emulated bus."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from appliance.capture.i2c import (
    I2cPoller,
    Ina219,
    PolledSensor,
    SensorValueError,
    Tmp117,
    build_sensor,
)
from appliance.errors import DeviceError
from appliance.records import SampleBlock
from appliance.rig.i2c import (
    EmulatedI2cBus,
    EmulatedIna219,
    EmulatedTmp117,
    PlantModel,
)

Waiter = Callable[..., Awaitable[None]]


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def plant(fake_time: FakeTime) -> PlantModel:
    return PlantModel(fake_time)


@pytest.fixture
def tmp117(plant: PlantModel) -> EmulatedTmp117:
    return EmulatedTmp117(plant, 0x48)


@pytest.fixture
def ina219(plant: PlantModel, fake_time: FakeTime) -> EmulatedIna219:
    return EmulatedIna219(plant, 0x40, shunt_ohms=0.1, now=fake_time)


@pytest.fixture
def bus(tmp117: EmulatedTmp117, ina219: EmulatedIna219) -> EmulatedI2cBus:
    return EmulatedI2cBus([tmp117, ina219])


def test_word_reads_are_byte_swapped_like_smbus(bus: EmulatedI2cBus) -> None:
    assert bus.read_word_data(0x48, 0x0F) == 0x1701  # register holds 0x0117, MSB first on wire
    assert bus.read_i2c_block_data(0x48, 0x0F, 2) == [0x01, 0x17]
    bus.write_word_data(0x40, 0x05, 0x3412)
    assert bus.read_i2c_block_data(0x40, 0x05, 2) == [0x12, 0x34]
    bus.write_i2c_block_data(0x40, 0x05, [0x10, 0x00])
    assert bus.read_word_data(0x40, 0x05) == 0x0010


def test_absent_address_nacks_with_errno_121(bus: EmulatedI2cBus) -> None:
    with pytest.raises(OSError) as caught:
        bus.read_word_data(0x4A, 0x00)
    assert caught.value.errno == 121


@pytest.mark.parametrize(
    ("celsius", "register"),
    [(25.0, 0x0C80), (-12.5, 0xF9C0), (-0.0078125, 0xFFFF), (-55.0, 0xE480), (149.9921875, 0x4AFF)],
)
def test_tmp117_decodes_signed_big_endian_temperature(
    bus: EmulatedI2cBus, tmp117: EmulatedTmp117, celsius: float, register: int
) -> None:
    tmp117.fixed_temperature_c = celsius
    assert bus.read_i2c_block_data(0x48, 0x00, 2) == [register >> 8, register & 0xFF]
    sensor = Tmp117(bus, 0x48, "i2c-1")
    sensor.initialize()
    assert sensor.read() == {"temperature": celsius}


@pytest.mark.parametrize("raw", [0x8000, 0x7FFF])
def test_tmp117_rejects_no_conversion_and_out_of_range(
    bus: EmulatedI2cBus, tmp117: EmulatedTmp117, raw: int
) -> None:
    tmp117.forced_raw = raw
    with pytest.raises(SensorValueError, match="0x48"):
        Tmp117(bus, 0x48, "i2c-1").read()


def test_tmp117_identity_check_names_bus_and_address(
    plant: PlantModel, fake_time: FakeTime
) -> None:
    impostor = EmulatedIna219(plant, 0x48, now=fake_time)
    bus = EmulatedI2cBus([impostor])
    with pytest.raises(DeviceError, match=r"TMP117 on i2c-3 at address 0x48.*expected 0x0117"):
        Tmp117(bus, 0x48, "i2c-3").initialize()


def test_ina219_reads_voltage_current_power(bus: EmulatedI2cBus, ina219: EmulatedIna219) -> None:
    ina219.fixed_current_a = 1.5
    ina219.fixed_bus_voltage_v = 12.0
    sensor = Ina219(bus, 0x40, "i2c-1", shunt_ohms=0.1, max_current_a=3.2)
    sensor.initialize()
    values = sensor.read()
    current_lsb = 3.2 / 32768
    assert values["bus_voltage"] == pytest.approx(12.0)
    assert values["shunt_voltage"] == pytest.approx(0.15)
    assert values["current"] == pytest.approx(1.5, abs=2 * current_lsb)
    assert values["power"] == pytest.approx(18.0, abs=20 * current_lsb * 2)


def test_ina219_negative_current(bus: EmulatedI2cBus, ina219: EmulatedIna219) -> None:
    ina219.fixed_current_a = -0.75
    sensor = Ina219(bus, 0x40, "i2c-1")
    sensor.initialize()
    assert sensor.read()["current"] == pytest.approx(-0.75, abs=2 * 3.2 / 32768)


def test_ina219_current_is_zero_until_calibrated(
    bus: EmulatedI2cBus, ina219: EmulatedIna219
) -> None:
    ina219.fixed_current_a = 1.0
    assert bus.read_word_data(0x40, 0x04) == 0
    assert bus.read_word_data(0x40, 0x01) != 0  # shunt voltage is measured regardless


def test_ina219_rewrites_calibration_lost_in_a_brownout(
    bus: EmulatedI2cBus, ina219: EmulatedIna219
) -> None:
    ina219.fixed_current_a = 2.0
    sensor = Ina219(bus, 0x40, "i2c-1")
    sensor.initialize()
    ina219.power_on_reset()
    assert sensor.read()["current"] == pytest.approx(2.0, abs=2 * 3.2 / 32768)
    assert sensor.recalibrations == 1


def test_ina219_overflow_flag_is_an_invalid_value(
    bus: EmulatedI2cBus, ina219: EmulatedIna219
) -> None:
    ina219.fixed_current_a = 5.0  # 0.5 V across 0.1 Ω, beyond the ±320 mV range
    sensor = Ina219(bus, 0x40, "i2c-1")
    sensor.initialize()
    with pytest.raises(SensorValueError, match="overflow"):
        sensor.read()


def test_plant_temperature_follows_load_with_lag(plant: PlantModel, fake_time: FakeTime) -> None:
    readings = []
    for minute in range(0, 60):
        fake_time.now = minute * 60.0
        readings.append(plant.temperature_c())
    assert all(15.0 < t < 60.0 for t in readings)
    assert max(readings) - min(readings) > 2.0  # it drifts
    steps = [abs(b - a) for a, b in itertools.pairwise(readings)]
    assert max(steps) < 2.0  # slowly


def mapped(bus: EmulatedI2cBus, name: str = "i2c-1") -> list[PolledSensor]:
    return [
        PolledSensor(build_sensor("tmp117", bus, 0x48, name), {"temperature": ("pump", "temp")}),
        PolledSensor(
            build_sensor("ina219", bus, 0x40, name),
            {"bus_voltage": ("pump", "supply_v"), "current": ("pump", "motor_a")},
        ),
    ]


def drain(queue: asyncio.Queue[SampleBlock]) -> dict[tuple[str, str], SampleBlock]:
    blocks = {}
    while not queue.empty():
        block = queue.get_nowait()
        blocks[block.asset, block.channel] = block
    return blocks


async def test_poller_maps_quantities_to_asset_channels(
    bus: EmulatedI2cBus, tmp117: EmulatedTmp117, ina219: EmulatedIna219
) -> None:
    tmp117.fixed_temperature_c = -20.0
    ina219.fixed_current_a = 1.25
    ina219.fixed_bus_voltage_v = 23.8
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    poller = I2cPoller(mapped(bus), queue, period_s=0.5)
    await poller.check()
    await poller.poll_once()
    blocks = drain(queue)
    assert set(blocks) == {("pump", "temp"), ("pump", "supply_v"), ("pump", "motor_a")}
    assert blocks["pump", "temp"].samples.tolist() == [-20.0]
    assert blocks["pump", "supply_v"].samples[0] == pytest.approx(23.8)
    assert blocks["pump", "motor_a"].samples[0] == pytest.approx(1.25, abs=2e-4)
    assert blocks["pump", "temp"].rate == 2.0


async def test_check_reports_absent_sensor_clearly(bus: EmulatedI2cBus) -> None:
    bus.vanish(0x48)
    poller = I2cPoller(mapped(bus), asyncio.Queue())
    with pytest.raises(DeviceError, match=r"TMP117 on i2c-1 at address 0x48: .*no ACK"):
        await poller.check()
    assert poller.stats.sensors["INA219 on i2c-1 at address 0x40"].initialized


async def test_sensor_vanishes_fails_and_recovers(
    bus: EmulatedI2cBus, ina219: EmulatedIna219
) -> None:
    ina219.fixed_current_a = 2.0
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    poller = I2cPoller(mapped(bus), queue, fail_after=3)
    await poller.check()
    ina_stats = poller.stats.sensors["INA219 on i2c-1 at address 0x40"]
    tmp_stats = poller.stats.sensors["TMP117 on i2c-1 at address 0x48"]

    bus.vanish(0x40)
    for _ in range(4):
        await poller.poll_once()
    assert ina_stats.read_errors == 4
    assert ina_stats.failed
    assert "no ACK" in (ina_stats.last_error or "")
    assert not tmp_stats.failed and tmp_stats.reads == 4
    drain(queue)

    bus.reappear(0x40)  # powered up again: calibration register back to 0
    await poller.poll_once()
    assert (ina_stats.failed, ina_stats.consecutive_failures) == (False, 0)
    assert drain(queue)["pump", "motor_a"].samples[0] == pytest.approx(2.0, abs=2e-4)


async def test_stuck_and_out_of_range_values(
    bus: EmulatedI2cBus, tmp117: EmulatedTmp117, fake_time: FakeTime
) -> None:
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    poller = I2cPoller(mapped(bus), queue)
    tmp117.stick()
    first = tmp117.read_register(0x00)
    fake_time.now += 3600.0
    assert tmp117.read_register(0x00) == first
    tmp117.stick(False)
    tmp117.forced_raw = 0x7FFF
    await poller.poll_once()
    stats = poller.stats.sensors["TMP117 on i2c-1 at address 0x48"]
    assert stats.invalid_values == 1
    assert "out of range" in (stats.last_error or "")
    assert ("pump", "temp") not in drain(queue)


async def test_run_polls_periodically(bus: EmulatedI2cBus, wait_until: Waiter) -> None:
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    poller = I2cPoller(mapped(bus), queue, period_s=0.01)
    task = asyncio.create_task(poller.run())
    try:
        await wait_until(lambda: queue.qsize() >= 9, "three polls")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    times = [queue.get_nowait().t0 for _ in range(9)]
    assert times == sorted(times)


def test_default_bus_has_both_chips() -> None:
    bus = EmulatedI2cBus.with_default_chips()
    Tmp117(bus, 0x48, "emulated").initialize()
    values = Ina219(bus, 0x40, "emulated")
    values.initialize()
    assert 0.0 < values.read()["current"] < 3.2
