"""What became of each install or rollback (`Outcome`), the manager's running counts
(`ModelsStatus`), and the refusal for an exception no check foresaw."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import structlog

log = structlog.get_logger(__name__)

OUTCOMES_KEPT = 20
SHOWN_CHARS = 200
"""How much of an unexpected exception's text a refusal repeats."""


@dataclass(frozen=True)
class Outcome:
    """What became of one install or rollback; shown on the page, answered over MQTT/HTTP."""

    accepted: bool
    action: Literal["install", "rollback", "command"]
    source: str
    asset: str | None
    model: str | None
    message: str
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelsStatus:
    """Written by the manager only; the page, /metrics and the uplink's status read it."""

    active: dict[str, str] = field(default_factory=dict)
    """Asset -> model id in use (bundle id, commissioned model, or "commissioning")."""
    origin: dict[str, str] = field(default_factory=dict)
    """Asset -> "over the air", "config" or "commissioning"."""
    previous: dict[str, str | None] = field(default_factory=dict)
    """Asset -> what a rollback would restore (None: nothing)."""
    outcomes: deque[Outcome] = field(default_factory=lambda: deque(maxlen=OUTCOMES_KEPT))
    installs: int = 0
    refusals: int = 0
    rollbacks: int = 0
    automatic_rollbacks: int = 0


def unexpected(exc: Exception, where: str) -> str:
    """The refusal for an exception no check foresaw: logged with its traceback (a bug to
    fix), answered with its type and a short text."""
    log.error("model_check_crashed", where=where, exc_info=exc)
    text = str(exc)
    text = text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."
    return f"refused: the checks failed unexpectedly ({type(exc).__name__}: {text})"
