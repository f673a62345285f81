"""structlog setup for the gateway and the receiver: human-readable on a terminal, one JSON object
per line otherwise (journald, containers)."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


class CurrentStderr:
    """Writes each line to whatever `sys.stderr` is at that moment, not the one at configure
    time: a test runner (or a daemon manager) may swap it, and a closed stream must not crash a
    later log call."""

    def msg(self, message: str) -> None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

    debug = info = warning = warn = error = err = critical = exception = fatal = msg


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if out.isatty()
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=(
            structlog.PrintLoggerFactory(file=stream) if stream else lambda *_: CurrentStderr()
        ),
        # Not cached: a test (or a reconfiguration) must be able to swap processors later.
        cache_logger_on_first_use=False,
    )
