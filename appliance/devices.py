"""The emulated devices the composition root (app.py) opens in place of hardware.

A config asks for them with a [serial.emulate] table, an [i2c] `bus = "emulated"` or [sms]
`emulate = true`. The runtime does not build them: whoever starts it hands them in as
`EmulatedDevices` (the rig, appliance/rig/, makes them from the config; the command line
attaches it). Nothing under capture/, sms/ or app.py knows what is behind these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol

from appliance.errors import ConfigError

if TYPE_CHECKING:
    from appliance.capture.i2c import SmbusLike
    from appliance.sms.sender import ShownSms


class EmulatedDevices(Protocol):
    @property
    def serial_ports(self) -> Mapping[str, str]:
        """[serial] name -> the path its emulated MCU appears at."""

    @property
    def i2c_buses(self) -> Mapping[str, SmbusLike]:
        """[i2c] name -> its emulated bus."""

    @property
    def modem_port(self) -> str | None:
        """The path the emulated modem appears at (None: no emulated modem)."""

    def running(
        self, on_sms_delivered: Callable[[ShownSms], None]
    ) -> AbstractAsyncContextManager[None]:
        """While entered, the emulated devices run (MCUs stream, the modem boots and answers);
        `on_sms_delivered` gets each SMS the emulated modem took."""


def emulated(devices: EmulatedDevices | None, what: str) -> EmulatedDevices:
    """The devices `what` is emulated on; ConfigError if no rig attached them."""
    if devices is None:
        raise ConfigError(f"{what} is emulated: run it with the rig attached (appliance.rig)")
    return devices
