"""The rig is attached from outside: the runtime refuses emulated parts without it, and the
emulated devices it attaches appear while they run and vanish after."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import app, rig
from appliance.capture.i2c import Tmp117
from appliance.errors import ConfigError
from appliance.rig.demo import demo_config


async def test_the_runtime_refuses_an_emulated_device_without_the_rig(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"serial\[mcu0\] is emulated"):
        await app.run_appliance(demo_config(tmp_path, []), seconds=0.0)


async def test_attached_devices_appear_while_running_and_vanish_after(tmp_path: Path) -> None:
    delivered: list[object] = []
    async with rig.attach(demo_config(tmp_path, [])) as devices:
        assert devices.modem_port is not None
        paths = [Path(p) for p in devices.serial_ports.values()] + [Path(devices.modem_port)]
        assert sorted(devices.serial_ports) == ["mcu0", "mcu1"]
        assert not any(path.exists() for path in paths)
        async with devices.running(delivered.append):
            assert all(path.resolve().is_char_device() for path in paths)
            for address in (0x48, 0x49):  # the two bearing temperatures the config names
                Tmp117(devices.i2c_buses["bus1"], address, "bus1").initialize()
        assert not any(path.exists() for path in paths)
    assert delivered == []


def test_check_names_a_bad_emulated_fault(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"serial\[mcu1\]\.emulate\.faults: bad fault 'nope=1'"):
        rig.check(demo_config(tmp_path, ["nope=1"]))


async def test_an_error_while_running_passes_through_unwrapped(tmp_path: Path) -> None:
    """cli.py turns a ConfigError into one line; wrapped in an ExceptionGroup it would not."""
    async with rig.attach(demo_config(tmp_path, [])) as devices:
        with pytest.raises(ConfigError, match="a busy port"):
            async with devices.running(lambda _: None):
                raise ConfigError("a busy port")
