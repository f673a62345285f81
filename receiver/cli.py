"""`appliance-receiver`: run an instance, export features, show gateway status.

appliance-receiver [run] --broker mqtts://user@host:8883 --password-file F --db sqlite:///rx.db
appliance-receiver export --db URL --gateway G --asset A --out FILE.npz [--since] [--until]
appliance-receiver status --db URL
appliance-receiver dead-letters --db URL [--limit N] [--save DIR]
appliance-receiver forget-session --broker URL [--password-file F] --client-id ID
appliance-receiver fetch --broker URL --db URL --gateway G --asset A --since T --until T
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import ssl
import sys
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt

from appliance.logging import configure_logging
from appliance.net.broker import BrokerAddress
from appliance.uplink.schema import MAX_PART_BYTES
from receiver.db import open_database
from receiver.errors import ReceiverError
from receiver.export import export_features
from receiver.service import serve
from receiver.settings import (
    DEFAULT_GROUP,
    DEFAULT_PREFIX,
    PASSWORD_ENV,
    ReceiverSettings,
    parse_broker_url,
    read_config,
    read_http_config,
    with_password,
)
from receiver.summary_export import export_summaries
from receiver.web.settings import parse_listen

COMMANDS = ("run", "export", "status", "dead-letters", "forget-session", "drift", "fetch")
DB_HELP = "the receiver's database: sqlite:///PATH or postgresql://..."
PREVIEW_BYTES = 160
SUMMARY = {
    "kept": "dead_letter_rows",
    "kept_bytes": "dead_letter_bytes",
    "dropped": "dead_letters_dropped",
    "dropped_bytes": "dead_letter_bytes_dropped",
}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] not in (*COMMANDS, "-h", "--help"):
        arguments.insert(0, "run")
    args = build_parser().parse_args(arguments)
    configure_logging(args.log_level)
    try:
        result: int = asyncio.run(run_until_signalled(args.handler(args)))
        return result
    except ReceiverError as exc:
        print(f"appliance-receiver: error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance-receiver",
        description="Cloud receiver for the appliance's MQTT uplink (receiver/README.md).",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning"],
        help="log lines below this level are not written (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run(commands)
    add_export(commands)
    add_status(commands)
    add_dead_letters(commands)
    add_forget_session(commands)
    add_drift(commands)
    add_fetch(commands)
    return parser


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker", required=True, metavar="mqtt[s]://USER@HOST:PORT", help="the MQTT broker"
    )
    parser.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help=f"the broker password, first line of FILE (default: ${PASSWORD_ENV}); "
        "a password in the --broker URL shows in ps",
    )
    parser.add_argument("--ca", type=Path, metavar="FILE", help="CA certificate (PEM) for mqtts")


def add_run(commands: Any) -> None:
    run = commands.add_parser("run", help="run one receiver instance (the default command)")
    add_broker_arguments(run)
    run.add_argument(
        "--db", required=True, metavar="sqlite:///PATH | postgresql://...", help=DB_HELP
    )
    run.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic prefix (default: %(default)s)")
    run.add_argument(
        "--group",
        default=DEFAULT_GROUP,
        help="shared subscription group name (default: %(default)s)",
    )
    run.add_argument(
        "--client-id",
        help="stable MQTT client id, unique per instance: gives a persistent session "
        "(default: host-pid with a clean session)",
    )
    run.add_argument(
        "--stats-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds between the logged counters (default: %(default)s)",
    )
    run.add_argument(
        "--max-payload-bytes",
        type=int,
        default=MAX_PART_BYTES,
        metavar="N",
        help="larger messages are refused unread (default: %(default)s, "
        f"{MAX_PART_BYTES / 2**20:g} MiB; keep it above the gateways' max_message_bytes)",
    )
    run.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve the fleet page and its JSON API there (overrides [http] of --config)",
    )
    add_config_argument(run)
    run.set_defaults(handler=run_receiver)


def add_export(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="write an asset's features to a .npz file",
        description="The asset's feature windows with the gateway's anomalous flags, for "
        "`appliance train --features`.",
    )
    export.add_argument("--db", required=True, help=DB_HELP)
    export.add_argument("--gateway", required=True, metavar="ID", help="the gateway's id")
    export.add_argument("--asset", required=True, metavar="NAME", help="the asset's name")
    export.add_argument(
        "--out", type=Path, required=True, metavar="FILE.npz", help="the file to write"
    )
    export.add_argument("--since", type=utc_time, metavar="ISO8601", help="first window end")
    export.add_argument("--until", type=utc_time, metavar="ISO8601", help="window ends before")
    export.add_argument(
        "--summaries",
        action="store_true",
        help="the per-minute aggregates of a gateway in the summary uplink profile instead",
    )
    export.set_defaults(handler=run_export)


def add_status(commands: Any) -> None:
    status = commands.add_parser("status", help="print the gateway_status view as JSON lines")
    status.add_argument("--db", required=True, help=DB_HELP)
    status.set_defaults(handler=run_status)


def add_dead_letters(commands: Any) -> None:
    letters = commands.add_parser(
        "dead-letters", help="print the newest refused messages as JSON lines"
    )
    letters.add_argument("--db", required=True, help=DB_HELP)
    letters.add_argument(
        "--limit",
        type=int,
        default=20,
        help="newest first, at most this many (default: %(default)s)",
    )
    letters.add_argument("--save", type=Path, metavar="DIR", help="write each payload to DIR/<id>")
    letters.set_defaults(handler=run_dead_letters)


def add_forget_session(commands: Any) -> None:
    forget = commands.add_parser(
        "forget-session",
        help="drop a retired instance's persistent session",
        description="Drop a retired instance's persistent session: the broker keeps routing a "
        "share of the messages to it otherwise.",
    )
    add_broker_arguments(forget)
    forget.add_argument("--client-id", required=True, help="the retired instance's client id")
    forget.set_defaults(handler=run_forget_session)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE.toml",
        help="[drift], [webhooks] and [http] settings (docs/DRIFT.md, receiver/README.md)",
    )


def add_drift(commands: Any) -> None:
    drift = commands.add_parser(
        "drift",
        help="run the slow-drift analysis once and print its changes as JSON lines",
        description="Bring the daily aggregates up to date, test each asset's trends over the "
        "trailing window and open, update or close findings (docs/DRIFT.md). Prints a summary "
        "line, then one line per finding change worth announcing.",
    )
    drift.add_argument("--db", required=True, help=DB_HELP)
    add_config_argument(drift)
    drift.add_argument(
        "--as-of",
        type=utc_day,
        metavar="YYYY-MM-DD",
        help="the window's last day (default: yesterday, the last complete UTC day)",
    )
    drift.add_argument(
        "--gateways",
        default="*",
        metavar="GLOB",
        help="gateway ids to analyse, a glob (default: *)",
    )
    drift.add_argument(
        "--list", action="store_true", help="then print every open finding as a JSON line"
    )
    drift.add_argument(
        "--notify",
        action="store_true",
        help="POST the changes to the webhooks of --config and wait until each is delivered "
        "or dead-lettered",
    )
    drift.set_defaults(handler=run_drift_command)


def add_fetch(commands: Any) -> None:
    fetch = commands.add_parser(
        "fetch",
        help="fetch an asset's full records of a time range from a gateway",
        description="Publish a fetch_records command on <prefix>/<gateway>/command (as a user "
        "whose ACL lets it write commands and read replies and status, e.g. modeller), then "
        "count the records landing in --db (written by the running receivers) until the "
        "gateway said done and all are there. Exit 0 landed, 1 refused by the gateway, 2 bad "
        "arguments or unknown gateway, 3 offline, no answer or stalled (run it again: records "
        "that landed are not duplicated).",
    )
    add_broker_arguments(fetch)
    fetch.add_argument("--db", required=True, help=DB_HELP)
    fetch.add_argument("--gateway", required=True, metavar="ID", help="the gateway's id")
    fetch.add_argument("--asset", required=True, metavar="NAME", help="the asset's name")
    fetch.add_argument(
        "--since", required=True, type=utc_time, metavar="ISO8601", help="first record time"
    )
    fetch.add_argument(
        "--until", required=True, type=utc_time, metavar="ISO8601", help="records before this"
    )
    fetch.add_argument(
        "--max-records",
        type=int,
        metavar="N",
        help="the gateway refuses rather than send more (default: its own bound, 200000)",
    )
    fetch.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="give up when no answer and no record came for this long (default: %(default)s)",
    )
    fetch.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help="topic prefix (default: %(default)s)"
    )
    fetch.set_defaults(handler=run_fetch)


def utc_day(text: str) -> int:
    """A UTC date as a day number (days since 1970-01-01)."""
    return int(utc_time(text) // 86400)


def utc_time(text: str) -> float:
    """ISO 8601; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def broker_from(args: argparse.Namespace) -> BrokerAddress:
    return with_password(parse_broker_url(args.broker), args.password_file, os.environ)


def settings_from(args: argparse.Namespace) -> ReceiverSettings:
    drift, webhooks = read_config(args.config)
    return ReceiverSettings(
        broker=broker_from(args),
        db_url=args.db,
        ca_path=args.ca,
        prefix=args.prefix,
        group=args.group,
        client_id=args.client_id,
        stats_interval_s=args.stats_interval,
        max_payload_bytes=args.max_payload_bytes,
        drift=drift,
        webhooks=webhooks,
        http=parse_listen(args.http, "--http") if args.http else read_http_config(args.config),
    )


async def run_receiver(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    database = await open_database(settings.db_url)
    try:
        await serve(settings, database)
    finally:
        await database.close()
    return 0


async def run_export(args: argparse.Namespace) -> int:
    database = await open_database(args.db)
    try:
        if args.summaries:
            what = await export_summaries(
                database, args.gateway, args.asset, args.out, args.since, args.until
            )
        else:
            export = await export_features(
                database, args.gateway, args.asset, args.out, args.since, args.until
            )
            what = export.summary()
    finally:
        await database.close()
    print(f"{what}\nwritten to {args.out}")
    return 0


async def run_status(args: argparse.Namespace) -> int:
    database = await open_database(args.db)
    try:
        rows = await database.gateway_status()
    finally:
        await database.close()
    for row in rows:
        print(json.dumps(row, default=str))
    return 0


async def run_dead_letters(args: argparse.Namespace) -> int:
    database = await open_database(args.db)
    try:
        letters = await database.dead_letters(args.limit)
        counters = await database.counters()
    finally:
        await database.close()
    print(json.dumps({name: counters.get(counter, 0) for name, counter in SUMMARY.items()}))
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
    for letter in letters:
        payload = bytes(letter.pop("payload"))
        if args.save is not None:
            (args.save / str(letter["id"])).write_bytes(payload)
        preview = payload[:PREVIEW_BYTES].decode("utf-8", "backslashreplace")
        print(json.dumps({**letter, "payload_preview": preview}, default=str))
    return 0


async def run_drift_command(args: argparse.Namespace) -> int:
    from receiver.drift.command import drift_once

    drift, webhooks = read_config(args.config)
    if args.notify and not webhooks.routes:
        raise ReceiverError("--notify needs [[webhooks.routes]] in --config")
    database = await open_database(args.db)
    try:
        lines = await drift_once(database, drift, webhooks if args.notify else None,
                                 as_of=args.as_of, gateways=args.gateways,
                                 list_open=args.list)  # fmt: skip
    finally:
        await database.close()
    for line in lines:
        print(json.dumps(line, default=str))
    return 0


async def run_fetch(args: argparse.Namespace) -> int:
    from receiver.fetch import FetchRequest, fetch

    if not args.since < args.until:
        raise ReceiverError("--since must be before --until")
    request = FetchRequest(
        args.gateway, args.asset, args.since, args.until, args.max_records, args.wait, args.prefix
    )
    database = await open_database(args.db)
    try:
        return await fetch(request, broker_from(args), args.ca, database)
    finally:
        await database.close()


async def run_forget_session(args: argparse.Namespace) -> int:
    broker = broker_from(args)
    tls = ssl.create_default_context(cafile=str(args.ca) if args.ca else None)
    try:
        async with aiomqtt.Client(
            broker.host,
            broker.port,
            username=broker.username,
            password=broker.password,
            identifier=args.client_id,
            clean_session=True,
            tls_context=tls if broker.tls else None,
        ):
            pass
    except aiomqtt.MqttError as exc:
        raise ReceiverError(f"{broker.redacted()}: {exc}") from exc
    print(f"session of {args.client_id} removed from {broker.redacted()}")
    return 0


async def run_until_signalled(work: Coroutine[Any, Any, int]) -> int:
    """Run `work`; SIGINT or SIGTERM cancel it and the command exits 0."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(RuntimeError):
                loop.remove_signal_handler(sig)
