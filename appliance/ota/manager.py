"""The model manager: the only writer of which bundle each asset uses.

Bundles arrive as archives from three places (the inbox directory, the uplink's MQTT command
topic, an upload on the status page); `install` checks each (vetting.py), keeps it in the
library, and hands the detect stage a swap it applies between two windows. `rollback` (the CLI,
the page, or a model failing its probation) restores the bundle before, or the configured model.
Model changes are serialised by one lock, so two arrivals never interleave. The inbox's files
(inbox.py), the [models] settings (settings.py) and the outcomes (outcomes.py) live beside it.

Whatever arrives, the outcome is an `Outcome`: a check that fails, and any exception of any type
while checking (a bug, an input nobody foresaw), ends as a refusal with a reason, counted,
logged, shown and answered; nothing a sender sends can end the manager's task. The checks,
unpacking and the canary run on a daemon thread with a time budget, never on the event loop."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import structlog

from appliance.config import ApplianceConfig
from appliance.detect.assets import (
    AssetScoring,
    Probation,
    Swap,
    describe_scoring,
    detector_settings,
    open_scoring,
)
from appliance.detect.scorer import AssetDetector, BundleModel, build_threshold
from appliance.errors import ApplianceError, BundleError, ConfigError
from appliance.ota.archive import MAX_ARCHIVE_BYTES
from appliance.ota.daemon_thread import in_daemon_thread
from appliance.ota.inbox import Inbox
from appliance.ota.library import BundleLibrary, Slots, take_lock
from appliance.ota.outcomes import ModelsStatus as ModelsStatus  # re-exported: tests
from appliance.ota.outcomes import Outcome as Outcome  # re-exported: web/server.py
from appliance.ota.outcomes import unexpected
from appliance.ota.settings import OtaSettings
from appliance.ota.settings import ota_settings as ota_settings  # re-exported: app.py
from appliance.ota.vetting import CanaryResult, check_bundle, check_newer, run_canary, stage_signed
from appliance.status import StatusBoard
from appliance.store import DetectorStates, History
from appliance.uplink.commands import Command, RefusedCommand

log = structlog.get_logger(__name__)

T = TypeVar("T")


def _unusable(key: str, path: Path, exc: OSError) -> str:
    return f"{key}: {path} cannot be used: {exc.strerror or exc}"


class ModelManager:
    def __init__(
        self,
        settings: OtaSettings,
        config: ApplianceConfig,
        history: History,
        states: DetectorStates,
        board: StatusBoard,
        feature_names: Mapping[str, tuple[str, ...]],
    ) -> None:
        self.settings = settings
        self._assets = {asset.name: asset for asset in config.assets}
        self._history = history
        self._states = states
        self._board = board
        self._feature_names = dict(feature_names)
        self._backends = {asset.name: asset.model.backend for asset in config.assets}
        self.on_change: Callable[[], None] | None = None
        """Called after every accepted change (the uplink publishes its status again)."""
        self.library = BundleLibrary(settings.directory)
        self.status = ModelsStatus()
        self.scorings: dict[str, AssetScoring] = {}
        self._lock = asyncio.Lock()
        self._failed_probations: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._lock_file: int | None = None
        self.inbox = Inbox(
            settings.inbox, settings.inbox_poll_s, self.install, self.rollback, self._record
        )

    # --- life -----------------------------------------------------------------------------

    def open(self) -> None:
        """Take the library (one appliance at a time; `appliance model rollback` checks the same
        lock to know whether one runs) and its inbox."""
        try:
            self.library.open()
            fd = take_lock(self.settings.directory)
        except OSError as exc:
            raise ConfigError(_unusable("models.directory", self.settings.directory, exc)) from None
        if fd is None:
            raise ConfigError(
                f"models.directory {self.settings.directory} is in use by another appliance"
            )
        try:
            self.settings.inbox.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            os.close(fd)
            raise ConfigError(_unusable("models.inbox", self.settings.inbox, exc)) from None
        self._lock_file = fd

    def close(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None

    def installed_models(self) -> dict[str, BundleModel]:
        """At start: each asset's active over-the-air bundle, checked again (files on disk can
        be damaged or replaced). One that fails is logged and the asset falls back to the bundle
        before it, or its configured model."""
        models = {}
        for asset in self._assets:
            slots = self.library.slots(asset)
            active = slots.active
            model = self._first_loadable(asset, slots)
            if slots.active != active:  # a bundle failed its checks: remember it
                self.library.save_slots(asset, slots)
            if model is not None:
                models[asset] = model
        return models

    def _first_loadable(self, asset: str, slots: Slots) -> BundleModel | None:
        """The newest bundle of the history that passes its checks again; those that do not
        are logged and moved to rolled_back."""
        while slots.active is not None:
            try:
                return self._load(asset, slots.active)
            except BundleError as exc:
                log.error("installed_model_refused", asset=asset, model=slots.active,
                          reason=str(exc))  # fmt: skip
            except Exception as exc:  # whatever is on disk must not stop every start
                log.error("installed_model_refused", asset=asset, model=slots.active,
                          reason=unexpected(exc, "library"))  # fmt: skip
            slots.roll_back()
        return None

    def attach(self, scorings: dict[str, AssetScoring]) -> None:
        self.scorings = scorings
        for asset in self._assets:
            self._describe(asset)

    async def run(self) -> None:
        """Watch the inbox and roll back models that fail their probation; until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.inbox.watch())
            group.create_task(self._roll_back_failed_probations())

    async def handle_command(self, command: Command | RefusedCommand) -> dict[str, Any]:
        """An install or rollback that arrived on the uplink's command topic (or a payload
        there that is not a command: its refusal is recorded like any other)."""
        source = f"mqtt:{command.id or '?'}"
        if isinstance(command, RefusedCommand):
            outcome = self._record(Outcome(False, "command", source, None, None, command.reason))
        elif command.action == "install_model" and command.bundle is not None:
            outcome = await self.install(command.bundle, source, command.allow_downgrade)
        elif command.asset is not None:
            outcome = await self.rollback(command.asset, "rollback requested over MQTT", source)
        else:
            outcome = self._record(Outcome(False, "install", source, None, None, "no bundle"))
        return outcome.to_dict()

    def probation_failed(self, asset: str, reason: str) -> None:
        """Called by the detect stage; the rollback happens in the manager's own task."""
        self._failed_probations.put_nowait((asset, reason))

    # --- install --------------------------------------------------------------------------

    async def install(self, archive: bytes, source: str, allow_downgrade: bool = False) -> Outcome:
        """Check and install one bundle archive; never raises (but a cancellation): every
        failure is a refused Outcome."""
        async with self._lock:
            staged = self.library.new_staging_dir()
            try:
                outcome = await self._install(archive, staged, source, allow_downgrade)
            except (ApplianceError, ValueError) as exc:
                outcome = Outcome(False, "install", source, None, None, str(exc))
            except Exception as exc:
                outcome = Outcome(False, "install", source, None, None, unexpected(exc, source))
            finally:
                shutil.rmtree(staged, ignore_errors=True)
            return self._record(outcome)

    async def _install(
        self, archive: bytes, staged: Path, source: str, allow_downgrade: bool
    ) -> Outcome:
        if len(archive) > MAX_ARCHIVE_BYTES:  # before any copy to a thread
            raise BundleError(f"archive: {len(archive)} bytes, more than {MAX_ARCHIVE_BYTES}")
        model = await self._off_loop(lambda: self._vet(archive, staged), "checks", staged)
        asset = model.bundle.manifest.asset
        assert asset is not None
        try:
            scoring = self.scorings[asset]
            if scoring.detector is not None and scoring.detector.model.model_id == model.model_id:
                raise BundleError(f"already active: {asset} scores with {model.model_id}")
            self._check_newer(asset, model, allow_downgrade)
            return await self._canary_and_swap(model, asset, staged, source)
        except BundleError as exc:
            return Outcome(False, "install", source, asset, model.model_id, str(exc))

    def _vet(self, archive: bytes, staged: Path) -> BundleModel:
        """On the checks' thread: unpack what the signature covers, then every check."""
        stage_signed(archive, staged, self.settings.keys)
        return check_bundle(staged, self.settings.keys, self._feature_names, self._backends)

    def _check_newer(self, asset: str, model: BundleModel, allow_downgrade: bool) -> None:
        active = self.library.slots(asset).active
        if active is None or allow_downgrade:  # no bundle over the air yet: any version
            return
        check_newer(model.bundle.manifest.version, version_of(active), asset)

    async def _off_loop(self, work: Callable[[], T], what: str, staged: Path) -> T:
        budget = self.settings.check_budget_s
        cleanup = lambda: shutil.rmtree(staged, ignore_errors=True)  # noqa: E731
        try:
            return await in_daemon_thread(work, budget, on_abandoned=cleanup)
        except TimeoutError:
            raise BundleError(f"{what}: took longer than {budget:g} s; refused") from None

    async def _canary_and_swap(
        self, model: BundleModel, asset: str, staged: Path, source: str
    ) -> Outcome:
        windows = await self._history.recent_normal_features(asset, self.settings.canary.windows)
        canary = await self._off_loop(
            lambda: run_canary(model, windows, self.settings.canary), "canary", staged
        )
        bundle_id = model.bundle.bundle_id
        kept = self.library.keep(staged, asset, bundle_id)
        model.bundle = replace(model.bundle, path=kept)
        slots = self.library.slots(asset)
        slots.history = [i for i in slots.history if i != bundle_id] + [bundle_id]
        slots.rolled_back = [i for i in slots.rolled_back if i != bundle_id]
        self.library.save_slots(asset, self.library.prune(asset, slots, self.settings.keep_bundles))
        self._hand_over(asset, self._seeded_detector(asset, model, canary), self._probation(model))
        message = f"installed; {canary.describe()}; takes over from the next window"
        return Outcome(True, "install", source, asset, model.model_id, message)

    def _seeded_detector(
        self, asset: str, model: BundleModel, canary: CanaryResult
    ) -> AssetDetector:
        """The canary's errors (those under the threshold) seed the adaptive baseline, so the
        new model needs no warm-up."""
        settings = detector_settings(self._assets[asset].model)
        seed = [float(e) for e in canary.errors if e <= canary.threshold]
        return AssetDetector(asset, model, settings, build_threshold(model, settings, seed))

    def _probation(self, model: BundleModel) -> Probation | None:
        s = self.settings
        if s.probation_s <= 0:
            return None
        return Probation(
            model.model_id,
            time.time() + s.probation_s,
            s.probation_min_windows,
            s.probation_max_alarm_fraction,
        )

    # --- rollback -------------------------------------------------------------------------

    async def rollback(self, asset: str, reason: str, source: str) -> Outcome:
        async with self._lock:
            try:
                outcome = await self._rollback(asset, reason, source)
            except (ApplianceError, ValueError) as exc:
                outcome = self._refused_rollback(asset, source, str(exc))
            except Exception as exc:
                outcome = self._refused_rollback(asset, source, unexpected(exc, source))
            return self._record(outcome)

    def _refused_rollback(self, asset: str, source: str, message: str) -> Outcome:
        known = asset if asset in self._assets else None  # an unknown name is not repeated
        return Outcome(False, "rollback", source, known, None, message)

    async def _rollback(self, asset: str, reason: str, source: str) -> Outcome:
        if asset not in self._assets:
            shown = repr(asset) if len(asset) <= 64 else f"{asset[:40]!r}..."
            raise BundleError(f"no asset {shown} (this gateway has {', '.join(self._assets)})")
        slots = self.library.slots(asset)
        if slots.active is None:
            raise BundleError(
                f"nothing to roll back: {asset} already scores with its configured model"
            )
        slots.roll_back()
        restored = self._first_loadable(asset, slots)
        if restored is not None:
            settings = detector_settings(self._assets[asset].model)
            self._hand_over(asset, AssetDetector(asset, restored, settings), None)
        else:
            await self._back_to_configured(asset)
        self.library.save_slots(asset, slots)
        model = slots.active or "the configured model"
        return Outcome(True, "rollback", source, asset, slots.active, f"{reason}; now {model}")

    async def _back_to_configured(self, asset: str) -> None:
        states = await self._states.load_states()
        fresh = await open_scoring(self._assets[asset], self._history, self._board, states)
        if fresh.detector is None and fresh.commissioner is None:
            raise BundleError(f"the configured model of {asset} does not load either")
        self.scorings[asset].pending = Swap(fresh.detector, fresh.commissioner)

    async def _roll_back_failed_probations(self) -> None:
        while True:
            asset, reason = await self._failed_probations.get()
            outcome = await self.rollback(asset, f"automatic rollback: {reason}", "probation")
            if outcome.accepted:
                self.status.automatic_rollbacks += 1

    # --- helpers --------------------------------------------------------------------------

    def _load(self, asset: str, bundle_id: str) -> BundleModel:
        directory = self.library.bundle_dir(asset, bundle_id)
        return check_bundle(directory, self.settings.keys, self._feature_names, self._backends)

    def _hand_over(self, asset: str, detector: AssetDetector, probation: Probation | None) -> None:
        self.scorings[asset].pending = Swap(detector, None, probation)

    def _record(self, outcome: Outcome) -> Outcome:
        status = self.status
        status.outcomes.append(outcome)
        self._board.changed()  # waiters run after this synchronous update is complete
        if not outcome.accepted:
            status.refusals += 1
            log.error("model_refused", action=outcome.action, source=outcome.source,
                      asset=outcome.asset, model=outcome.model, reason=outcome.message)  # fmt: skip
            return outcome
        if outcome.action == "install":
            status.installs += 1
        else:
            status.rollbacks += 1
        log.info("model_" + ("installed" if outcome.action == "install" else "rolled_back"),
                 source=outcome.source, asset=outcome.asset, model=outcome.model,
                 detail=outcome.message)  # fmt: skip
        try:
            if outcome.asset is not None:
                self._describe(outcome.asset, pending=True)
            if self.on_change is not None:
                self.on_change()
        except Exception:  # what is shown lags; the change itself is made
            log.exception("model_change_not_shown", asset=outcome.asset)
        return outcome

    def _describe(self, asset: str, pending: bool = False) -> None:
        """What the page and MQTT show: the model the asset scores with (or is about to)."""
        scoring = self.scorings.get(asset)
        if scoring is None:
            return
        swap = scoring.pending if pending else None
        detector = swap.detector if swap is not None else scoring.detector
        commissioning = (
            swap.commissioner if swap is not None else scoring.commissioner
        ) is not None
        slots = self.library.slots(asset)
        if detector is not None:
            self.status.active[asset] = detector.model.model_id
        else:
            self.status.active[asset] = "commissioning"
        self.status.origin[asset] = (
            "over the air" if slots.active else "commissioning" if commissioning else "config"
        )
        self.status.previous[asset] = slots.previous or ("config" if slots.active else None)
        if swap is None:
            self._board.asset(asset).model = describe_scoring(
                scoring, self._board.asset(asset).model
            )


def version_of(bundle_id: str) -> str:
    """The version part of a bundle id (`<version>-<12 hex digits>`)."""
    return bundle_id.rsplit("-", 1)[0]
