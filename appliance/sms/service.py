"""The SMS service as the composition root builds it: the sender (owns the modem link), its
intake for the alert stage, and the status the board shows."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.devices import EmulatedDevices, emulated
from appliance.sms.gpio import gpio_line, power_cycle_hook
from appliance.sms.modem import ModemHealth
from appliance.sms.policy import DAY_S, SmsPolicy
from appliance.sms.sender import SmsIntake, SmsSender, SmsStatus, usable_pin
from appliance.sms.settings import SmsSettings
from appliance.status import StatusBoard
from appliance.store import SmsQueue


@dataclass
class SmsService:
    """The SMS sender task (owns the modem link), the alert stage's intake, and the status
    board entry."""

    sender: SmsSender
    intake: SmsIntake
    status: SmsStatus


async def open_sms(
    settings: SmsSettings,
    sms_queue: SmsQueue,
    board: StatusBoard,
    devices: EmulatedDevices | None,
    on_alert_stored: Callable[[], None],
) -> SmsService:
    """The SMS sender and its intake, not yet running (emulate = true: on the emulated modem).

    A PIN the SIM refused before (flag in the store) is not used; the policy's rate limits
    continue from the messages queued in the last 24 h."""
    pin, refused = await usable_pin(sms_queue, settings.modem.pin)
    status = SmsStatus(
        ModemHealth(),
        len(settings.policy.recipients),
        emulated=settings.emulated,
        pin_rejected=refused,
    )
    port = settings.port
    if settings.emulated:
        port = emulated(devices, "sms").modem_port
    assert port is not None
    power_cycle = None
    if settings.power_cycle is not None:
        gpio = settings.power_cycle
        line = gpio_line(gpio.chip, gpio.offset, active_low=gpio.active_low)
        power_cycle = power_cycle_hook(line, gpio.off_s)
    sender = SmsSender(
        sms_queue,
        port,
        dataclasses.replace(settings.modem, pin=pin),
        settings.sender,
        status,
        power_cycle=power_cycle,
        on_alert_stored=on_alert_stored,
    )
    history = await sms_queue.sms_created_since(time.time() - DAY_S)
    policy = SmsPolicy(settings.policy, history)
    intake = SmsIntake(policy, sms_queue, settings.sender.give_up_after_s, sender.wake, status)
    board.sms = status
    return SmsService(sender, intake, status)
