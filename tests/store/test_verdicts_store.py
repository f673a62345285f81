"""Operators' verdicts in the gateway store: the SQL on a plain sqlite3 connection, and the
repository (the verdict and its outbox record in one transaction)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.records import Alert, EpisodeVerdict
from appliance.store import MIGRATIONS, Store, StoreSettings
from appliance.store.database import transaction
from appliance.store.migrations import apply_migrations
from appliance.store.verdicts import load_verdicts, save_verdict
from appliance.uplink.schema.verdicts import verdict_alert, verdict_of

RAISED_T = 1_767_225_600.896
FALSE_ALARM = EpisodeVerdict("pump-1", RAISED_T, "not_a_fault", "anna", RAISED_T + 60, "valve test")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    apply_migrations(connection, MIGRATIONS, tmp_path / "store.db")
    yield connection
    connection.close()


def test_a_later_verdict_on_the_same_episode_replaces_the_earlier(db: sqlite3.Connection) -> None:
    other = EpisodeVerdict("fan-2", RAISED_T, "real_fault", "bob", RAISED_T + 10)
    corrected = EpisodeVerdict("pump-1", RAISED_T, "real_fault", "carl", RAISED_T + 90, "bearing")
    for verdict in (FALSE_ALARM, other, corrected):
        transaction(db, lambda db: save_verdict(db, verdict))  # noqa: B023 (runs at once)
    assert load_verdicts(db) == [other, corrected]


def test_the_table_refuses_an_unknown_verdict(db: sqlite3.Connection) -> None:
    odd = EpisodeVerdict("pump-1", RAISED_T, "maybe", "anna", RAISED_T)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        transaction(db, lambda db: save_verdict(db, odd))
    assert load_verdicts(db) == []


def test_the_record_names_the_episode_exactly() -> None:
    record = verdict_alert(FALSE_ALARM, "critical")
    assert (record.kind, record.t, record.severity) == (
        "anomaly_not_a_fault",
        RAISED_T + 60,
        "critical",
    )
    assert record.message.endswith("was not a fault, said anna: valve test")
    assert verdict_of(record) == (RAISED_T, "not_a_fault")
    assert verdict_of(Alert("pump-1", 1.0, "warning", "anomaly_real_fault", "pump-1: hm")) is None
    assert verdict_of(Alert("pump-1", 1.0, "warning", "anomaly_raised", record.message)) is None


async def test_a_verdict_is_kept_with_its_record_and_a_malformed_record_keeps_neither(
    tmp_path: Path,
) -> None:
    path = tmp_path / "appliance.db"
    async with await Store.open(StoreSettings(path)) as store:
        seq = await store.detector_states.add_verdict(
            FALSE_ALARM, verdict_alert(FALSE_ALARM, "warning")
        )
        bad_record = Alert("pump-1", RAISED_T, "fatal", "anomaly_real_fault", "x")  # type: ignore[arg-type]
        corrected = EpisodeVerdict("pump-1", RAISED_T, "real_fault", "bob", RAISED_T + 99)
        with pytest.raises(ValueError, match="severity"):
            await store.detector_states.add_verdict(corrected, bad_record)
    async with await Store.open(StoreSettings(path)) as store:
        kept = await store.detector_states.verdicts()
        outbox = await store.history.outbox()
    assert kept == [FALSE_ALARM]
    assert outbox == [(seq, verdict_alert(FALSE_ALARM, "warning"))]
