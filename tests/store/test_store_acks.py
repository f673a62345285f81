"""Acknowledgements of open alerts: kept in the store (alert_acks) with their outbox record in
one transaction, read back after a restart; the name from the page is checked first."""

from __future__ import annotations

import asyncio
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.detect.acks import AlertAcks, acknowledgement_record
from appliance.records import Alert
from appliance.store import Store, StoreSettings

ALERT = Alert("pump-1", 1_000.25, "warning", "flatline_raised", "pump-1: flat", channel="accel_x")
ALERT_ID = "pump-1|accel_x|flatline"


async def test_an_acknowledgement_survives_a_restart_and_goes_out_as_an_alert_record(
    store_path: Path,
) -> None:
    settings_ = StoreSettings(store_path)
    woken: list[bool] = []
    async with await Store.open(settings_) as store:
        acks = await AlertAcks.load(store.detector_states, lambda: woken.append(True))
        ack = await acks.acknowledge(ALERT_ID, ALERT, "anna", 1_100.0)

    async with await Store.open(settings_) as reopened:
        restored = await AlertAcks.load(reopened.detector_states)
        outbox = await reopened.history.outbox()

    assert woken == [True]
    assert restored.of(ALERT_ID, ALERT) == ack
    later_raise = Alert(ALERT.asset, 2_000.0, "warning", ALERT.kind, "again", ALERT.channel)
    assert restored.of(ALERT_ID, later_raise) is None, "a new raise needs a new acknowledgement"
    [(_, record)] = outbox
    assert record == acknowledgement_record(ALERT_ID, ALERT, "anna", 1_100.0)
    assert isinstance(record, Alert)
    assert (record.kind, record.channel, record.t) == ("flatline_acknowledged", "accel_x", 1_100.0)
    assert ALERT_ID in record.message and "acknowledged by anna" in record.message


async def test_acknowledging_again_replaces_the_earlier_acknowledgement(store: Store) -> None:
    acks = AlertAcks(store.detector_states)
    await acks.acknowledge(ALERT_ID, ALERT, "anna", 1_100.0)
    await acks.acknowledge(ALERT_ID, ALERT, "bob", 1_200.0)

    [stored] = await store.detector_states.acknowledgements()

    assert (stored.by, stored.at) == ("bob", 1_200.0)
    assert len(await store.history.outbox()) == 2, "both acknowledgements were sent"


def refused_char(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Cs", "Cn", "Zl", "Zp")


ODD_CHARACTERS = st.sampled_from(["\ud800", "\udfff", "\x00", "\n", "\x1b", "\u2028", "\ufffe"])


@settings(max_examples=200, deadline=None)
@given(by=st.text(st.characters(exclude_categories=()) | ODD_CHARACTERS, max_size=80))
def test_a_name_is_accepted_only_if_it_is_short_and_printable(by: str) -> None:
    acks = AlertAcks()
    good = 0 < len(by) <= 64 and not any(refused_char(c) for c in by)

    async def attempt() -> None:
        await acks.acknowledge(ALERT_ID, ALERT, by, 1.0)

    if good:
        asyncio.run(attempt())
        ack = acks.of(ALERT_ID, ALERT)
        assert ack is not None and ack.by == by
    else:
        with pytest.raises(ValueError, match=r"^by: "):
            asyncio.run(attempt())
        assert acks.of(ALERT_ID, ALERT) is None


async def test_a_refused_name_writes_nothing(store: Store) -> None:
    acks = AlertAcks(store.detector_states)

    with pytest.raises(ValueError, match="by: character '\\\\ud800'"):
        await acks.acknowledge(ALERT_ID, ALERT, "anna\ud800", 1_100.0)

    assert (
        await store.detector_states.acknowledgements() == [] and await store.history.outbox() == []
    )
