"""A confirmed false alarm teaches the threshold (issue 14, item 5): a level shift alarms; after
"this was not a fault" the episode clears and the next windows at that level no longer alarm,
while without the verdict they still do. Run through the real detect stage and scorer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from appliance.detect.assets import AssetScoring
from appliance.detect.scorer import AssetDetector, DetectorSettings, build_threshold
from appliance.detect.stage import run_detect_stage
from appliance.detect.verdicts import EpisodeVerdicts, check_note
from appliance.records import Alert, EpisodeVerdict, FeatureVector, FloatArray, Score
from appliance.status import StatusBoard
from appliance.store import StoredRecord

ASSET = "pump-1"
NAMES = ("level",)
T0 = 1_767_225_600.0
NORMAL, SHIFTED = 1.0, 1.6


class LevelModel:
    """A model whose reconstruction error is the window's one feature: the test sets the error."""

    model_id = "level-1"
    feature_names = NAMES
    commissioned_threshold = 1.2

    def errors(self, rows: FloatArray) -> tuple[FloatArray, FloatArray]:
        return rows[:, 0].copy(), rows.copy()


@dataclass
class Stage:
    vectors: asyncio.Queue[FeatureVector]
    records: asyncio.Queue[StoredRecord]
    alerts: asyncio.Queue[Alert]
    verdicts: EpisodeVerdicts
    board: StatusBoard
    scores: list[Score] = field(default_factory=list)
    raised: list[Alert] = field(default_factory=list)
    t: float = T0

    async def windows(self, errors: Sequence[float]) -> tuple[list[Score], list[Alert]]:
        """Score one window per error; its scores and the alerts they raised."""
        scores, alerts = [], []
        for error in errors:
            self.t += 1.0
            await self.vectors.put(FeatureVector(ASSET, self.t, NAMES, np.array([error])))
            await self.vectors.join()
            while not self.records.empty():
                if isinstance(record := self.records.get_nowait(), Score):
                    scores.append(record)
            while not self.alerts.empty():
                alerts.append(self.alerts.get_nowait())
        return scores, alerts


@contextlib.asynccontextmanager
async def detect_stage() -> AsyncIterator[Stage]:
    """The detect stage scoring one asset with the default adaptive settings, its baseline
    seeded with 1,000 normal errors (1.0 +- 0.05)."""
    settings = DetectorSettings()
    model = LevelModel()
    seed = np.random.default_rng(7).normal(NORMAL, 0.05, 1000)
    detector = AssetDetector(ASSET, model, settings, build_threshold(model, settings, seed))
    stage = Stage(asyncio.Queue(), asyncio.Queue(), asyncio.Queue(), EpisodeVerdicts(),
                  StatusBoard("gw"))  # fmt: skip
    scorings = {ASSET: AssetScoring(ASSET, settings, detector=detector)}
    task = asyncio.create_task(
        run_detect_stage(scorings, stage.vectors, stage.records, stage.alerts, stage.board,
                         verdicts=stage.verdicts)
    )  # fmt: skip
    try:
        yield stage
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def shifted(n: int, seed: int) -> list[float]:
    return list(np.random.default_rng(seed).normal(SHIFTED, 0.05, n))


async def shift_that_alarms(stage: Stage) -> Alert:
    """60 windows at the shifted level: one raise, and every window anomalous."""
    normal_scores, normal_alerts = await stage.windows([NORMAL] * 5)
    scores, alerts = await stage.windows(shifted(60, seed=1))
    assert not normal_alerts and not any(s.anomalous for s in normal_scores)
    assert all(s.anomalous for s in scores), "the shift is above the learnt threshold"
    [raised] = alerts
    assert raised.kind == "anomaly_raised"
    return raised


async def test_not_a_fault_clears_the_episode_and_the_same_level_stops_alarming() -> None:
    async with detect_stage() as stage:
        raised = await shift_that_alarms(stage)
        verdict = EpisodeVerdict(
            ASSET, raised.t, "not_a_fault", "anna", raised.t + 61, "valve test"
        )
        await stage.verdicts.judge(verdict, raised.severity)
        scores, alerts = await stage.windows(shifted(40, seed=2))

    [cleared] = alerts
    assert cleared.kind == "anomaly_cleared" and cleared.t == scores[0].t
    assert "anna said it was not a fault" in cleared.message
    assert "the threshold learnt 60 of its windows as normal" in cleared.message
    assert not any(s.anomalous for s in scores), "the level the operator called normal"
    assert min(s.threshold for s in scores) > SHIFTED
    assert stage.board.asset(ASSET).alarm is None


async def test_without_a_verdict_the_same_level_keeps_alarming() -> None:
    async with detect_stage() as stage:
        await shift_that_alarms(stage)
        scores, alerts = await stage.windows(shifted(40, seed=2))
    assert alerts == [] and all(s.anomalous for s in scores)


async def test_a_real_fault_changes_nothing_and_a_repeated_not_a_fault_is_applied_once() -> None:
    async with detect_stage() as stage:
        raised = await shift_that_alarms(stage)
        real = EpisodeVerdict(ASSET, raised.t, "real_fault", "bob", raised.t + 61)
        await stage.verdicts.judge(real, raised.severity)
        scores, alerts = await stage.windows(shifted(5, seed=2))
        assert alerts == [] and all(s.anomalous for s in scores)
        assert stage.verdicts.of(ASSET, raised.t) == real

        false_alarm = EpisodeVerdict(ASSET, raised.t, "not_a_fault", "anna", raised.t + 70)
        await stage.verdicts.judge(false_alarm, raised.severity)
        assert [p.verdict for p in stage.verdicts.take_pending(ASSET)] == [false_alarm]
        await stage.verdicts.judge(false_alarm, raised.severity)
        assert stage.verdicts.take_pending(ASSET) == [], "already said: not applied again"


@pytest.mark.parametrize(
    ("note", "reason"), [("x" * 201, "at most 200 characters"), ("a\x1b[2J", "printable")]
)
def test_a_note_must_be_short_printable_text(note: str, reason: str) -> None:
    assert check_note("valve test") == "valve test"
    with pytest.raises(ValueError, match=f"^note: .*{reason}"):
        check_note(note)
