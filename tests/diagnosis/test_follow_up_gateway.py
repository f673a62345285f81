"""The real demo app on the emulated rig with the imbalance fault: the anomaly alarm goes up
before the diagnosis can name the fault; once it does, exactly one follow-up names it, in the
alert history and, as the alarm was, by SMS."""

from __future__ import annotations

import asyncio
from pathlib import Path

from waiting import wait_until

from appliance.diagnosis.followup import FOLLOW_UP_KIND, HOLD_WINDOWS
from appliance.records import Alert
from appliance.rig import run_appliance
from appliance.rig.demo import demo_config
from appliance.sms.status import SmsStatus
from appliance.status import StatusBoard

ASSET = "compressor-2"


def alerts_of(board: StatusBoard, kind: str) -> list[Alert]:
    if board.alerts is None:  # not routing yet
        return []
    return [a for a in board.alerts.recent if a.asset == ASSET and a.kind == kind]


def sms_texts(board: StatusBoard) -> list[str]:
    sms = board.sms
    return [shown.text for shown in sms.would_have_sent] if isinstance(sms, SmsStatus) else []


async def test_an_alarm_raised_before_the_imbalance_is_named_gets_one_follow_up(
    tmp_path: Path,
) -> None:
    config = demo_config(tmp_path, ["imbalance"])
    board = StatusBoard(config.gateway.id)
    stop = asyncio.Event()
    run = asyncio.create_task(run_appliance(config, stop=stop, board=board))
    stride_s = config.features.stride_s

    def diagnosed_since(t: float) -> bool:
        diagnosed = board.asset(ASSET).diagnosis
        return diagnosed is not None and diagnosed.t >= t + 2 * HOLD_WINDOWS * stride_s

    try:
        await wait_until(
            lambda: bool(alerts_of(board, FOLLOW_UP_KIND)),
            "a follow-up",
            deadline_s=90.0,
            alive=run,
        )
        (raised,) = alerts_of(board, "anomaly_raised")
        follow_up_t = alerts_of(board, FOLLOW_UP_KIND)[0].t
        # Twice the hold's windows more of the same verdict: no second follow-up.
        await wait_until(
            lambda: diagnosed_since(follow_up_t), "more diagnoses", deadline_s=60.0, alive=run
        )
        await wait_until(
            lambda: any("imbalance" in text for text in sms_texts(board)),
            "the follow-up's SMS",
            deadline_s=30.0,
            alive=run,
        )
    finally:
        stop.set()
        await run
    assert "no fault pattern" in raised.message, raised
    (follow_up,) = alerts_of(board, FOLLOW_UP_KIND)
    assert follow_up.message.startswith(f"{ASSET}: imbalance likely (1x 30 Hz"), follow_up
    assert " zone C (alarm raised " in follow_up.message
    assert follow_up.severity == raised.severity and follow_up.t > raised.t
    assert board.alerts is not None
    assert board.alerts.open_by_id()[f"{ASSET}||anomaly"].kind != FOLLOW_UP_KIND
    (text,) = [text for text in sms_texts(board) if "imbalance" in text]
    assert text.startswith(f"{raised.severity.upper()} {ASSET}: imbalance likely"), text
    assert len(text) <= 160, text
