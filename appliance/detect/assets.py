"""How each asset is scored: a bundle's detector, or commissioning until the asset has learnt its
own normal; and the state that must survive a restart, kept in the store's detector_state table.

State kinds per asset:
  detector            the adaptive threshold's baseline and the alarm episode (AssetDetector)
  commissioned_model  the LinearModel an asset without a bundle learnt on the gateway
  commissioning       when commissioning started: after a restart the asset's stored feature
                      vectors since then are replayed, which rebuilds exactly the same state
  health              open sensor-fault alarms and CUSUM baselines (AssetHealth)
  probation           a model installed over the air still on probation (its counts so far)
and, gateway-wide (asset ""), alert_router: the open and recent alerts (AlertRouter.to_state).
A state that does not fit (another model, a corrupt row) is logged and ignored, never fatal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import structlog

from appliance.config import ApplianceConfig, AssetConfig, ModelConfig
from appliance.detect.bundle import load_bundle
from appliance.detect.commissioning import (
    CommissionedModel,
    Commissioner,
    CommissioningSettings,
    LinearModel,
)
from appliance.detect.health import AssetHealth
from appliance.detect.routing import ROUTER_STATE, AlertRouter
from appliance.detect.runtime import open_runtime
from appliance.detect.scorer import AssetDetector, BundleModel, DetectorSettings, build_threshold
from appliance.detect.thresholds import STATE_VERSION, check_state_header
from appliance.errors import ApplianceError
from appliance.status import StatusBoard
from appliance.store import DetectorStates, History

log = structlog.get_logger(__name__)

States = dict[tuple[str, str], dict[str, object]]
REPLAY_PAGE = 1000


@dataclass
class Probation:
    """A model just swapped in over the air: it is rolled back if more than `max_fraction` of
    its windows alarm (after at least `min_windows`) before `until` (a window end time)."""

    model_id: str
    until: float
    min_windows: int
    max_fraction: float
    scored: int = 0
    anomalous: int = 0

    def observe(self, t: float, anomalous: bool) -> Literal["watching", "passed", "failed"]:
        if t > self.until:
            return "passed"
        self.scored += 1
        self.anomalous += anomalous
        if self.scored >= self.min_windows and self.alarm_fraction > self.max_fraction:
            return "failed"
        return "watching"

    @property
    def alarm_fraction(self) -> float:
        return self.anomalous / self.scored if self.scored else 0.0

    def to_state(self) -> dict[str, object]:
        return {"version": STATE_VERSION, "kind": "probation", **asdict(self)}

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> Probation:
        """ValueError naming what does not fit."""
        check_state_header(state, "probation")
        fields = {key: value for key, value in state.items() if key not in ("version", "kind")}
        try:
            probation = cls(**fields)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ValueError(f"probation: {exc}") from None
        if not isinstance(probation.model_id, str) or not all(
            isinstance(getattr(probation, n), int | float)
            for n in ("until", "min_windows", "max_fraction", "scored", "anomalous")
        ):
            raise ValueError("probation: a field has the wrong type")
        return probation

    def failure(self) -> str:
        return (
            f"live alarm rate {100 * self.alarm_fraction:.1f} % ({self.anomalous} of "
            f"{self.scored} windows) is above the bound {100 * self.max_fraction:.1f} %"
        )


@dataclass
class Swap:
    """What an asset scores with from the next window on (set by appliance/ota's manager,
    applied by the detect stage between two windows)."""

    detector: AssetDetector | None
    commissioner: Commissioner | None = None
    probation: Probation | None = None
    applied: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class AssetScoring:
    """One asset's scoring; the detect stage is its only writer (the model manager only hands
    it a `pending` swap)."""

    asset: str
    settings: DetectorSettings
    detector: AssetDetector | None = None
    commissioner: Commissioner | None = None
    pending: Swap | None = None
    probation: Probation | None = None

    def apply_pending(self) -> Swap | None:
        """Take the pending swap, if any; an open alarm episode carries over to the new model
        (it clears when the new model sees normal windows)."""
        swap, self.pending = self.pending, None
        if swap is None:
            return None
        if swap.detector is not None and self.detector is not None:
            swap.detector.alarm = self.detector.alarm
        self.detector, self.commissioner = swap.detector, swap.commissioner
        self.probation = swap.probation
        swap.applied.set()
        return swap

    def commissioned(self, result: CommissionedModel) -> None:
        """Commissioning is over: score from now on with what it learnt."""
        model = result.model
        threshold = build_threshold(model, self.settings, result.seed_errors)
        self.detector = AssetDetector(self.asset, model, self.settings, threshold)
        self.commissioner = None

    def states(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        if self.detector is not None:
            out["detector"] = self.detector.to_state()
            if isinstance(self.detector.model, LinearModel):
                out["commissioned_model"] = self.detector.model.to_state()
        if self.commissioner is not None:
            started_at = self.commissioner.started_at
            out["commissioning"] = {"version": 1, "kind": "commissioning", "started_at": started_at}
        if self.probation is not None:
            out["probation"] = self.probation.to_state()
        return out


def detector_settings(model: ModelConfig) -> DetectorSettings:
    defaults = DetectorSettings()
    adaptive = replace(defaults.adaptive, k=model.k, statistic=model.statistic)
    alarm = replace(defaults.alarm, off_count=model.clear_after_windows)
    return DetectorSettings(rule=model.rule, adaptive=adaptive, alarm=alarm)


def open_detector(asset: str, model: ModelConfig) -> AssetDetector:
    """The asset's detector from its configured bundle; BundleError/ApplianceError says why not."""
    assert model.bundle is not None
    bundle = load_bundle(Path(model.bundle))
    if bundle.manifest.asset not in (None, asset):
        log.warning(
            "bundle_for_other_asset",
            asset=asset,
            bundle_asset=bundle.manifest.asset,
            bundle=bundle.bundle_id,
        )
    runtime = open_runtime(bundle, model.backend)
    return AssetDetector(asset, BundleModel(bundle, runtime), detector_settings(model))


async def open_scorings(
    config: ApplianceConfig,
    history: History,
    board: StatusBoard,
    states: States,
    installed: Mapping[str, BundleModel] | None = None,
) -> dict[str, AssetScoring]:
    """Each asset's scoring, continuing from `states` (DetectorStates.load_states()) where they fit.
    A bundle in `installed` (arrived over the air, appliance/ota) takes the configured one's
    place."""
    scorings = {}
    for asset in config.assets:
        over_the_air = (installed or {}).get(asset.name)
        scoring = await open_scoring(asset, history, board, states, over_the_air)
        if scoring.detector is not None:
            _restore(scoring.detector, states.get((asset.name, "detector")))
            scoring.probation = _probation(scoring.detector, states.get((asset.name, "probation")))
        board.asset(asset.name).model = describe_scoring(scoring, board.asset(asset.name).model)
        scorings[asset.name] = scoring
    return scorings


async def open_scoring(
    asset: AssetConfig,
    history: History,
    board: StatusBoard,
    states: States,
    installed: BundleModel | None = None,
) -> AssetScoring:
    """How `asset` scores: the installed bundle, else the configured one, else commissioning."""
    scoring = AssetScoring(asset.name, detector_settings(asset.model))
    if installed is not None:
        scoring.detector = AssetDetector(asset.name, installed, scoring.settings)
    elif asset.model.bundle is not None:
        scoring.detector = _bundle_detector(asset, board)
    else:
        await _commissioning(scoring, asset, history, states)
    return scoring


def describe_scoring(scoring: AssetScoring, refused: str) -> str:
    if scoring.detector is not None:
        return f"scoring with {scoring.detector.model.model_id}"
    if scoring.commissioner is not None:
        return scoring.commissioner.progress().describe()
    return refused


def _bundle_detector(asset: AssetConfig, board: StatusBoard) -> AssetDetector | None:
    """A refused bundle is reported on the asset's status and in the log; the asset keeps
    running unscored (its features are still stored)."""
    try:
        return open_detector(asset.name, asset.model)
    except ApplianceError as exc:
        board.asset(asset.name).model = f"model refused: {exc}"
        log.error("model_refused", asset=asset.name, bundle=asset.model.bundle, reason=str(exc))
        return None


async def _commissioning(
    scoring: AssetScoring, asset: AssetConfig, history: History, states: States
) -> None:
    learnt = states.get((asset.name, "commissioned_model"))
    if learnt is not None:
        try:
            model = LinearModel.from_state(learnt)
        except ValueError as exc:
            log.error("commissioned_model_unreadable", asset=asset.name, reason=str(exc))
        else:
            scoring.detector = AssetDetector(asset.name, model, scoring.settings)
            return
    settings = CommissioningSettings(
        period_s=asset.model.commission_hours * 3600.0,
        min_windows=asset.model.commission_min_windows,
    )
    started_at = _started_at(states.get((asset.name, "commissioning")))
    scoring.commissioner = Commissioner(asset.name, settings, started_at or time.time())
    if started_at is not None:
        await _replay(scoring, history)
    log.info(
        "commissioning",
        asset=asset.name,
        progress=scoring.commissioner.progress().describe() if scoring.commissioner else "done",
    )


def _started_at(state: Mapping[str, object] | None) -> float | None:
    value = None if state is None else state.get("started_at")
    return float(value) if isinstance(value, int | float) else None


async def _replay(scoring: AssetScoring, history: History) -> None:
    """Offer the asset's stored vectors again, as if the gateway had never stopped."""
    after_seq = 0
    while scoring.commissioner is not None:
        page = await history.features(scoring.asset, after_seq=after_seq, limit=REPLAY_PAGE)
        for seq, vector in page:
            after_seq = seq
            result = scoring.commissioner.offer(vector)
            if result is not None:
                scoring.commissioned(result)
                break
        if len(page) < REPLAY_PAGE:
            return


def _restore(detector: AssetDetector, state: Mapping[str, object] | None) -> None:
    if state is None:
        return
    try:
        detector.restore(state)
    except ValueError as exc:
        log.warning("detector_state_ignored", asset=detector.asset, reason=str(exc))
    else:
        log.info("detector_state_restored", asset=detector.asset, model=detector.model.model_id)


def _probation(detector: AssetDetector, state: Mapping[str, object] | None) -> Probation | None:
    """A probation a restart interrupted goes on, for the model it was about."""
    if state is None:
        return None
    try:
        probation = Probation.from_state(state)
    except ValueError as exc:
        log.warning("probation_state_ignored", asset=detector.asset, reason=str(exc))
        return None
    if probation.model_id != detector.model.model_id:
        return None
    log.info("model_probation_continues", asset=detector.asset, model=probation.model_id,
             scored=probation.scored, anomalous=probation.anomalous)  # fmt: skip
    return probation


def restore_health(monitors: Mapping[str, AssetHealth], states: States) -> None:
    for asset, monitor in monitors.items():
        state = states.get((asset, "health"))
        if state is None:
            continue
        try:
            monitor.restore(state)
        except ValueError as exc:
            log.warning("health_state_ignored", asset=asset, reason=str(exc))


async def save_states(
    store: DetectorStates,
    scorings: Mapping[str, AssetScoring],
    monitors: Mapping[str, AssetHealth],
    router: AlertRouter | None = None,
) -> None:
    """Everything that must survive a restart, in one transaction (with `router`, the open
    alerts too: appliance/detect/restart.py)."""
    states: States = {}
    if router is not None:
        states[ROUTER_STATE] = router.to_state()
    for asset, scoring in scorings.items():
        for kind, state in scoring.states().items():
            states[asset, kind] = state
    for asset, monitor in monitors.items():
        states[asset, "health"] = monitor.to_state()
    await store.save_states(states)
    for asset, scoring in scorings.items():
        if scoring.commissioner is None:
            await store.delete_state(asset, "commissioning")
        if scoring.probation is None:
            await store.delete_state(asset, "probation")
