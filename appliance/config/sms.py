"""The [sms] table: the modem, the recipients and which alerts go, at what rate."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from appliance.config.fields import PathText, Strict, refuse_duplicates
from appliance.config.zones import ZoneName


def _e164(number: str) -> str:
    if not re.fullmatch(r"\+[1-9][0-9]{6,14}", number):
        raise ValueError(
            "must be an international number in E.164 form: +, country code and number, "
            "7-15 digits, no spaces (e.g. +491701234567)"
        )
    return number


def _sim_pin(pin: str) -> str:
    if not re.fullmatch(r"[0-9]{4,8}", pin):
        raise ValueError("a SIM PIN is 4 to 8 digits")
    return pin


E164 = Annotated[str, AfterValidator(_e164)]
SimPin = Annotated[str, AfterValidator(_sim_pin)]
AlertFamily = Literal[
    "anomaly", "systemic", "impossible_value", "flatline", "spike", "dropout", "drift"
]
"""What an alert is about: its kind without _raised/_escalated/_cleared."""
AlarmEvent = Literal["raised", "escalated", "cleared"]
UNSTABLE_PORTS = ("/dev/ttyUSB", "/dev/ttyACM")


class SmsConfig(Strict):
    """Critical alerts by SMS through a GSM modem (appliance/sms/: policy.py, sender.py)."""

    port: PathText | None = None
    """The modem's AT port by a stable name: /dev/serial/by-id/... or the udev rule's
    /dev/appliance/modem (image/udev/). /dev/ttyUSBn and /dev/ttyACMn are refused: their
    numbers change when USB re-enumerates."""
    emulate: bool = False
    """Run an emulated SIM800 on a pseudo-terminal instead (the demo; no SMS leaves)."""
    baudrate: Annotated[int, Field(gt=0)] = 115200
    pin: SimPin | None = None
    pin_file: PathText | None = None
    """A file holding the SIM PIN (one line); keeps it out of the config file."""
    recipients: Annotated[list[E164], Field(min_length=1, max_length=20)]
    severities: Annotated[list[Literal["warning", "critical"]], Field(min_length=1)] = ["critical"]
    """Raised/escalated alerts of these severities go by SMS; a cleared alert goes when its
    alarm's raise or escalation went."""
    events: Annotated[list[AlarmEvent], Field(min_length=1)] = ["raised", "escalated", "cleared"]
    kinds: Annotated[list[AlertFamily], Field(min_length=1)] | None = None
    """Alert families that may go by SMS; default: all."""
    max_per_hour: Annotated[int, Field(ge=1, le=60)] = 6
    """Per recipient, in any 60 minutes; what is held back is summarised in the next SMS."""
    max_per_day: Annotated[int, Field(ge=1, le=500)] = 30
    """Per recipient, in any 24 hours."""
    give_up_after_s: Annotated[float, Field(ge=60, le=7 * 86400)] = 6 * 3600.0
    """A message not sent by then is given up: status page, log, and an sms_given_up alert
    over the uplink."""
    retry_initial_s: Annotated[float, Field(ge=1, le=3600)] = 30.0
    """Backoff after a failed send, doubling per attempt up to retry_max_s."""
    retry_max_s: Annotated[float, Field(ge=1, le=86400)] = 900.0
    max_copies: Annotated[int, Field(ge=1, le=10)] = 2
    """A message that may have reached its recipient this many times without the modem
    confirming it (no answer after it went out) is given up, visibly, rather than resent."""
    timezone: ZoneName = "UTC"
    """IANA zone for the local time in the text, e.g. "Europe/Berlin"."""
    power_cycle_gpio: Annotated[int, Field(ge=0, le=1023)] | None = None
    """GPIO line (offset on power_cycle_gpio_chip) that cuts the modem's power while active
    (appliance/sms/gpio.py); pulsed after power_cycle_after consecutive failures."""
    power_cycle_gpio_chip: Annotated[str, Field(pattern=r"^gpiochip[0-9]{1,3}$")] = "gpiochip0"
    power_cycle_active_low: bool = False
    power_cycle_off_s: Annotated[float, Field(ge=0.1, le=60)] = 3.0
    power_cycle_after: Annotated[int, Field(ge=1, le=100)] = 5

    @model_validator(mode="after")
    def _check(self) -> SmsConfig:
        if (self.port is None) == (not self.emulate):
            raise ValueError("give the modem's port, or emulate = true (not both)")
        if self.port is not None:
            if not self.port.startswith("/"):
                raise ValueError(f"port {self.port!r} must be an absolute device path")
            if self.port.startswith(UNSTABLE_PORTS):
                raise ValueError(
                    f"port {self.port!r} can change name when USB re-enumerates: use "
                    "/dev/serial/by-id/... or /dev/appliance/modem (image/udev/)"
                )
        if self.pin is not None and self.pin_file is not None:
            raise ValueError("give pin or pin_file, not both")
        refuse_duplicates("recipients", self.recipients)
        if self.max_per_hour > self.max_per_day:
            raise ValueError(
                f"max_per_hour ({self.max_per_hour}) exceeds max_per_day ({self.max_per_day})"
            )
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError(
                f"retry_max_s ({self.retry_max_s}) is below retry_initial_s "
                f"({self.retry_initial_s})"
            )
        if self.give_up_after_s <= self.retry_initial_s:
            raise ValueError(
                f"give_up_after_s ({self.give_up_after_s}) leaves no room for a retry "
                f"(retry_initial_s {self.retry_initial_s})"
            )
        if self.emulate and self.power_cycle_gpio is not None:
            raise ValueError("power_cycle_gpio switches real hardware: not with emulate = true")
        return self
