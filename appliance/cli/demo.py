"""`appliance demo`: the whole path on the emulated rig (appliance/rig/demo.py), its status page
with a new token each run (kept in the data directory), and --reset."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from appliance.cli.describe import describe
from appliance.config import HttpConfig
from appliance.errors import ApplianceError


def add_demo_command(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the whole path on the emulated rig, no hardware",
        description="Two assets on emulated MCUs, an emulated I2C bus and an emulated SMS "
        "modem; faults go to the second asset. Prints a live summary that starts with the "
        "status page's URL; the page's token for actions is in DIR/http-token.",
    )
    demo.add_argument(
        "--seconds", type=float, help="stop after N seconds (default: run until Ctrl-C)"
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=Path("demo-data"),
        metavar="DIR",
        help="the demo's database, models and token (default: %(default)s)",
    )
    demo.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="FAULT",
        help="inject a fault on the second asset's MCU (repeatable): imbalance, outer_race "
        "(= bearing), inner_race, ball, misalignment, spikes, flatline, drops, garbage, unplug, "
        "reset, or NAME=VALUE (e.g. drop=0.1, unplug_for=5)",
    )
    demo.add_argument(
        "--summary-every",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="seconds between summaries (default: %(default)s)",
    )
    demo.add_argument(
        "--broker",
        metavar="URL",
        help="uplink the demo's records to mqtt[s]://user:pass@host:port (default: no uplink)",
    )
    demo.add_argument(
        "--ca", type=Path, metavar="FILE", help="CA certificate that signed the broker's (mqtts)"
    )
    demo.add_argument(
        "--http",
        type=_host_port,
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="serve the status page here, with a new token each run (default: %(default)s)",
    )
    demo.add_argument(
        "--reset",
        action="store_true",
        help="first delete the demo's state in --data-dir (store, installed models, inbox, "
        "token; the signing key stays); needs --yes",
    )
    demo.add_argument("--yes", action="store_true", help="confirm --reset")
    demo.set_defaults(handler=_demo)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _demo(args: argparse.Namespace) -> int:
    from appliance.rig import run_appliance
    from appliance.rig.demo import DEMO_SIGNING_KEY, demo_config, demo_uplink, write_http_token

    if args.ca is not None and args.broker is None:
        raise ApplianceError("--ca needs --broker")
    if args.yes and not args.reset:
        raise ApplianceError("--yes confirms --reset, and there is no --reset")
    try:
        uplink = None if args.broker is None else demo_uplink(args.broker, args.ca)
    except ValueError as exc:
        raise ApplianceError(f"--broker: {exc}") from None
    host, port = args.http
    try:
        http = HttpConfig(host=host, port=port)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ApplianceError(f"--http: {reason} (got {host!r})") from None
    if args.reset:
        _reset_demo(args.data_dir, confirmed=args.yes)
    config = demo_config(args.data_dir, faults=args.fault, uplink=uplink, models=True)
    token, token_file = write_http_token(args.data_dir)
    http = http.model_copy(update={"token_file": str(token_file)})
    config = config.model_copy(update={"http": http})
    print(f"demo: {describe(config)}; database {config.store.path}", flush=True)
    print(
        f"model updates: sign bundles with {args.data_dir / DEMO_SIGNING_KEY} (appliance model "
        f"sign), drop the .tar into {args.data_dir / 'model-inbox'} or upload it on the page",
        flush=True,
    )
    page = _DemoPage(token_file)

    def serving(url: str) -> None:
        page.url = url
        print(f"\nstatus page: {url}", flush=True)
        print(f"token for actions: {token}  (new each run; kept in {token_file})\n", flush=True)

    asyncio.run(
        run_appliance(
            config,
            seconds=args.seconds,
            summary_every=args.summary_every,
            summary_out=sys.stdout,
            summary_heading=page.heading,
            on_http_started=serving,
        )
    )
    return 0


@dataclass
class _DemoPage:
    """Where the demo's status page is, for the heading of every summary."""

    token_file: Path
    url: str = "(status page starting)"

    def heading(self) -> str:
        return f"{self.url}  (token in {self.token_file})"


def _reset_demo(data_dir: Path, *, confirmed: bool) -> None:
    from appliance.rig.demo import delete_demo_state, demo_state

    try:
        state = demo_state(data_dir)
    except ValueError as exc:
        raise ApplianceError(f"--reset: {exc}; nothing deleted") from None
    names = ", ".join(path.name for path in state)
    if not state:
        print(f"reset: no demo state in {data_dir}", flush=True)
    elif not confirmed:
        raise ApplianceError(f"--reset would delete in {data_dir}: {names}; add --yes to do it")
    else:
        delete_demo_state(state)
        print(f"reset: deleted in {data_dir}: {names}", flush=True)
