"""Standalone emulated modem (prints each SMS that would have been sent):
python -m appliance.rig.modem --link /tmp/modem --fast"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
import time
from collections.abc import Sequence

from appliance.logging import configure_logging
from appliance.rig.modem.records import MODELS, EmulatorSettings
from appliance.rig.modem.session import EmulatedModem


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m appliance.rig.modem", description="An emulated GSM modem on a pty."
    )
    parser.add_argument("--link", help="maintain this symlink to the pty (like /dev/serial/by-id)")
    parser.add_argument("--model", choices=MODELS, default="SIM800")
    parser.add_argument("--pin", help="the SIM asks for this PIN")
    parser.add_argument("--roaming", action="store_true")
    parser.add_argument("--fast", action="store_true", help="shrink every delay to a few ms")
    parser.add_argument("--urc-probability", type=float, default=0.0)
    parser.add_argument("--fail-sends", metavar="CODE[:COUNT]", help="+CMS error for sends")
    parser.add_argument(
        "--commands", action="store_true", help="print each command: <time.monotonic()> > <line>"
    )
    parser.add_argument("--seconds", type=float, help="stop after this long (default: never)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    base = EmulatorSettings.fast() if args.fast else EmulatorSettings()
    settings = dataclasses.replace(base, urc_probability=args.urc_probability)
    modem = EmulatedModem(
        link_path=args.link,
        settings=settings,
        model=args.model,
        pin=args.pin,
        roaming=args.roaming,
        seed=args.seed,
        on_delivered=lambda sms: print(sms.describe(), flush=True),
        on_command=_print_command if args.commands else None,
    )
    if args.fail_sends:
        code, _, count = args.fail_sends.partition(":")
        modem.fail_sends(int(code), int(count) if count else None)
    async with modem:
        where = modem.path if args.link is None else f"{modem.path} (symlink {args.link})"
        print(f"emulated {args.model} on {where}", flush=True)
        if args.seconds is None:
            await asyncio.Event().wait()
        await asyncio.sleep(args.seconds)


def _print_command(line: str) -> None:
    print(f"{time.monotonic():.6f} > {line}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    configure_logging("info")  # to stderr: stdout shows the SMS
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
