"""A GSM modem: `ModemLink` keeps a session open and sends (sms/link.py), `ModemSession` is one
open port with the modem set up on it (sms/session.py), `AtChannel` the AT conversation under
it (sms/channel.py), `ModemHealth` what the status page shows (sms/health.py). The rest of the
appliance imports them from here.

Standalone, to try a real modem or the emulator:
    python -m appliance.sms.modem --port /dev/serial/by-id/usb-SimTech... --to +4917... "text"
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Sequence

from appliance.logging import configure_logging
from appliance.sms.errors import SmsError
from appliance.sms.health import ModemHealth
from appliance.sms.link import ModemLink, PowerCycle
from appliance.sms.session import ModemSession, ModemSettings, UrcHandler

__all__ = [
    "ModemHealth",
    "ModemLink",
    "ModemSession",
    "ModemSettings",
    "PowerCycle",
    "UrcHandler",
    "main",
]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m appliance.sms.modem", description="Send one SMS through a modem."
    )
    parser.add_argument("--port", required=True, help="serial port (a by-id path on the Pi)")
    parser.add_argument("--to", required=True, help="destination number, +<country><number>")
    parser.add_argument("--pin", help="SIM PIN, if the SIM asks for one")
    parser.add_argument("--timeout", type=float, default=240.0, help="give up after (s)")
    parser.add_argument("text")
    return parser.parse_args(argv)


async def _send_once(args: argparse.Namespace) -> int:
    link = ModemLink(args.port, ModemSettings(pin=args.pin))
    task = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(args.timeout):
            await link.wait_ready()
            references = await link.send_sms(args.to, args.text)
        print(f"sent, message references {references}")
        return 0
    except (SmsError, TimeoutError) as error:
        print(f"not sent: {error!r}; last error: {link.health.last_error}", file=sys.stderr)
        return 1
    finally:
        print(dataclasses.asdict(link.health), file=sys.stderr)
        task.cancel()
        await asyncio.wait([task])


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging("info")  # to stderr: stdout shows the result
    return asyncio.run(_send_once(_parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
