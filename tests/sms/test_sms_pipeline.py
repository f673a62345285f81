"""End to end on the demo rig: an injected fault makes a critical alarm, the detector's alert goes
through the alert stage, the policy and the durable queue to the emulated modem: exactly one SMS,
with the expected text, not one per window, and not again after a restart."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from waiting import run_appliance_until

from appliance.records import Alert
from appliance.rig.demo import DEMO_SMS, demo_config
from appliance.sms.pdu import Encoding
from appliance.sms.policy import PolicySettings, compose_text
from appliance.status import StatusBoard
from appliance.store import Store, StoreSettings
from appliance.summary import SummaryPrinter

DEADLINE_S = 90.0
FAULT = ["imbalance=0.2"]  # compressor-2's 1x vibration grows fast: a critical anomaly


async def run_until(
    tmp_path: Path, condition: Callable[[StatusBoard], bool], what: str
) -> StatusBoard:
    return await run_appliance_until(demo_config(tmp_path, FAULT), condition, what, DEADLINE_S)


def delivered(board: StatusBoard) -> int:
    return 0 if board.sms is None else len(board.sms.would_have_sent)


def anomalous(board: StatusBoard) -> int:
    status = board.assets.get("compressor-2")
    return 0 if status is None else status.anomalous_windows


async def test_a_critical_alarm_sends_exactly_one_sms_with_the_expected_text(
    tmp_path: Path,
) -> None:
    seen: dict[str, int] = {}

    def sms_then_three_more_alarming_windows(board: StatusBoard) -> bool:
        if delivered(board) and "windows" not in seen:
            seen["windows"] = anomalous(board)
        return "windows" in seen and anomalous(board) >= seen["windows"] + 3

    board = await run_until(tmp_path, sms_then_three_more_alarming_windows, "an SMS")
    assert board.sms is not None
    raised, follow_ups, sent = await critical_alerts_and_sms_sent(tmp_path)
    assert [(a.asset, a.kind) for a in raised] == [("compressor-2", "anomaly_raised")]
    # one SMS for the raise, although every later window was anomalous too, plus one per
    # follow-up naming a fault the raise's text did not (appliance/diagnosis/followup.py)
    assert sent == 1 + len(follow_ups)
    would_have_sent = list(board.sms.would_have_sent)
    assert len(would_have_sent) == sent
    sms = would_have_sent[0]

    expected = compose_text(raised[0], PolicySettings("demo-gw", tuple(DEMO_SMS["recipients"])))
    assert sms.text == expected  # byte-identical to what was queued
    assert sms.number == "+15555550100" and sms.parts == 1 and sms.encoding is Encoding.GSM7
    assert re.fullmatch(
        r"CRITICAL compressor-2: (anomaly: error \S+ is [\d.]+x (the )?threshold \S+"
        r"|[a-z][a-z -]* likely \(.+\), velocity [\d.]+ mm/s zone [A-D]).*"
        r" \(\d\d:\d\d UTC, gw demo-gw\)",
        sms.text,
    ), sms.text
    summary = SummaryPrinter(board, None).render(None)  # type: ignore[arg-type]
    assert "SMS that would have been sent (emulated modem):" in summary
    assert f"SMS to +15555550100 (1 part): {sms.text}" in summary

    # restart with the fault still there: the alarm continues, nobody gets a second SMS for it
    await run_until(tmp_path, lambda b: anomalous(b) >= 3, "3 more alarming windows")
    raised_again, follow_ups_again, sent_again = await critical_alerts_and_sms_sent(tmp_path)
    assert raised_again == raised
    assert sent_again == 1 + len(follow_ups_again)


async def critical_alerts_and_sms_sent(tmp_path: Path) -> tuple[list[Alert], list[Alert], int]:
    """The stored critical raises and diagnosis follow-ups, and how many SMS were sent."""
    async with await Store.open(StoreSettings(tmp_path / "appliance.db")) as store:
        alerts = [r for _, r in await store.history.outbox(limit=100_000) if isinstance(r, Alert)]
        stats = await store.sms_queue.sms_stats()
    assert (stats.queued, stats.given_up) == (0, 0)
    critical = [a for a in alerts if a.severity == "critical"]
    raised = [a for a in critical if a.kind != "anomaly_diagnosed"]
    follow_ups = [a for a in critical if a.kind == "anomaly_diagnosed"]
    assert all(a.asset == "compressor-2" for a in follow_ups)
    return raised, follow_ups, stats.sent
