"""Standalone emulated MCU: python -m appliance.rig.mcu --link /tmp/mcu --rate 1000 --channels 4"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import sys
from collections.abc import Sequence

from appliance.rig.mcu.device import EmulatedMcu
from appliance.rig.mcu.signal import FAULT_NAMES, parse_faults
from firmware_bridge.codec import SampleFormat


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m appliance.rig.mcu", description="An emulated vibration MCU on a pty."
    )
    parser.add_argument("--link", help="maintain this symlink to the pty (like /dev/serial/by-id)")
    parser.add_argument("--rate", type=int, default=1000, help="samples/s per channel")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--samples-per-frame", type=int)
    parser.add_argument("--format", choices=["int16", "int32"], default="int32")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: never)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"repeatable; names: {', '.join(sorted(FAULT_NAMES))}",
    )
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    plan, signal = parse_faults(args.fault)
    mcu = EmulatedMcu(
        link_path=args.link,
        rate_hz=args.rate,
        channels=args.channels,
        samples_per_frame=args.samples_per_frame,
        sample_format=SampleFormat[args.format.upper()],
        faults=plan,
        signal=signal,
        seed=args.seed,
    )
    with mcu:
        print(mcu.path if args.link is None else f"{mcu.path} (symlink {args.link})", flush=True)
        max_frames = None
        if args.seconds is not None:
            max_frames = math.ceil(args.seconds * args.rate / mcu.samples_per_frame)
        try:
            await mcu.run(max_frames)
        finally:
            print(dataclasses.asdict(mcu.counts), file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        parse_faults(args.fault)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
