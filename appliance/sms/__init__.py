"""SMS through a GSM modem: PDU codec, AT parser, modem session/link, sender and policy.

    pdu.py          pure  encode_sms(number, text, reference) -> [Pdu]; decode_submit(hex, len)
    at.py           pure  AtParser (bytes -> Echo/Info/Prompt/Final/Urc/Stray)
    result_codes.py pure  the +CME/+CMS ERROR tables: what each code means for the message
    errors.py             SmsError and what each subclass means for the message (retry / give up)
    channel.py      I/O   AtChannel: the AT conversation on one open port (commands, answers, URCs)
    session.py      I/O   ModemSession: one open port, the modem set up on it, radio state, sends
    link.py         I/O   ModemLink: keeps a session open (watchdog, reopen with backoff)
    health.py       pure  ModemHealth, the status board's view of the modem
    modem.py        I/O   the names above for the rest of the appliance; a one-SMS command line
    policy.py       pure  SmsPolicy: which alerts go, to whom, how often, and the SMS text
    sender.py       I/O   SmsSender (queue -> modem); the names below for the rest of the appliance
    intake.py       I/O   SmsIntake (alert stage -> durable queue)
    pin_guard.py    I/O   a PIN the SIM refused is not tried again, across restarts
    status.py       pure  SmsStatus, the status board's SMS entry
    settings.py           SmsSettings from the [sms] config table
    gpio.py         I/O   the optional power-cycle hook (libgpiod or sysfs)

The queue itself is the store's `sms_outbox` table (appliance/store/sms.py). The emulated
modem (a SIM800/SIM7600 on a pty, for tests and the demo) is the rig's: appliance/rig/modem/.

A sender (the durable queue) uses only ModemLink:

    link = ModemLink("/dev/serial/by-id/usb-SimTech...", ModemSettings(pin=...),
                     power_cycle=optional_async_hook)
    tg.create_task(link.run())          # the only reconnect loop; runs for the app's life
    await link.wait_ready()             # connected, registered, signal known
    refs = await link.send_sms(number, text, reference=row_id % 256, first_part=0)

and on SmsError: MessageRejected -> give up on this message; ModemUnusable -> keep it, the
modem needs a human (show link.health.last_error); anything else -> retry later with
backoff, from `first_part=error.parts_done` with the same reference; `error.maybe_sent`
says the SMS may already have gone (a retry can duplicate it). link.health is the status
board entry (signal, registration, operator, last success, reopens, power cycles, errors).
"""
