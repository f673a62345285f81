"""The detect stage: every FeatureVector goes to the store, followed by its Score when its asset
is scored; a window of a commissioning asset teaches it instead. Alarm state changes become
Alerts for the alert stage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import structlog

from appliance.detect.alarms import alert_from_event
from appliance.detect.assets import AssetScoring, describe_scoring
from appliance.detect.scorer import AssetDetector
from appliance.detect.verdicts import EpisodeErrors, EpisodeVerdicts, apply_not_a_fault
from appliance.errors import ApplianceError
from appliance.records import Alert, FeatureVector, Score
from appliance.status import StatusBoard
from appliance.store import StoredRecord

log = structlog.get_logger(__name__)


ProbationFailed = Callable[[str, str], None]
"""(asset, reason): a model on probation alarms too often; the model manager rolls it back."""


async def run_detect_stage(
    scorings: Mapping[str, AssetScoring],
    vectors_in: asyncio.Queue[FeatureVector],
    store_out: asyncio.Queue[StoredRecord],
    alerts_out: asyncio.Queue[Alert],
    board: StatusBoard,
    on_probation_failed: ProbationFailed | None = None,
    verdicts: EpisodeVerdicts | None = None,
) -> None:
    """Score (or commission), record the verdict on the asset's status, pass records on; until
    cancelled.

    A vector the detector cannot score (e.g. a feature missing) is counted and logged once; the
    vector is still stored. A model swap handed over by the model manager takes effect here,
    before a window is scored: each window is scored exactly once, by the old or the new model.
    So does an operator's "not a fault" on one of the asset's episodes (`verdicts`).
    """
    failed: set[str] = set()
    episode_errors = EpisodeErrors()
    while True:
        vector = await vectors_in.get()
        try:
            records: list[StoredRecord] = [vector]
            alerts: list[Alert] = []
            scoring = scorings.get(vector.asset)
            if scoring is not None and scoring.pending is not None:
                _swap(scoring, vector, board)
            if scoring is not None and scoring.commissioner is not None:
                _commission(scoring, vector, board)
            elif scoring is not None and scoring.detector is not None:
                if verdicts is not None:
                    detector = scoring.detector
                    _apply_verdicts(detector, verdicts, episode_errors, vector, board, alerts)
                _score(scoring.detector, vector, board, failed, records, alerts)
                episode_errors.record(scoring.detector, records[-1])
                _watch_probation(scoring, records, on_probation_failed)
            board.changed()
            for record in records:
                if store_out.full():
                    board.queue_full["store"] = board.queue_full.get("store", 0) + 1
                await store_out.put(record)
            for alert in alerts:
                await alerts_out.put(alert)
        finally:
            vectors_in.task_done()


def _swap(scoring: AssetScoring, vector: FeatureVector, board: StatusBoard) -> None:
    before = scoring.detector.model.model_id if scoring.detector is not None else "commissioning"
    scoring.apply_pending()
    board.asset(scoring.asset).model = describe_scoring(scoring, "")
    after = scoring.detector.model.model_id if scoring.detector is not None else "commissioning"
    log.info(
        "model_swapped", asset=scoring.asset, before=before, after=after, from_t=vector.window_end
    )


def _watch_probation(
    scoring: AssetScoring, records: list[StoredRecord], on_failed: ProbationFailed | None
) -> None:
    probation = scoring.probation
    score = records[-1] if len(records) > 1 else None
    if probation is None or not isinstance(score, Score):
        return
    verdict = probation.observe(score.t, score.anomalous)
    if verdict == "watching":
        return
    scoring.probation = None
    if verdict == "passed":
        log.info("model_probation_passed", asset=scoring.asset, model=probation.model_id)
    else:
        log.error(
            "model_probation_failed", asset=scoring.asset, model=probation.model_id,
            reason=probation.failure(),
        )  # fmt: skip
        if on_failed is not None:
            on_failed(scoring.asset, probation.failure())


def _apply_verdicts(
    detector: AssetDetector,
    verdicts: EpisodeVerdicts,
    episode_errors: EpisodeErrors,
    vector: FeatureVector,
    board: StatusBoard,
    alerts: list[Alert],
) -> None:
    for false_alarm in verdicts.take_pending(vector.asset):
        errors = episode_errors.of(false_alarm)
        cleared = apply_not_a_fault(detector, false_alarm.verdict, errors, vector.window_end)
        if cleared is not None:
            board.asset(vector.asset).alarm = None
            alerts.append(cleared)


def _commission(scoring: AssetScoring, vector: FeatureVector, board: StatusBoard) -> None:
    assert scoring.commissioner is not None
    result = scoring.commissioner.offer(vector)
    if result is not None:
        scoring.commissioned(result)
        log.info(
            "commissioned",
            asset=scoring.asset,
            model=result.model.model_id,
            fit_windows=result.fit_windows,
            calibration_windows=result.calibration_windows,
            threshold=round(result.fixed_threshold, 6),
        )
    board.asset(scoring.asset).model = describe_scoring(scoring, "")


def _score(
    detector: AssetDetector,
    vector: FeatureVector,
    board: StatusBoard,
    failed: set[str],
    records: list[StoredRecord],
    alerts: list[Alert],
) -> None:
    status = board.asset(vector.asset)
    started = time.perf_counter()
    try:
        verdict = detector.score_vector(vector)
    except (ApplianceError, ValueError) as exc:
        status.scoring_errors += 1
        if vector.asset not in failed:
            failed.add(vector.asset)
            log.error("scoring_failed", asset=vector.asset, reason=str(exc))
        return
    status.inference_s = time.perf_counter() - started
    status.latest_score = verdict.score
    status.scores += 1
    status.anomalous_windows += verdict.score.anomalous
    records.append(verdict.score)
    event = verdict.decision.event
    if event is not None:
        status.alarm = None if event.kind == "cleared" else event.severity
        alerts.append(alert_from_event(vector.asset, event, verdict.contributors))
