"""The diagnosis stage's wiring (appliance/diagnosis/live.py does the work): a diagnoser per
asset with an [assets.machine] table, fed by the feature stage as a block observer beside the
sensor-health checks, told by the status board whether the asset is raised, and publishing
each diagnosis on the board, where the alert stage's wording and the page read it; while the
asset's anomaly alarm is open, a diagnosis naming a fault its text did not carry becomes a
follow-up alert (appliance/diagnosis/followup.py) for the alert stage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import structlog

from appliance.config import ApplianceConfig
from appliance.diagnosis.followup import FollowUps
from appliance.diagnosis.live import (
    AssetDiagnoser,
    BlockObserver,
    BlockObservers,
    Diagnosed,
    Raised,
    build_diagnosers,
)
from appliance.records import Alert
from appliance.status import StatusBoard

log = structlog.get_logger(__name__)

Diagnosers = dict[str, AssetDiagnoser]
OpenAlarm = Callable[[str], Alert | None]
"""The asset's open anomaly alarm, as routed (AlertRouter.open_anomaly)."""
FollowUp = Callable[[Alert], None]
"""Takes a follow-up alert to the alert stage."""


def diagnosers_on_board(
    config: ApplianceConfig,
    board: StatusBoard,
    open_alarm: OpenAlarm = lambda asset: None,
    follow_up: FollowUp = lambda alert: None,
) -> Diagnosers:
    """The assets' diagnosers, reading the board's scores and alarms, writing its diagnoses;
    each with its follow-up rule, reading `open_alarm` and telling `follow_up`."""

    def raised(asset: str) -> Raised:
        status = board.asset(asset)

        def now() -> bool:
            score = status.latest_score
            flagged = score is not None and score.anomalous
            rules_up = any(status.sensor_faults.values())
            return flagged or status.alarm is not None or rules_up

        return now

    features = config.features
    diagnosers = build_diagnosers(config.assets, features.window_s, features.stride_s, raised)
    for name, diagnoser in diagnosers.items():
        rule = FollowUps(name, board.zone)
        diagnoser.on_diagnosed = _publisher(board, name, rule, open_alarm, follow_up)
        diagnoser.on_failed = _first_failure_logged(name)
    return diagnosers


def _first_failure_logged(asset: str) -> Callable[[str], None]:
    logged = False

    def failed(reason: str) -> None:
        nonlocal logged
        if not logged:
            logged = True
            log.error("diagnosis_failed", asset=asset, reason=reason)

    return failed


def _publisher(
    board: StatusBoard, asset: str, rule: FollowUps, open_alarm: OpenAlarm, follow_up: FollowUp
) -> Callable[[Diagnosed], None]:
    status = board.asset(asset)

    def publish(diagnosed: Diagnosed) -> None:
        status.diagnosis = diagnosed
        verdict, zone = diagnosed.verdict, diagnosed.diagnosis.zone
        alert = rule.observe(open_alarm(asset), diagnosed.t, verdict, zone, diagnosed.text)
        if alert is not None:
            follow_up(alert)

    return publish


def to_alert_stage(alerts: asyncio.Queue[Alert]) -> FollowUp:
    """Puts a follow-up on the alert stage's queue; if that is full (the stage is stuck), the
    follow-up is logged instead (the feature stage never waits)."""

    def put(alert: Alert) -> None:
        try:
            alerts.put_nowait(alert)
        except asyncio.QueueFull:
            log.error("follow_up_dropped", asset=alert.asset, message=alert.message)

    return put


def feature_observers(
    health: Mapping[str, BlockObserver], diagnosers: Mapping[str, AssetDiagnoser]
) -> dict[str, BlockObserver]:
    """Each asset's block observers for the feature stage: its health checks, its diagnoser."""
    return {
        asset: BlockObservers(
            [o for o in (health.get(asset), diagnosers.get(asset)) if o is not None]
        )
        for asset in {*health, *diagnosers}
    }


def diagnosis_words(board: StatusBoard, asset: str) -> tuple[str, bool] | None:
    """The asset's latest diagnosis in words, for an anomaly alarm's text, and whether it names
    a fault (not `none` or `unknown`); None without one."""
    status = board.assets.get(asset)
    diagnosed = status.diagnosis if status is not None else None
    if diagnosed is None:
        return None
    return diagnosed.text, diagnosed.verdict not in ("none", "unknown")
