"""Detector state (threshold, alarm, CUSUM, commissioning) kept across restarts."""

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from appliance.records import Alert
from appliance.store import Store, StoreSettings

STATES: dict[tuple[str, str], dict[str, object]] = {
    ("pump-1", "threshold"): {"mean": 0.41, "var": 0.0123, "n": 5_000, "frozen": False},
    ("pump-1", "alarm"): {"raised": True, "since": 1_700_000_000.5, "streak": 3},
    ("fan-2", "cusum"): {"s_hi": {"temp": 1.5}, "s_lo": {"temp": 0.0}, "history": [1, 2, 3]},
}


async def test_states_survive_close_and_reopen(store_path: Path) -> None:
    settings = StoreSettings(store_path)
    async with await Store.open(settings) as store:
        await store.detector_states.save_states(STATES)

    async with await Store.open(settings) as reopened:
        loaded = await reopened.detector_states.load_states()

    assert loaded == STATES


async def test_saving_again_updates_only_the_states_given(store: Store) -> None:
    await store.detector_states.save_states(STATES)
    newer = {"raised": False, "since": None, "streak": 0}

    await store.detector_states.save_states({("pump-1", "alarm"): newer})
    loaded = await store.detector_states.load_states()

    assert loaded == {**STATES, ("pump-1", "alarm"): newer}


async def test_delete_state_removes_only_that_one(store: Store) -> None:
    await store.detector_states.save_states(STATES)

    await store.detector_states.delete_state("pump-1", "threshold")
    await store.detector_states.delete_state("pump-1", "no-such-kind")

    assert await store.detector_states.load_states() == {
        key: state for key, state in STATES.items() if key != ("pump-1", "threshold")
    }


async def test_a_state_that_is_not_json_is_refused_and_none_of_the_call_saved(
    store: Store,
) -> None:
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        await store.detector_states.save_states({**STATES, ("pump-1", "odd"): {"when": object()}})

    assert await store.detector_states.load_states() == {}


async def test_a_corrupt_state_row_is_logged_and_skipped_and_the_rest_loaded(
    store_path: Path,
) -> None:
    settings = StoreSettings(store_path)
    async with await Store.open(settings) as store:
        await store.detector_states.save_states(STATES)
    with closing(sqlite3.connect(store_path)) as db:
        db.executemany(
            "INSERT INTO detector_state (asset, kind, state_json, updated_at) VALUES (?, ?, ?, 0)",
            [("pump-1", "torn", '{"mean": 0.4'), ("pump-1", "listy", "[1, 2]")],
        )
        db.commit()

    with capture_logs() as logs:
        async with await Store.open(settings) as reopened:
            loaded = await reopened.detector_states.load_states()

    assert loaded == STATES
    skipped = [entry for entry in logs if entry["event"] == "detector_state_unreadable"]
    assert sorted(entry["kind"] for entry in skipped) == ["listy", "torn"]
    assert all(entry["log_level"] == "warning" for entry in skipped)


ALERT = Alert("pump-1", 1_000.0, "critical", "anomaly_raised", "pump-1: anomaly")
ROUTER = {("", "alert_router"): {"version": 1, "kind": "alert_router", "open": ["..."]}}


async def test_alerts_and_their_state_are_stored_together(store: Store) -> None:
    seqs = await store.detector_states.add_alerts_with_states([ALERT], ROUTER)

    assert await store.history.outbox() == [(seqs[0], ALERT)]
    assert await store.detector_states.load_states() == ROUTER


async def test_a_bad_state_stores_none_of_the_alerts(store: Store) -> None:
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        await store.detector_states.add_alerts_with_states(
            [ALERT], {("", "alert_router"): {"x": object()}}
        )

    assert await store.history.outbox() == [] and await store.detector_states.load_states() == {}
