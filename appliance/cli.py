"""`appliance` command line: run, demo, check-config."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance.config import ApplianceConfig, load_config
from appliance.errors import ApplianceError
from appliance.logging import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(args.handler(args))
    except ApplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description=__doc__)
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    check = commands.add_parser("check-config", help="validate a config file without running")
    check.add_argument("config", type=Path)
    check.set_defaults(handler=_check_config)

    run = commands.add_parser("run", help="run against the devices named in the config")
    run.add_argument("--config", type=Path, required=True)
    run.add_argument("--seconds", type=float, default=None, help="stop after N seconds")
    run.set_defaults(handler=_run)

    demo = commands.add_parser("demo", help="run the whole path on the emulated rig, no hardware")
    demo.add_argument("--seconds", type=float, default=None, help="stop after N seconds")
    demo.add_argument(
        "--data-dir", type=Path, default=Path("demo-data"), help="where the demo keeps its database"
    )
    demo.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="FAULT",
        help="inject a fault on the second asset's MCU (repeatable): imbalance, bearing, spikes, "
        "flatline, drops, garbage, unplug, reset, or NAME=VALUE (e.g. drop=0.1, unplug_for=5)",
    )
    demo.add_argument("--summary-every", type=float, default=2.0, help="seconds between summaries")
    demo.set_defaults(handler=_demo)
    return parser


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(f"{args.config}: OK — {_describe(config)}")
    return 0


def _describe(config: ApplianceConfig) -> str:
    channels = sum(len(a.channels) for a in config.assets)
    return (
        f"gateway {config.gateway.id}, {len(config.assets)} asset(s), {channels} channel(s), "
        f"{len(config.serial)} serial device(s), {len(config.i2c)} I2C bus(es)"
    )


def _run(args: argparse.Namespace) -> int:
    from appliance.app import run_appliance

    config = load_config(args.config)
    asyncio.run(run_appliance(config, seconds=args.seconds))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from appliance.app import run_appliance
    from appliance.demo import demo_config

    config = demo_config(args.data_dir, faults=args.fault)
    print(f"demo: {_describe(config)}; database {config.store.path}", flush=True)
    asyncio.run(
        run_appliance(
            config, seconds=args.seconds, summary_every=args.summary_every, summary_out=sys.stdout
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
