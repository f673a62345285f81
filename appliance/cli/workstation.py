"""`appliance eval` and `appliance train`: workstation commands that need the train extra
(TensorFlow), imported only when they run."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError


def add_eval_commands(commands: Any) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="measure detection on public data (workstation: train extra)",
        description="Train int8 autoencoders with TensorFlow and score with the gateway's own "
        "streaming scorer; results and plots in --out (docs/DETECTION.md).",
    )
    kinds = evaluate.add_subparsers(required=True, metavar="DATA")
    skab = kinds.add_parser("skab", help="every SKAB-format CSV under DIR, leaderboard protocol")
    skab.add_argument("directory", type=Path, metavar="DIR", help="SKAB's data (e.g. valve1)")
    skab.set_defaults(handler=_eval_skab)
    vibration = kinds.add_parser("vibration", help="raw recordings through the feature path")
    vibration.add_argument("--rate", type=float, required=True, help="sample rate in Hz")
    vibration.add_argument(
        "--train",
        type=Path,
        nargs="+",
        required=True,
        metavar="HEALTHY.npy",
        help="healthy recordings to learn from",
    )
    vibration.add_argument(
        "--test", type=Path, nargs="+", required=True, metavar="REC.npy", help="recordings scored"
    )
    vibration.add_argument(
        "--window-s", type=float, default=0.5, help="feature window (default: %(default)s)"
    )
    vibration.add_argument(
        "--stride-s", type=float, default=0.25, help="window stride (default: %(default)s)"
    )
    vibration.add_argument(
        "--holdout",
        type=float,
        default=0.0,
        help="fraction of each healthy file scored, not learnt (default: %(default)s)",
    )
    _add_diagnosis_options(vibration)
    vibration.set_defaults(handler=_eval_vibration)
    for parser in (skab, vibration):
        _add_eval_options(parser)


def _add_diagnosis_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bearing-orders",
        type=float,
        nargs=4,
        metavar=("BPFI", "BPFO", "BSF", "FTF"),
        help="the bearing's defect frequencies per shaft revolution (default: CWRU drive end, "
        "SKF 6205: 5.4152 3.5848 2.357 0.39828)",
    )
    parser.add_argument(
        "--speed-rpm", type=float, help="shaft speed of every recording (default: the manifest)"
    )
    parser.add_argument(
        "--speed-range-rpm",
        type=float,
        nargs=2,
        default=[1600.0, 1900.0],
        metavar=("LOW", "HIGH"),
        help="unlisted recordings: speed estimated in this range (default: %(default)s)",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        help="CSV with file and rpm columns (default: manifest.csv beside the first --test)",
    )


def _add_eval_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="results here")
    parser.add_argument(
        "--rule",
        choices=["adaptive", "fixed"],
        default="adaptive",
        help="threshold rule (default: %(default)s)",
    )
    parser.add_argument(
        "--k", type=float, help="adaptive rule: k in m + k*s (default: the gateway's measured k)"
    )
    parser.add_argument(
        "--statistic",
        choices=["median_mad", "mean_std"],
        help="adaptive rule's m and s (default: the gateway's)",
    )
    parser.add_argument(
        "--clear-after",
        type=_positive_int,
        help="windows in a row below 0.9 x the threshold that clear an alarm (default: the "
        "gateway's clear_after_windows)",
    )
    parser.add_argument(
        "--epochs", type=int, default=60, help="training epochs (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    parser.add_argument(
        "--precision",
        choices=["int8", "float"],
        default="int8",
        help="score with the int8 model, or the float network it was converted from "
        "(default: %(default)s)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the plots (matplotlib)")


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
    alarm = DetectorSettings().alarm
    if args.clear_after is not None:
        alarm = replace(alarm, off_count=args.clear_after)
    settings = DetectorSettings(rule=args.rule, adaptive=adaptive, alarm=alarm)
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
    status = run_vibration_eval(
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
    return status or _diagnose_vibration(args)


def _diagnose_vibration(args: argparse.Namespace) -> int:
    from appliance.diagnosis import CWRU_DRIVE_END, DefectOrders
    from appliance.evaluation.diagnosis_eval import DiagnosisRun, run_diagnosis_eval

    orders = DefectOrders(*args.bearing_orders) if args.bearing_orders else CWRU_DRIVE_END
    run = DiagnosisRun(
        args.window_s,
        orders,
        speed_rpm=args.speed_rpm,
        speed_range_rpm=tuple(args.speed_range_rpm),
    )
    return run_diagnosis_eval(
        args.train,
        args.test,
        args.out,
        run,
        rate=args.rate,
        holdout_fraction=args.holdout,
        manifest=args.manifest,
    )


def add_train_command(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train an asset's int8 bundle on stored windows (workstation)",
        description="Train an int8 bundle for one asset on what a gateway stored (a copy of its "
        "database) or on the receiver's export; needs the train extra (TensorFlow). "
        "More in models/README.md.",
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
    train.add_argument(
        "--since", type=_utc_time, metavar="ISO8601", help="first window end (default: oldest)"
    )
    train.add_argument(
        "--until", type=_utc_time, metavar="ISO8601", help="window ends before (default: newest)"
    )
    train.add_argument("--version", help="bundle version (default: today's date)")
    train.add_argument(
        "--epochs", type=_positive_int, default=60, help="training epochs (default: %(default)s)"
    )
    train.add_argument(
        "--margin",
        type=float,
        default=2.0,
        help="commissioning threshold = margin x the 0.995 quantile of training errors "
        "(default: %(default)s, measured on the demo rig, see models/README.md)",
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
