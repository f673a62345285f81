"""The detect stage: every FeatureVector is scored by its asset's detector (if it has a model)
and handed on to the store unchanged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import structlog

from appliance.config import ModelConfig
from appliance.detect.bundle import load_bundle
from appliance.detect.runtime import open_runtime
from appliance.detect.scorer import AssetDetector, DetectorSettings
from appliance.errors import ApplianceError
from appliance.records import FeatureVector
from appliance.status import StatusBoard

log = structlog.get_logger(__name__)


def open_detector(asset: str, model: ModelConfig) -> AssetDetector:
    """The asset's detector from its configured bundle; BundleError/ApplianceError says why not."""
    bundle = load_bundle(Path(model.bundle))
    if bundle.manifest.asset not in (None, asset):
        log.warning(
            "bundle_for_other_asset",
            asset=asset,
            bundle_asset=bundle.manifest.asset,
            bundle=bundle.bundle_id,
        )
    adaptive = replace(DetectorSettings().adaptive, k=model.k, statistic=model.statistic)
    settings = DetectorSettings(rule=model.rule, adaptive=adaptive)
    return AssetDetector(asset, bundle, open_runtime(bundle, model.backend), settings)


async def run_detect_stage(
    detectors: Mapping[str, AssetDetector],
    scored_in: asyncio.Queue[FeatureVector],
    store_out: asyncio.Queue[FeatureVector],
    board: StatusBoard,
) -> None:
    """Score, record the verdict on the asset's status, pass the vector on; until cancelled.

    A vector the detector cannot score (e.g. a feature missing) is counted and logged once; the
    vector is still stored.
    """
    failed: set[str] = set()
    while True:
        vector = await scored_in.get()
        try:
            detector = detectors.get(vector.asset)
            if detector is not None:
                _score(detector, vector, board, failed)
            if store_out.full():
                board.queue_full["store"] = board.queue_full.get("store", 0) + 1
            await store_out.put(vector)
        finally:
            scored_in.task_done()


def _score(
    detector: AssetDetector, vector: FeatureVector, board: StatusBoard, failed: set[str]
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
    event = verdict.decision.event
    if event is not None:
        status.alarm = None if event.kind == "cleared" else event.severity
        log.warning(
            f"anomaly_{event.kind}",
            asset=vector.asset,
            severity=event.severity,
            error=round(event.error, 4),
            threshold=round(event.threshold, 4) if event.threshold is not None else None,
            contributors=list(verdict.score.contributors),
        )
