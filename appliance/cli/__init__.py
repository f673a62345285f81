"""`appliance` command line: run, check-config, demo, eval, train, model.

__init__.py     main, the parser, check-config and run
describe.py     the one-line description of a config (check-config, demo)
demo.py         the demo command: the emulated rig, its page and token, --reset
workstation.py  eval and train (need the train extra)
appliance/ota/cli/ the model commands
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance.cli.demo import add_demo_command
from appliance.cli.describe import describe
from appliance.cli.workstation import add_eval_commands, add_train_command
from appliance.config import ApplianceConfig, load_config
from appliance.errors import ApplianceError, ConfigError
from appliance.logging import configure_logging
from appliance.ota.cli import add_model_commands
from appliance.ota.release.cli import add_release_commands


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(args.handler(args))
    except ApplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """Every command and option, each with a one-line help; options show their defaults."""
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="The edge anomaly appliance: run a gateway, try it on the emulated rig, "
        "measure and train models, sign and send them. `appliance COMMAND --help` for more.",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log lines below this level are not written (default: %(default)s)",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    check = commands.add_parser(
        "check-config",
        help="validate a config file without running",
        description="Refuse what `run` would refuse at start, naming the key; print a summary.",
    )
    check.add_argument("config", type=Path, metavar="gateway.toml", help="the config file")
    check.set_defaults(handler=_check_config)

    run = commands.add_parser(
        "run",
        help="run the gateway on the devices its config names",
        description="Run until SIGINT/SIGTERM (or --seconds): capture, features, scoring, "
        "alerts, store, and the uplink, SMS and status page the config asks for.",
    )
    run.add_argument(
        "--config", type=Path, required=True, metavar="gateway.toml", help="the config file"
    )
    run.add_argument(
        "--seconds", type=float, help="stop after N seconds (default: run until stopped)"
    )
    run.set_defaults(handler=_run)
    add_demo_command(commands)
    add_eval_commands(commands)
    add_train_command(commands)
    add_model_commands(commands)
    add_release_commands(commands)
    return parser


def _check_config(args: argparse.Namespace) -> int:
    config = load_checked_config(args.config)
    print(f"{args.config}: OK — {describe(config)}")
    return 0


def load_checked_config(path: Path) -> ApplianceConfig:
    """The config as `run` starts from it: validated (load_config), every file it names read and
    checked, the feature engines and emulated faults built as `run` builds them.

    check-config and run both call this, so whatever run would refuse at start (short of a
    busy port or a missing device), check-config refuses first. ConfigError otherwise."""
    config = load_config(path)
    try:
        _check_usable(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config


def _check_usable(config: ApplianceConfig) -> None:
    from appliance import rig
    from appliance.features.from_config import build_feature_engines
    from appliance.ota.settings import ota_settings
    from appliance.sms.settings import sms_settings
    from appliance.wiring import build_uplink_settings

    if Path(config.store.path).is_dir():
        raise ConfigError(f"store.path: {config.store.path} is a directory: name the database file")
    if config.http is not None:
        config.http.read_token()
    build_uplink_settings(config)  # the files it names are readable
    if config.sms is not None:
        sms_settings(config.gateway.id, config.sms)  # the PIN file is readable
    if config.models is not None:
        ota_settings(config.models, Path(config.store.path))  # the keys parse, files readable
    if config.release is not None:
        from appliance.ota.release.manager import release_settings

        release_settings(config.release, Path(config.store.path))
    build_feature_engines(config)
    rig.check(config)  # the emulated faults parse


def _run(args: argparse.Namespace) -> int:
    from appliance.rig import run_appliance

    config = load_checked_config(args.config)
    return asyncio.run(run_appliance(config, seconds=args.seconds))
