"""The release manager in the running appliance: takes release bundles (inbox directory, MQTT
command, page upload), installs them beside the running release (install.py, on a daemon
thread), then stops the appliance with RESTART_EXIT so that systemd starts the new release;
runs the health check of a release on trial and confirms it, or switches back and restarts;
rolls back by command. Every outcome is an `Outcome`: counted, logged, shown, answered."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance import __version__
from appliance.config import ReleaseConfig
from appliance.errors import ApplianceError, BundleError, ConfigError
from appliance.ota.daemon_thread import in_daemon_thread
from appliance.ota.inbox import Inbox
from appliance.ota.outcomes import OUTCOMES_KEPT, Outcome, unexpected
from appliance.ota.release import trial
from appliance.ota.release.bundle import RELEASE_LIMITS
from appliance.ota.release.install import RESTART_EXIT, Installer
from appliance.ota.release.slots import CONFIRMED, CURRENT, ReleaseRoot
from appliance.ota.settings import trusted_keys
from appliance.status import StatusBoard
from appliance.uplink.commands import Command

log = structlog.get_logger(__name__)

INSTALL_BUDGET_S = 1800.0
"""Longest an install (checks, venv, pip) may take before it is refused."""

Unhealthy = Callable[[], str | None]
"""What the running appliance still lacks to count as healthy, None once it is."""


@dataclass(frozen=True)
class ReleaseSettings:
    root: Path
    keys: tuple[Ed25519PublicKey, ...]
    inbox: Path
    inbox_poll_s: float
    health_bound_s: float
    max_starts: int
    keep_releases: int
    with_pip: bool = True


def release_settings(config: ReleaseConfig, store_path: Path) -> ReleaseSettings:
    """ConfigError naming the key or file that is wrong."""
    return ReleaseSettings(
        root=Path(config.root),
        keys=trusted_keys("release", config.public_keys, config.public_key_files),
        inbox=Path(config.inbox) if config.inbox else store_path.parent / "release-inbox",
        inbox_poll_s=config.inbox_poll_s,
        health_bound_s=config.health_bound_s,
        max_starts=config.max_starts,
        keep_releases=config.keep_releases,
    )


@dataclass
class ReleaseStatus:
    """Written by the manager only; the page, /api/status and the MQTT status read it."""

    version: str = __version__
    """Of the code running now."""
    release: str | None = None
    """The release `current` names (None: not run from a release root)."""
    confirmed: str | None = None
    trial: dict[str, Any] | None = None
    health: str = "no release on trial"
    failed: list[dict[str, Any]] = field(default_factory=list)
    installs: int = 0
    rollbacks: int = 0
    automatic_rollbacks: int = 0
    refusals: int = 0
    outcomes: deque[Outcome] = field(default_factory=lambda: deque(maxlen=OUTCOMES_KEPT))

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "release": self.release,
            "confirmed": self.confirmed,
            "trial": self.trial,
            "health": self.health,
            "failed": list(self.failed),
            "installs": self.installs,
            "rollbacks": self.rollbacks,
            "automatic_rollbacks": self.automatic_rollbacks,
            "refusals": self.refusals,
            "outcomes": [o.to_dict() for o in reversed(self.outcomes)],
        }


class ReleaseManager:
    def __init__(self, settings: ReleaseSettings, board: StatusBoard, stop: asyncio.Event):
        self.settings = settings
        self.root = ReleaseRoot(settings.root)
        self._board = board
        self._stop = stop
        self.exit_status = 0
        """RESTART_EXIT once the appliance stops to start another release."""
        self.status = ReleaseStatus()
        self.on_change: Callable[[], None] | None = None
        self._lock = asyncio.Lock()
        self._refusals = 0
        self.inbox = Inbox(
            settings.inbox,
            settings.inbox_poll_s,
            self.install,
            lambda _asset, reason, source: self.rollback(reason, source),
            self._record,
            max_bytes=RELEASE_LIMITS.max_bytes,
        )

    def open(self) -> None:
        try:
            self.settings.inbox.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"release.inbox: {self.settings.inbox}: {exc}") from None
        self.refresh()
        if self.status.failed:
            last = self.status.failed[-1]
            log.warning("release_failed_before", version=last["version"], reason=last["reason"])

    def refresh(self) -> None:
        """The status from the release root (the guard and the CLI change it too)."""
        status = self.status
        try:
            state = self.root.load()
        except (OSError, ValueError, TypeError) as exc:
            status.health = f"release state unreadable: {exc}"
            return
        status.release = self.root.linked(CURRENT)
        status.confirmed = self.root.linked(CONFIRMED)
        status.trial = None
        if state.trial is not None:
            t = state.trial
            status.trial = {"version": t.version, "previous": t.previous, "starts": t.starts,
                            "max_starts": t.max_starts, "since": t.since}  # fmt: skip
        status.failed = state.failed[-5:]
        status.installs, status.rollbacks = state.installs, state.rollbacks
        status.automatic_rollbacks = state.automatic_rollbacks
        status.refusals = self._refusals

    async def run(self, unhealthy: Unhealthy) -> None:
        """Watch the inbox and run the health check of a release on trial; until cancelled.
        Started once the appliance has sent READY."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.inbox.watch())
            group.create_task(self._health_check(unhealthy))

    # --- install and rollback --------------------------------------------------------------

    async def install(self, data: bytes, source: str) -> Outcome:
        async with self._lock:
            try:
                if len(data) > RELEASE_LIMITS.max_bytes:
                    raise BundleError(f"archive: {len(data)} bytes, more than the limit")
                message = await in_daemon_thread(
                    lambda: self._install(data, source), INSTALL_BUDGET_S, lambda: None
                )
                outcome = Outcome(True, "install", source, None, None, message)
            except TimeoutError:
                outcome = Outcome(False, "install", source, None, None,
                                  f"took longer than {INSTALL_BUDGET_S:g} s")  # fmt: skip
            except (ApplianceError, trial.NoRollback, OSError, ValueError) as exc:
                outcome = Outcome(False, "install", source, None, None, str(exc))
            except Exception as exc:
                outcome = Outcome(False, "install", source, None, None, unexpected(exc, source))
            outcome = self._record(outcome)
            if outcome.accepted:
                self._restart()
            return outcome

    def _install(self, data: bytes, source: str) -> str:
        s = self.settings
        installer = Installer(self.root, s.keys, s.max_starts, s.keep_releases, s.with_pip)
        with self.root.locked(wait=False) as mine:
            if not mine:
                raise BundleError("another install or rollback holds the release root")
            return installer.install(data, source)

    async def rollback(self, reason: str, source: str) -> Outcome:
        async with self._lock:
            try:
                with self.root.locked(wait=False) as mine:
                    if not mine:
                        raise BundleError("another install or rollback holds the release root")
                    message = trial.roll_back(self.root, reason)
                outcome = Outcome(True, "rollback", source, None, None, message)
            except (ApplianceError, trial.NoRollback, OSError, ValueError) as exc:
                outcome = Outcome(False, "rollback", source, None, None, str(exc))
            outcome = self._record(outcome)
            if outcome.accepted:
                self._restart()
            return outcome

    async def handle_command(self, command: Command) -> dict[str, Any]:
        """install_release or rollback_release from the uplink's command topic."""
        source = f"mqtt:{command.id}"
        if command.action == "install_release" and command.bundle is not None:
            outcome = await self.install(command.bundle, source)
        elif command.action == "rollback_release":
            outcome = await self.rollback("rollback requested over MQTT", source)
        else:
            outcome = self._record(Outcome(False, "command", source, None, None, "no bundle"))
        return outcome.to_dict()

    # --- the health check of a release on trial --------------------------------------------

    async def _health_check(self, unhealthy: Unhealthy) -> None:
        on_trial = self.status.trial
        if on_trial is None or on_trial["version"] != self.status.release:
            return
        version, bound = on_trial["version"], self.settings.health_bound_s
        self.status.health = f"release {version} on trial: health check running"
        try:
            async with asyncio.timeout(bound):
                await self._board.wait_for(lambda: unhealthy() is None)
        except TimeoutError:
            reason = f"health check failed: not healthy within {bound:g} s ({unhealthy()})"
            await self._end_trial(version, reason)
            return
        async with self._lock:
            with self.root.locked():
                trial.confirm(self.root, version)
        message = f"release {version} passed its health check: confirmed"
        self._record(Outcome(True, "install", "health check", None, version, message))

    async def _end_trial(self, version: str, reason: str) -> None:
        async with self._lock:
            with self.root.locked():
                message = trial.fail(self.root, reason, automatic=True)
        self._record(Outcome(False, "rollback", "health check", None, version, message))
        self._restart()

    # --- helpers ---------------------------------------------------------------------------

    def _restart(self) -> None:
        """Stop; systemd starts `current` again (the new release, or the one switched back)."""
        self.exit_status = RESTART_EXIT
        self._stop.set()

    def _record(self, outcome: Outcome) -> Outcome:
        self.status.outcomes.append(outcome)
        if not outcome.accepted and outcome.source != "health check":
            self._refusals += 1
        self.refresh()
        if outcome.source == "health check":
            self.status.health = outcome.message
        log_event = log.info if outcome.accepted else log.error
        log_event("release_" + outcome.action, accepted=outcome.accepted, source=outcome.source,
                  release=outcome.model, detail=outcome.message)  # fmt: skip
        self._board.changed()
        if self.on_change is not None:
            self.on_change()
        return outcome
