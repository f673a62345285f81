"""`appliance model rollback`, on the gateway: through the running appliance's inbox, or
straight in the model library when the appliance is stopped."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from appliance.config import load_config
from appliance.errors import ApplianceError, ConfigError
from appliance.ota.cli.answers import (
    EXIT_NO_ANSWER,
    EXIT_OK,
    OutcomeFields,
    add_wait,
    print_outcome,
)
from appliance.ota.cli.bundle_files import write_atomically
from appliance.ota.inbox import REQUEST_SUFFIX, RESULT_SUFFIX
from appliance.ota.library import LOCK_FILE, BundleLibrary, take_lock
from appliance.ota.settings import models_settings

POLL_S = 0.1


def add_rollback(actions: Any) -> None:
    rollback = actions.add_parser(
        "rollback",
        help="on the gateway: go back to an asset's previous model",
        description="If the appliance runs (it holds the lock on <models directory>/.lock), "
        "ask it through its inbox and wait for the outcome; if not, change the model "
        "library so the asset starts with its previous bundle (or its configured model). "
        "Exit 0 done, 1 refused (e.g. nothing to roll back), 3 no outcome in time.",
    )
    rollback.add_argument(
        "--config", type=Path, required=True, metavar="gateway.toml", help="the gateway's config"
    )
    rollback.add_argument("--asset", required=True, metavar="NAME", help="the asset to roll back")
    rollback.add_argument(
        "--reason",
        default="rollback requested with appliance model rollback",
        help="why, passed to a running appliance (default: %(default)s)",
    )
    add_wait(rollback, 30.0, "a running appliance's outcome")
    rollback.set_defaults(handler=_rollback)


def _rollback(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    settings = models_settings(config, args.config)
    assets = [asset.name for asset in config.assets]
    if args.asset not in assets:
        raise ConfigError(f"{args.config}: no asset {args.asset!r} (it has {', '.join(assets)})")
    if not settings.directory.is_dir():
        return print_outcome(_nothing_to_roll_back(args.asset))
    with library_lock(settings.directory) as held:
        if held:
            return roll_back_in_library(BundleLibrary(settings.directory), args.asset)
    return roll_back_through_inbox(settings.inbox, args.asset, args.reason, args.wait)


@contextlib.contextmanager
def library_lock(directory: Path) -> Iterator[bool]:
    """True (and held) when no appliance holds the library's lock, False when one runs."""
    try:
        fd = take_lock(directory)
    except OSError as exc:
        raise ApplianceError(f"{directory / LOCK_FILE}: {exc.strerror or exc}") from None
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)


def roll_back_in_library(library: BundleLibrary, asset: str) -> int:
    """The appliance is stopped: set the active bundle aside, as its manager would."""
    slots = library.slots(asset)
    if slots.active is None:
        return print_outcome(_nothing_to_roll_back(asset))
    set_aside = slots.roll_back()
    try:
        library.save_slots(asset, slots)
    except OSError as exc:
        raise ApplianceError(f"{library.root / asset}: cannot save: {exc}") from None
    uses = f"bundle {slots.active}" if slots.active else "the configured model"
    print(
        f"the appliance is not running: {asset} no longer uses {set_aside}; from "
        f"its next start it uses {uses} (checked again then)"
    )
    return EXIT_OK


def _nothing_to_roll_back(asset: str) -> OutcomeFields:
    message = f"nothing to roll back: {asset} uses its configured model"
    return {"accepted": False, "action": "rollback", "asset": asset, "message": message}


def roll_back_through_inbox(inbox: Path, asset: str, reason: str, wait_s: float) -> int:
    """The appliance runs: drop a request in its inbox and wait for the outcome it files."""
    name = f"rollback-{asset}-{secrets.token_hex(4)}{REQUEST_SUFFIX}"
    request = {"action": "rollback", "asset": asset, "reason": reason}
    write_atomically(inbox / name, json.dumps(request).encode() + b"\n")
    print(f"the appliance is running: asked it to roll back {asset} ({inbox / name})")
    if wait_s == 0:
        return EXIT_OK
    outcome = wait_for_result(inbox, name, wait_s)
    if outcome is None:
        print(
            f"no outcome within {wait_s:g} s: the request stays in the inbox and is applied "
            f"when the appliance gets to it (delete {inbox / name} to cancel)"
        )
        return EXIT_NO_ANSWER
    return print_outcome(outcome)


def wait_for_result(inbox: Path, name: str, wait_s: float) -> OutcomeFields | None:
    places = [inbox / folder / f"{name}{RESULT_SUFFIX}" for folder in ("done", "refused")]
    deadline = time.monotonic() + wait_s
    while True:
        for path in places:
            with contextlib.suppress(OSError, ValueError):  # not there, or still being written
                outcome = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(outcome, dict):
                    return outcome
        if time.monotonic() > deadline:
            return None
        time.sleep(POLL_S)
