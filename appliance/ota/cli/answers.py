"""How the model commands end: their exit codes, the `--wait` for a gateway's answer, and the
answer printed."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

EXIT_OK, EXIT_REFUSED, EXIT_NO_ANSWER = 0, 1, 3
OutcomeFields = Mapping[str, Any]
"""What the manager answers (Outcome.to_dict): accepted, action, asset, model, message."""


def add_wait(parser: argparse.ArgumentParser, default: float, what: str) -> None:
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=default,
        metavar="SECONDS",
        help=f"how long to wait for {what}, 0: do not wait (default: %(default)s)",
    )


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def print_outcome(outcome: OutcomeFields, who: str = "") -> int:
    accepted = outcome.get("accepted") is True
    what = " ".join(str(outcome[k]) for k in ("action", "asset", "model") if outcome.get(k))
    verdict = "accepted" if accepted else "refused"
    message = outcome.get("message") or "(no message)"
    print(f"{who}{': ' if who else ''}{verdict}: {what or '-'}: {message}")
    return EXIT_OK if accepted else EXIT_REFUSED
