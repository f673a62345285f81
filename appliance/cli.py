"""`appliance` command line: run, demo, check-config, eval, train."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from appliance.config import ApplianceConfig, HttpConfig, load_config
from appliance.errors import ApplianceError, ConfigError
from appliance.logging import configure_logging
from appliance.ota.cli import add_model_commands


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
    demo.add_argument(
        "--broker",
        metavar="URL",
        help="uplink the demo's records to mqtt[s]://user:pass@host:port (see appliance/uplink)",
    )
    demo.add_argument(
        "--ca", type=Path, metavar="FILE", help="CA certificate that signed the broker's (mqtts)"
    )
    demo.add_argument(
        "--http",
        type=_host_port,
        default=("127.0.0.1", 8080),
        metavar="HOST:PORT",
        help="serve the status page here (default 127.0.0.1:8080; a random token is printed)",
    )
    demo.set_defaults(handler=_demo)
    _add_eval_commands(commands)
    _add_train_command(commands)
    add_model_commands(commands)
    return parser


def _add_eval_commands(commands: Any) -> None:
    evaluate = commands.add_parser(
        "eval", help="measure detection on public data (workstation: needs the train extra)"
    )
    kinds = evaluate.add_subparsers(required=True, metavar="DATA")
    skab = kinds.add_parser("skab", help="every SKAB-format CSV under DIR, leaderboard protocol")
    skab.add_argument("directory", type=Path)
    skab.set_defaults(handler=_eval_skab)
    vibration = kinds.add_parser("vibration", help="raw recordings through the feature path")
    vibration.add_argument("--rate", type=float, required=True, help="sample rate in Hz")
    vibration.add_argument("--train", type=Path, nargs="+", required=True, metavar="HEALTHY.npy")
    vibration.add_argument("--test", type=Path, nargs="+", required=True, metavar="REC.npy")
    vibration.add_argument("--window-s", type=float, default=0.5)
    vibration.add_argument("--stride-s", type=float, default=0.25)
    vibration.add_argument(
        "--holdout",
        type=float,
        default=0.0,
        help="fraction of each healthy file scored, not learnt",
    )
    vibration.set_defaults(handler=_eval_vibration)
    for parser in (skab, vibration):
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--rule", choices=["adaptive", "fixed"], default="adaptive")
        parser.add_argument(
            "--k", type=float, default=None, help="adaptive rule: k in m + k*s (6.5)"
        )
        parser.add_argument(
            "--statistic",
            choices=["median_mad", "mean_std"],
            default=None,
            help="default: mean_std",
        )
        parser.add_argument("--epochs", type=int, default=60)
        parser.add_argument("--seed", type=int, default=0, help="training seed")
        parser.add_argument(
            "--precision",
            choices=["int8", "float"],
            default="int8",
            help="score with the int8 model, or the float network it was converted from",
        )
        parser.add_argument("--no-plots", action="store_true")


def _eval_detector(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    import tempfile

    from appliance.detect.scorer import DetectorSettings
    from appliance.evaluation.autoencoder_detector import describe, detector_factory
    from appliance.training.autoencoder import TrainSettings

    measured = DetectorSettings().adaptive
    adaptive = replace(
        measured,
        k=measured.k if args.k is None else args.k,
        statistic=args.statistic or measured.statistic,
    )
    settings = DetectorSettings(rule=args.rule, adaptive=adaptive)
    train = TrainSettings(epochs=args.epochs, seed=args.seed)
    work_dir = Path(tempfile.mkdtemp(prefix="appliance-eval-"))
    factory = detector_factory(settings, train, work_dir, precision=args.precision)
    return factory, describe(settings, train, args.precision)


def _eval_skab(args: argparse.Namespace) -> int:
    from appliance.evaluation.evaluate import run_skab_eval

    factory, described = _eval_detector(args)
    return run_skab_eval(
        args.directory, args.out, factory, detector_settings=described, plots=not args.no_plots
    )


def _eval_vibration(args: argparse.Namespace) -> int:
    from appliance.evaluation.evaluate import run_vibration_eval

    factory, described = _eval_detector(args)
    return run_vibration_eval(
        args.train,
        args.test,
        args.out,
        factory,
        rate=args.rate,
        window_s=args.window_s,
        stride_s=args.stride_s,
        holdout_fraction=args.holdout,
        detector_settings=described,
        plots=not args.no_plots,
    )


def _add_train_command(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train an asset's int8 bundle on what a gateway stored (workstation: train extra)",
    )
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--store", type=Path, metavar="PATH.db", help="a gateway's store")
    source.add_argument(
        "--features",
        type=Path,
        metavar="FILE.npz",
        help="an asset's features exported from the receiver (appliance-receiver export)",
    )
    train.add_argument("--asset", metavar="NAME", help="required with --store")
    train.add_argument("--out", type=Path, required=True, metavar="DIR", help="new bundle dir")
    train.add_argument("--since", type=_utc_time, metavar="ISO8601", help="first window end")
    train.add_argument("--until", type=_utc_time, metavar="ISO8601", help="window ends before")
    train.add_argument("--version", default=None, help="bundle version (default: today's date)")
    train.add_argument("--epochs", type=_positive_int, default=60)
    train.add_argument(
        "--margin",
        type=float,
        default=2.0,
        help="commissioning threshold = margin x the 0.995 quantile of training errors (2.0: "
        "measured on the demo rig, see models/README.md)",
    )
    train.add_argument(
        "--keep-anomalous",
        action="store_true",
        help="also train on windows the gateway scored anomalous (default: left out)",
    )
    train.set_defaults(handler=_train)


def _utc_time(text: str) -> float:
    from appliance.training.from_store import parse_utc_time

    try:
        return parse_utc_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _train(args: argparse.Namespace) -> int:
    from appliance.training.autoencoder import TrainSettings
    from appliance.training.from_export import load_export_rows
    from appliance.training.from_store import load_store_rows, refuse_used_out_dir, train_rows

    if args.store is not None and args.asset is None:
        raise ConfigError("appliance train: --asset is required with --store")
    refuse_used_out_dir(args.out)
    span = {"since": args.since, "until": args.until, "keep_anomalous": args.keep_anomalous}
    rows = (
        load_store_rows(args.store, args.asset, **span)
        if args.store is not None
        else load_export_rows(args.features, **span)
    )
    settings = TrainSettings(epochs=args.epochs, threshold_margin=args.margin)
    print(train_rows(rows, args.out, version=args.version, settings=settings).summary())
    return 0


def _check_config(args: argparse.Namespace) -> int:
    config = load_checked_config(args.config)
    print(f"{args.config}: OK — {_describe(config)}")
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
    from appliance.app import build_uplink_settings
    from appliance.features.from_config import build_feature_engines
    from appliance.ota.settings import ota_settings
    from appliance.sms.settings import sms_settings

    if Path(config.store.path).is_dir():
        raise ConfigError(f"store.path: {config.store.path} is a directory: name the database file")
    if config.http is not None:
        config.http.read_token()
    build_uplink_settings(config)  # the files it names are readable
    if config.sms is not None:
        sms_settings(config.gateway.id, config.sms)  # the PIN file is readable
    if config.models is not None:
        ota_settings(config.models, Path(config.store.path))  # the keys parse, files readable
    build_feature_engines(config)
    rig.check(config)  # the emulated faults parse


def _describe(config: ApplianceConfig) -> str:
    channels = sum(len(a.channels) for a in config.assets)
    return (
        f"gateway {config.gateway.id}, {len(config.assets)} asset(s), {channels} channel(s), "
        f"{len(config.serial)} serial device(s), {len(config.i2c)} I2C bus(es), "
        f"{_describe_sms(config)}, {_describe_uplink(config)}, {_describe_models(config)}"
    )


def _describe_models(config: ApplianceConfig) -> str:
    models = config.models
    if models is None:
        return "no model updates over the air"
    keys = len(models.public_keys) + len(models.public_key_files)
    return f"model updates over the air signed by {keys} key(s)"


def _describe_sms(config: ApplianceConfig) -> str:
    sms = config.sms
    if sms is None:
        return "no SMS"
    modem = "an emulated modem" if sms.emulate else sms.port
    return (
        f"SMS of {'/'.join(sms.severities)} alerts to {len(sms.recipients)} recipient(s) "
        f"through {modem}"
    )


def _describe_uplink(config: ApplianceConfig) -> str:
    uplink = config.uplink
    if uplink is None:
        return "no uplink (records stay on the gateway)"
    if uplink.client_cert is not None:
        identity = f"client certificate {uplink.client_cert}"
    elif uplink.username is not None:
        identity = f"user {uplink.username}"
    else:
        identity = "no credentials"
    return (
        f"uplink to {uplink.address.url} as {identity}, topics {uplink.topic_prefix}/"
        f"{config.gateway.id}/..., ack by {uplink.ack}"
    )


def _run(args: argparse.Namespace) -> int:
    from appliance.rig import run_appliance

    config = load_checked_config(args.config)
    asyncio.run(run_appliance(config, seconds=args.seconds))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from appliance.rig import run_appliance
    from appliance.rig.demo import DEMO_SIGNING_KEY, demo_config, demo_uplink

    if args.ca is not None and args.broker is None:
        raise ApplianceError("--ca needs --broker")
    try:
        uplink = None if args.broker is None else demo_uplink(args.broker, args.ca)
    except ValueError as exc:
        raise ApplianceError(f"--broker: {exc}") from None
    config = demo_config(args.data_dir, faults=args.fault, uplink=uplink, models=True)
    host, port = args.http
    token = secrets.token_urlsafe(24)
    try:
        http = HttpConfig(host=host, port=port, token=token)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ApplianceError(f"--http: {reason} (got {host!r})") from None
    config = config.model_copy(update={"http": http})
    print(f"demo: {_describe(config)}; database {config.store.path}", flush=True)
    print(
        f"model updates: sign bundles with {args.data_dir / DEMO_SIGNING_KEY} (appliance model "
        f"sign), drop the .tar into {args.data_dir / 'model-inbox'} or upload it on the page",
        flush=True,
    )

    def serving(url: str) -> None:
        print(f"status page: {url}  (token for actions: {token})", flush=True)

    asyncio.run(
        run_appliance(
            config,
            seconds=args.seconds,
            summary_every=args.summary_every,
            summary_out=sys.stdout,
            on_http_started=serving,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
