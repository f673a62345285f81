"""The feature stage: SampleBlocks in, one FeatureVector per asset per stride out."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

import structlog

from appliance.features.asset import AssetFeatures
from appliance.features.spectra import Spectra
from appliance.records import FeatureVector, SampleBlock
from appliance.status import StatusBoard

log = structlog.get_logger(__name__)


class BlockObserver(Protocol):
    """Also sees every block of its asset (the sensor-health checks)."""

    def push(self, block: SampleBlock) -> None: ...


async def run_feature_stage(
    engines: Mapping[str, AssetFeatures],
    blocks: asyncio.Queue[SampleBlock],
    vectors: asyncio.Queue[FeatureVector],
    board: StatusBoard,
    observers: Mapping[str, BlockObserver] | None = None,
    spectra: Spectra | None = None,
) -> None:
    """Route each block to its asset's engine until cancelled.

    A block the engine refuses (unknown asset or channel, wrong rate) is counted on the asset's
    status and logged once per channel; it never stops the stage. `blocks.task_done()` is called
    for every block, so `blocks.join()` means "every block handed over has been processed".
    `spectra` (the status page's) sees every vector, and each block's asset before its engine.
    """
    refused_before: set[tuple[str, str]] = set()
    while True:
        block = await blocks.get()
        try:
            status = board.asset(block.asset)
            status.samples[block.channel] = status.samples.get(block.channel, 0) + len(
                block.samples
            )
            observer = (observers or {}).get(block.asset)
            if observer is not None:
                observer.push(block)
            engine = engines.get(block.asset)
            try:
                if engine is None:
                    raise ValueError(f"no asset named {block.asset!r} in the configuration")
                if spectra is not None:
                    spectra.learn(block.asset, status.latest_score, status.alarm is not None)
                produced = engine.push(block)
            except ValueError as exc:
                status.rejected_blocks += 1
                if (block.asset, block.channel) not in refused_before:
                    refused_before.add((block.asset, block.channel))
                    log.error(
                        "sample_block_refused",
                        asset=block.asset,
                        channel=block.channel,
                        reason=str(exc),
                    )
                continue
            for vector in produced:
                status.vectors += 1
                status.latest = vector
                if spectra is not None:
                    spectra.emitted(vector)
                if vectors.full():
                    board.queue_full["vectors"] = board.queue_full.get("vectors", 0) + 1
                await vectors.put(vector)
        finally:
            blocks.task_done()
