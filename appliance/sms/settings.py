"""What the SMS side needs, built from the [sms] config (the PIN file read and checked here).

With `emulate = true` (the demo) the link gets shorter deadlines; the emulated modem itself
is the rig's (appliance/rig/), attached by the command line.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from appliance.config import SmsConfig, read_text_file
from appliance.errors import ConfigError
from appliance.sms.modem import ModemSettings
from appliance.sms.policy import PolicySettings
from appliance.sms.sender import SenderSettings

EMULATED_LINK = ModemSettings(
    probe_timeout_s=0.5,
    boot_timeout_s=5.0,
    command_timeout_s=5.0,
    sim_timeout_s=10.0,
    registration_timeout_s=20.0,
    ready_timeout_s=10.0,
    send_timeout_s=10.0,
    poll_interval_s=0.1,
    check_interval_s=10.0,
    check_timeout_s=2.0,
    reopen_initial_s=0.2,
    reopen_max_s=5.0,
)
"""The link's deadlines against the emulated modem (a real one takes the defaults)."""


@dataclass(frozen=True)
class GpioPowerCycle:
    chip: str
    offset: int
    active_low: bool
    off_s: float


@dataclass(frozen=True)
class SmsSettings:
    port: str | None
    """None: run the emulated modem (its pty path is known only when it runs)."""
    modem: ModemSettings
    policy: PolicySettings
    sender: SenderSettings
    emulated: bool
    """The modem is the rig's emulated one (its pty path comes with the emulated devices)."""
    power_cycle: GpioPowerCycle | None


def sms_settings(gateway_id: str, config: SmsConfig) -> SmsSettings:
    """Settings from the validated [sms] table; ConfigError if pin_file is unusable."""
    pin = config.pin if config.pin_file is None else read_pin(config.pin_file)
    base = EMULATED_LINK if config.emulate else ModemSettings()
    modem = dataclasses.replace(
        base, pin=pin, baudrate=config.baudrate, power_cycle_after=config.power_cycle_after
    )
    policy = PolicySettings(
        gateway_id=gateway_id,
        recipients=tuple(config.recipients),
        severities=frozenset(config.severities),
        events=frozenset(config.events),
        families=None if config.kinds is None else frozenset(config.kinds),
        max_per_hour=config.max_per_hour,
        max_per_day=config.max_per_day,
        timezone=config.timezone,
    )
    sender = SenderSettings(
        retry_initial_s=config.retry_initial_s,
        retry_max_s=config.retry_max_s,
        give_up_after_s=config.give_up_after_s,
        max_copies=config.max_copies,
    )
    power_cycle = None
    if config.power_cycle_gpio is not None:
        power_cycle = GpioPowerCycle(
            config.power_cycle_gpio_chip,
            config.power_cycle_gpio,
            config.power_cycle_active_low,
            config.power_cycle_off_s,
        )
    return SmsSettings(
        port=config.port,
        modem=modem,
        policy=policy,
        sender=sender,
        emulated=config.emulate,
        power_cycle=power_cycle,
    )


def read_pin(path: str) -> str:
    pin = read_text_file("sms.pin_file", path).strip()
    if not re.fullmatch(r"[0-9]{4,8}", pin):
        raise ConfigError(f"sms.pin_file: {path} must hold the SIM PIN (4-8 digits) on one line")
    return pin
