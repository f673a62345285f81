"""The durable SMS queue in the store: one transaction per enqueue, every state change
committed, nothing lost across restarts, giving up adds an alert to the outbox."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from appliance.errors import StoreError
from appliance.records import Alert
from appliance.store import MIGRATIONS, Migration, Store, StoreSettings
from appliance.store.sms import NewSms

ALICE, BOB = "+491701111111", "+491702222222"
T0 = 1_800_000_000.0
GIVE_UP_S = 3600.0


def raised(asset: str = "pump-1", t: float = T0) -> Alert:
    return Alert(asset, t, "critical", "anomaly_raised", f"{asset}: anomaly: error 3 is 3x")


def new(text: str, recipient: str = ALICE, asset: str = "pump-1") -> NewSms:
    return NewSms(recipient, text, raised(asset))


async def test_enqueue_stores_every_field_and_a_stable_reference(tmp_path: Path) -> None:
    async with await Store.open(StoreSettings(tmp_path / "a.db")) as store:
        rows = await store.sms_queue.enqueue_sms([new("one"), new("two", BOB)], T0, GIVE_UP_S)
        assert [(r.id, r.reference, r.state, r.attempts, r.parts_done) for r in rows] == [
            (1, 1, "queued", 0, 0),
            (2, 2, "queued", 0, 0),
        ]
        first = rows[0]
        assert (first.created, first.next_attempt_at, first.give_up_at) == (T0, T0, T0 + GIVE_UP_S)
        assert (first.alert_kind, first.alert_asset, first.alert_severity, first.alert_t) == (
            "anomaly_raised", "pump-1", "critical", T0,
        )  # fmt: skip
        assert await store.sms_queue.pending_sms() == rows


async def test_references_wrap_at_256_and_never_repeat_an_id(tmp_path: Path) -> None:
    async with await Store.open(StoreSettings(tmp_path / "a.db")) as store:
        rows = await store.sms_queue.enqueue_sms([new(str(i)) for i in range(258)], T0, GIVE_UP_S)
        assert [r.reference for r in rows[254:]] == [255, 0, 1, 2]
        for row in rows:
            await store.sms_queue.mark_sms_sending(row.id)
            await store.sms_queue.mark_sms_sent(row.id, T0)
        assert await store.sms_queue.prune_sms(T0 + 1) == 257  # the newest row stays
        again = await store.sms_queue.enqueue_sms([new("after pruning")], T0 + 2, GIVE_UP_S)
        assert (again[0].id, again[0].reference) == (259, 259 % 256)


async def test_the_queue_and_every_state_change_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    async with await Store.open(StoreSettings(path)) as store:
        a, b, c = await store.sms_queue.enqueue_sms([new("a"), new("b"), new("c")], T0, GIVE_UP_S)
        await store.sms_queue.mark_sms_sending(a.id)
        await store.sms_queue.mark_sms_sent(a.id, T0 + 1)
        await store.sms_queue.mark_sms_sending(b.id)
        await store.sms_queue.mark_sms_parts_done(b.id, 2)  # killed here, mid-send
    async with await Store.open(StoreSettings(path)) as reopened:
        pending = await reopened.sms_queue.pending_sms()
        stats = await reopened.sms_queue.sms_stats()
    assert [(m.text, m.state, m.attempts, m.parts_done) for m in pending] == [
        ("b", "sending", 1, 2),
        ("c", "queued", 0, 0),
    ]
    assert pending[0].reference == b.reference and c.id == pending[1].id
    assert (stats.queued, stats.sending, stats.sent, stats.given_up) == (2, 1, 1, 0)
    assert stats.last_sent_at == T0 + 1


async def test_retry_later_reschedules_and_keeps_the_parts_already_sent(tmp_path: Path) -> None:
    async with await Store.open(StoreSettings(tmp_path / "a.db")) as store:
        (row,) = await store.sms_queue.enqueue_sms([new("long")], T0, GIVE_UP_S)
        await store.sms_queue.mark_sms_sending(row.id)
        await store.sms_queue.mark_sms_parts_done(row.id, 2)
        await store.sms_queue.retry_sms_later(row.id, T0 + 30, "ModemError: +CMS 38", parts_done=1)
        again = await store.sms_queue.sms(row.id)
    assert (again.state, again.attempts, again.next_attempt_at, again.parts_done) == (
        "queued", 1, T0 + 30, 2,
    )  # fmt: skip
    assert again.last_error == "ModemError: +CMS 38"


async def test_giving_up_adds_an_sms_given_up_alert_in_the_same_transaction(
    tmp_path: Path,
) -> None:
    async with await Store.open(StoreSettings(tmp_path / "a.db")) as store:
        (row,) = await store.sms_queue.enqueue_sms([new("x")], T0, GIVE_UP_S)
        note = Alert("pump-1", T0 + 5, "critical", "sms_given_up", "pump-1: SMS given up: why")
        seq = await store.sms_queue.give_up_sms(row.id, "why", note)
        twice = await store.sms_queue.give_up_sms(row.id, "again", note)
        outbox = await store.history.outbox()
        stats = await store.sms_queue.sms_stats()
    assert seq is not None and twice is None  # a finished message never changes again
    assert outbox == [(seq, note)]
    assert stats.given_up == 1 and stats.queued == 0
    assert stats.last_given_up is not None and stats.last_given_up.last_error == "why"


async def test_a_failed_enqueue_stores_nothing(tmp_path: Path) -> None:
    async with await Store.open(StoreSettings(tmp_path / "a.db")) as store:
        bad = NewSms(ALICE, "x", Alert("pump-1", T0, "fatal", "anomaly_raised", "m"))  # type: ignore[arg-type]
        with pytest.raises(StoreError):
            await store.sms_queue.enqueue_sms([new("good"), bad], T0, GIVE_UP_S)
        assert await store.sms_queue.pending_sms() == []


async def test_history_for_the_rate_limits(tmp_path: Path) -> None:
    async with await Store.open(StoreSettings(tmp_path / "a.db")) as store:
        await store.sms_queue.enqueue_sms([new("old")], T0 - 90_000, GIVE_UP_S)
        await store.sms_queue.enqueue_sms([new("recent"), new("b", BOB)], T0 - 60, GIVE_UP_S)
        assert await store.sms_queue.sms_created_since(T0 - 86_400) == [
            (ALICE, T0 - 60),
            (BOB, T0 - 60),
        ]


async def test_flags_persist_and_clear(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    async with await Store.open(StoreSettings(path)) as store:
        assert await store.sms_queue.flag("sms.pin_rejected") is None
        await store.sms_queue.set_flag("sms.pin_rejected", "pbkdf2$00$11")
    async with await Store.open(StoreSettings(path)) as store:
        assert await store.sms_queue.flag("sms.pin_rejected") == "pbkdf2$00$11"
        await store.sms_queue.set_flag("sms.pin_rejected", None)
        assert await store.sms_queue.flag("sms.pin_rejected") is None


def migrations_up_to(name: str) -> tuple[Migration, ...]:
    names = [migration.name for migration in MIGRATIONS]
    return MIGRATIONS[: names.index(name) + 1]


async def test_a_store_of_the_previous_release_gains_the_sms_queue(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    async with await Store.open(StoreSettings(path), migrations=MIGRATIONS[:4]):
        pass
    async with await Store.open(StoreSettings(path)) as store:
        assert "0005_sms_outbox" in await store.applied_migrations()
        assert (await store.sms_queue.sms_stats()).queued == 0


async def test_a_queue_of_the_previous_release_gains_the_possible_copies_count(
    tmp_path: Path,
) -> None:
    """A database written before 0007_sms_outbox_maybe_sent, with messages in it: they keep
    every field and count no possible copies yet."""
    path = tmp_path / "a.db"
    older = migrations_up_to("0005_sms_outbox")
    async with await Store.open(StoreSettings(path), migrations=older):
        pass
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # the old release's row
        db.execute(
            "INSERT INTO sms_outbox (created, alert_kind, alert_asset, alert_severity, alert_t,"
            " recipient, text, reference, state, attempts, next_attempt_at, parts_done,"
            " give_up_at) VALUES (?, 'anomaly_raised', 'pump-1', 'critical', ?, ?, 'old', 1,"
            " 'sending', 1, ?, 1, ?)",
            (T0, T0, ALICE, T0, T0 + GIVE_UP_S),
        )
    async with await Store.open(StoreSettings(path)) as store:
        assert "0007_sms_outbox_maybe_sent" in await store.applied_migrations()
        (row,) = await store.sms_queue.pending_sms()
        assert (row.text, row.state, row.attempts, row.parts_done, row.maybe_sent) == (
            "old", "sending", 1, 1, 0,
        )  # fmt: skip
        await store.sms_queue.retry_sms_later(row.id, T0 + 30, "SendTimeout", 1, maybe_sent=True)
        await store.sms_queue.retry_sms_later(row.id, T0 + 60, "ModemError", 1)
        assert (await store.sms_queue.sms(row.id)).maybe_sent == 1
