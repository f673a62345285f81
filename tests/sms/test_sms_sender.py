"""The SMS sender against the emulated modem: queue order, backoff, giving up visibly, resuming an
interrupted send, modem outages, the SIM PIN guard, shutdown, the intake and the GPIO hook.

Time in the sender is a fake clock the test moves (the sender sleeps on asyncio with timeouts
computed from it, and `wake()` makes it look again), so no test waits for backoff to pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pytest
import structlog
from sms_helpers import FAST_LINK, emulator_settings, link_settings, wait_until, within_deadline

from appliance.config import SmsConfig
from appliance.detect.routing import AlertRouter, run_alert_stage
from appliance.errors import DeviceError
from appliance.records import Alert
from appliance.rig.modem import EmulatedModem
from appliance.sms import gpio
from appliance.sms.modem import ModemHealth, ModemSettings
from appliance.sms.pdu import count_parts
from appliance.sms.policy import PolicySettings, SmsPolicy
from appliance.sms.sender import (
    PIN_FLAG,
    SenderSettings,
    SmsIntake,
    SmsSender,
    SmsStatus,
    backoff_s,
    usable_pin,
)
from appliance.sms.settings import sms_settings
from appliance.status import StatusBoard
from appliance.store import Store, StoreSettings
from appliance.store.sms import NewSms, QueuedSms
from appliance.summary import sms_lines

ALICE, BOB = "+491701111111", "+491702222222"
T0 = 1_800_000_000.0
Severity = Literal["warning", "critical"]
SENDER = SenderSettings(retry_initial_s=30.0, retry_max_s=120.0, give_up_after_s=600.0)
LONG = "Bearing temperature rising on pump-1. " * 10  # 3 GSM-7 parts


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def raised(asset: str = "pump-1", severity: Severity = "critical") -> Alert:
    return Alert(asset, T0, severity, "anomaly_raised", f"{asset}: anomaly: error 3 is 3x")


@contextlib.asynccontextmanager
async def opened(path: Path) -> AsyncIterator[Store]:
    store = await Store.open(StoreSettings(path))
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def sending(
    store: Store,
    port: str | Path,
    clock: FakeClock,
    *,
    settings: SenderSettings = SENDER,
    modem: ModemSettings = FAST_LINK,
    alerts_stored: list[int] | None = None,
) -> AsyncIterator[SmsSender]:
    def stored() -> None:
        if alerts_stored is not None:
            alerts_stored.append(1)

    sender = SmsSender(
        store.sms_queue, str(port), modem, settings, SmsStatus(ModemHealth(), 1), clock=clock,
        on_alert_stored=stored,
    )  # fmt: skip
    task = asyncio.create_task(sender.run())
    try:
        yield sender
    finally:
        task.cancel()
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def enqueue(
    store: Store, *messages: tuple[str, str], at: float = T0, severity: Severity = "critical"
) -> list[int]:
    rows = await store.sms_queue.enqueue_sms(
        [NewSms(to, text, raised(severity=severity)) for to, text in messages],
        at,
        SENDER.give_up_after_s,
    )
    return [row.id for row in rows]


async def wait_for_state(store: Store, sms_id: int, state: str, **fields: object) -> None:
    """Poll the row (a deadline, not a timing) until it has `state` and `fields`."""
    await wait_for_row(
        store,
        sms_id,
        lambda row: row.state == state and all(getattr(row, k) == v for k, v in fields.items()),
        f"{state} {fields}",
    )


async def wait_for_row(
    store: Store, sms_id: int, predicate: Callable[[QueuedSms], bool], what: str
) -> QueuedSms:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20.0
    while True:
        row = await store.sms_queue.sms(sms_id)
        if predicate(row):
            return row
        if loop.time() > deadline:
            raise AssertionError(f"SMS {sms_id} never reached {what}: {row}")
        await asyncio.sleep(0.005)


# --- sending -------------------------------------------------------------------------------


async def test_the_queue_is_sent_in_order_per_recipient_with_stable_references(
    tmp_path: Path, by_id: Path
) -> None:
    clock = FakeClock()
    async with (
        opened(tmp_path / "a.db") as store,
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
    ):
        ids = await enqueue(store, (ALICE, "first"), (BOB, "to bob"), (ALICE, LONG), (ALICE, "3rd"))
        async with sending(store, by_id, clock) as sender:
            await wait_until(lambda: len(modem.delivered) == 4, "4 messages delivered")
            await wait_for_state(store, ids[-1], "sent")
        stats = await store.sms_queue.sms_stats()
        long_row = await store.sms_queue.sms(ids[2])
    to_alice = [sms.text for sms in modem.delivered if sms.number == ALICE]
    assert to_alice == ["first", LONG, "3rd"]
    long_sms = next(sms for sms in modem.delivered if sms.text == LONG)
    assert long_sms.parts == count_parts(LONG) == 3
    assert long_sms.reference == long_row.reference == ids[2] % 256
    assert (stats.sent, stats.queued) == (4, 0)
    assert sender.status.sent_since_start == 4 and sender.status.last_sent_to == ALICE


async def test_a_transient_error_is_retried_with_exponential_backoff(
    tmp_path: Path, by_id: Path
) -> None:
    clock = FakeClock()
    async with (
        opened(tmp_path / "a.db") as store,
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
    ):
        modem.fail_sends(38, count=2)  # network out of order: transient
        (sms_id,) = await enqueue(store, (ALICE, "hello"))
        async with sending(store, by_id, clock) as sender:
            await wait_for_state(store, sms_id, "queued", attempts=1, next_attempt_at=T0 + 30)
            clock.now = T0 + 30
            sender.wake()
            await wait_for_state(store, sms_id, "queued", attempts=2, next_attempt_at=T0 + 90)
            assert modem.delivered == []
            clock.now = T0 + 90
            sender.wake()
            await wait_for_state(store, sms_id, "sent", attempts=3)
    assert [sms.text for sms in modem.delivered] == ["hello"]
    assert sender.status.failed_attempts == 2
    assert "CMS 38" in (sender.status.last_send_error or "")
    assert [backoff_s(n, SENDER) for n in (1, 2, 3, 4, 5)] == [30, 60, 120, 120, 120]


async def test_a_rejected_message_is_given_up_at_once_and_visibly(
    tmp_path: Path, by_id: Path
) -> None:
    clock = FakeClock()
    stored: list[int] = []
    async with (
        opened(tmp_path / "a.db") as store,
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
    ):
        modem.fail_sends(21)  # short message rejected: permanent for this message
        (sms_id,) = await enqueue(store, (ALICE, "rejected"))
        with structlog.testing.capture_logs() as logs:
            async with sending(store, by_id, clock, alerts_stored=stored) as sender:
                await wait_for_state(store, sms_id, "given_up", attempts=1)
                await wait_until(lambda: bool(stored), "the uplink woken")
        outbox = await store.history.outbox()
    (alert,) = [record for _, record in outbox]
    assert isinstance(alert, Alert) and alert.kind == "sms_given_up"
    assert alert.severity == "critical" and ALICE in alert.message and "CMS 21" in alert.message
    given_up = [entry for entry in logs if entry["event"] == "sms_given_up"]
    assert len(given_up) == 1 and given_up[0]["log_level"] == "error"
    assert "refused" in (sender.status.last_given_up or "")


async def test_giving_up_after_the_configured_time_shows_on_status_log_and_uplink(
    tmp_path: Path, by_id: Path
) -> None:
    """The modem never comes (nothing at the port): nothing is attempted, and when
    give_up_after_s has passed every queued message is given up, visibly."""
    clock = FakeClock()
    stored: list[int] = []
    board = StatusBoard("gw")
    async with opened(tmp_path / "a.db") as store:
        first, second = await enqueue(store, (ALICE, "a"), (BOB, "b"))
        with structlog.testing.capture_logs() as logs:
            async with sending(store, by_id, clock, alerts_stored=stored) as sender:
                board.sms = sender.status
                await wait_until(lambda: sender.link.health.open_failures >= 1, "open failed")
                sender.wake()
                await wait_until(lambda: sender.status.queued == 2, "status refreshed")
                assert (
                    await store.sms_queue.sms(first)
                ).attempts == 0  # never attempted, no backoff
                clock.now = T0 + SENDER.give_up_after_s
                sender.wake()
                await wait_for_state(store, first, "given_up")
                await wait_for_state(store, second, "given_up")
                await wait_until(lambda: sender.status.given_up == 2, "status shows it")
        alerts = [record for _, record in await store.history.outbox() if isinstance(record, Alert)]
    assert [a.kind for a in alerts] == ["sms_given_up", "sms_given_up"]
    assert all("never attempted" in a.message and "cannot open" in a.message for a in alerts)
    assert len([e for e in logs if e["event"] == "sms_given_up"]) == 2
    assert len(stored) == 2
    lines = "\n".join(sms_lines(board.sms))
    assert "given up 2" in lines and "GIVEN UP: to " in lines and "DOWN" in lines


async def test_a_message_that_keeps_failing_gives_up_with_its_last_error(
    tmp_path: Path, by_id: Path
) -> None:
    clock = FakeClock()
    async with (
        opened(tmp_path / "a.db") as store,
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
    ):
        modem.fail_sends(42, count=None)  # congestion, for ever
        (sms_id,) = await enqueue(store, (ALICE, "x"))
        async with sending(store, by_id, clock) as sender:
            await wait_for_state(store, sms_id, "queued", attempts=1)
            clock.now = T0 + SENDER.give_up_after_s + 1
            sender.wake()
            await wait_for_state(store, sms_id, "given_up", attempts=1)
        (alert,) = [
            record for _, record in await store.history.outbox() if isinstance(record, Alert)
        ]
    assert "(1 attempts)" in alert.message and "congestion" in alert.message.lower()


async def test_an_interrupted_send_resumes_at_the_first_unsent_part_with_its_reference(
    tmp_path: Path, by_id: Path
) -> None:
    """A row left in `sending` with parts_done=2 (the process died after part 2): only part 3
    goes, with the message's own concatenation reference; the part that may have been in
    flight counts one possible copy."""
    clock = FakeClock()
    async with (
        opened(tmp_path / "a.db") as store,
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
    ):
        (sms_id,) = await enqueue(store, (ALICE, LONG))
        await store.sms_queue.mark_sms_sending(sms_id)
        await store.sms_queue.mark_sms_parts_done(sms_id, 2)
        with structlog.testing.capture_logs() as logs:
            async with sending(store, by_id, clock):
                await wait_for_state(store, sms_id, "sent", attempts=2, maybe_sent=1)
    (part,) = modem.parts
    assert part.submit.concat is not None
    assert (part.submit.concat.sequence, part.submit.concat.total) == (3, 3)
    assert part.submit.concat.reference == sms_id % 256
    (interrupted,) = [e for e in logs if e["event"] == "sms_interrupted_at_last_stop"]
    assert interrupted["possible_copies"] == 1


async def test_a_modem_without_network_costs_no_attempts_and_sends_once_registered(
    tmp_path: Path, by_id: Path
) -> None:
    clock = FakeClock()
    emulator = emulator_settings(registration_s=math.inf)
    async with (
        opened(tmp_path / "a.db") as store,
        EmulatedModem(link_path=by_id, settings=emulator) as modem,
    ):
        (sms_id,) = await enqueue(store, (ALICE, "after registration"))
        async with sending(store, by_id, clock) as sender:
            await wait_until(lambda: sender.link.health.connected, "modem initialised")
            sender.wake()
            await wait_until(lambda: sender.status.queued == 1, "queue read")
            assert (await store.sms_queue.sms(sms_id)).attempts == 0
            modem.set_registration(1)
            await wait_for_state(store, sms_id, "sent", attempts=1)
    assert sender.status.failed_attempts == 0
    assert [sms.text for sms in modem.delivered] == ["after registration"]


async def test_shutdown_lets_a_send_in_progress_finish(tmp_path: Path, by_id: Path) -> None:
    clock = FakeClock()
    at_prompt = asyncio.Event()
    emulator = emulator_settings(submit_delay_s=0.2)
    async with (
        opened(tmp_path / "a.db") as store,
        EmulatedModem(
            link_path=by_id,
            settings=emulator,
            on_command=lambda line: at_prompt.set() if line.startswith("AT+CMGS") else None,
        ) as modem,
    ):
        (sms_id,) = await enqueue(store, (ALICE, "in flight at shutdown"))
        async with sending(store, by_id, clock):
            await within_deadline(at_prompt.wait(), "AT+CMGS sent")
        row = await store.sms_queue.sms(sms_id)  # the sender has stopped
    assert row.state == "sent"
    assert [sms.text for sms in modem.delivered] == ["in flight at shutdown"]


# --- modems that differ from ours (issue 12) -----------------------------------------------


async def test_after_a_silent_restart_into_text_mode_each_sms_still_reaches_its_recipient(
    tmp_path: Path, by_id: Path
) -> None:
    """The modem restarts without RDY into text mode. Before the fix every later SMS was marked
    sent while the modem texted the PDU's hex to the number <PDU length> (e.g. "25")."""
    clock = FakeClock()
    quiet_watchdog = link_settings(check_interval_s=3600.0)  # the send itself must notice
    async with (
        opened(tmp_path / "a.db") as store,
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
    ):
        (first,) = await enqueue(store, (ALICE, "before the restart"))
        async with sending(store, by_id, clock, modem=quiet_watchdog) as sender:
            await wait_for_state(store, first, "sent")
            modem.silent_restart()
            later = await enqueue(store, (ALICE, "after the restart"), (BOB, LONG))
            sender.wake()
            await wait_for_state(store, later[-1], "sent")
    assert [(sms.number, sms.text) for sms in modem.delivered] == [
        (ALICE, "before the restart"),
        (ALICE, "after the restart"),
        (BOB, LONG),
    ]
    assert modem.counts.text_mode_sends == 0
    assert sender.link.health.restarts_detected == 1
    assert "silent restarts 1" in sms_lines(sender.status)[0]


async def test_a_send_that_may_have_left_is_not_repeated_beyond_max_copies(
    tmp_path: Path, by_id: Path
) -> None:
    """Every +CMGS answer comes after the send deadline, though each SMS went. Before the fix
    the message was sent again after each backoff until give_up_after_s (about 20 copies in
    6 h); now the second possible copy ends it, visibly."""
    clock = FakeClock()
    stored: list[int] = []
    board = StatusBoard("gw")
    link = link_settings(send_timeout_s=0.2)
    async with (
        opened(tmp_path / "a.db") as store,
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
    ):
        modem.answer_submits_late(0.4, count=None)
        (sms_id,) = await enqueue(store, (ALICE, "went, unconfirmed"))
        with structlog.testing.capture_logs() as logs:
            async with sending(store, by_id, clock, modem=link, alerts_stored=stored) as sender:
                board.sms = sender.status
                for attempt in range(1, 6):  # more rounds than it may take
                    row = await wait_for_row(
                        store, sms_id, partial(attempt_over, attempt), f"attempt {attempt} over"
                    )
                    if row.state == "given_up":
                        break
                    clock.now = row.next_attempt_at
                    sender.wake()
                await wait_until(lambda: len(modem.delivered) >= 2, "both copies delivered")
                await wait_until(lambda: sender.status.given_up == 1, "status shows it")
        (alert,) = [
            record for _, record in await store.history.outbox() if isinstance(record, Alert)
        ]
    assert (row.state, row.attempts, row.maybe_sent) == ("given_up", 2, 2)
    assert [sms.text for sms in modem.delivered] == ["went, unconfirmed"] * 2
    assert modem.counts.pdus_received == 2
    assert alert.kind == "sms_given_up" and "2 times unconfirmed" in alert.message
    (given_up,) = [e for e in logs if e["event"] == "sms_given_up"]
    assert given_up["possible_copies"] == 2 and given_up["log_level"] == "error"
    assert stored == [1]
    assert "2 times unconfirmed" in "\n".join(sms_lines(board.sms))


def attempt_over(attempt: int, row: QueuedSms) -> bool:
    """The row's `attempt` has ended in a retry or a give-up (a row that reached max_copies
    is given up right after its retry was recorded)."""
    retrying = row.state == "queued" and row.maybe_sent < SENDER.max_copies
    return row.attempts == attempt and (retrying or row.state == "given_up")


async def test_one_copy_allowed_means_no_resend_after_a_possible_copy(
    tmp_path: Path, by_id: Path
) -> None:
    clock = FakeClock()
    settings = SenderSettings(retry_initial_s=30.0, give_up_after_s=600.0, max_copies=1)
    async with (
        opened(tmp_path / "a.db") as store,
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
    ):
        modem.answer_submits_late(0.4)
        (sms_id,) = await enqueue(store, (ALICE, "once at most"))
        async with sending(
            store, by_id, clock, settings=settings, modem=link_settings(send_timeout_s=0.2)
        ):
            await wait_for_state(store, sms_id, "given_up", attempts=1, maybe_sent=1)
            await wait_until(lambda: len(modem.delivered) == 1, "the one copy delivered")
    assert modem.counts.pdus_received == 1


async def test_a_message_interrupted_again_after_a_possible_copy_is_not_sent_a_third_time(
    tmp_path: Path, by_id: Path
) -> None:
    """A crash loop mid-send is bounded too: one earlier possible copy (a timeout), then the
    process died in `sending`; the next start counts the second copy and gives it up."""
    clock = FakeClock()
    async with (
        opened(tmp_path / "a.db") as store,
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
    ):
        (sms_id,) = await enqueue(store, (ALICE, "twice already?"))
        await store.sms_queue.retry_sms_later(
            sms_id, T0, "SendTimeout: no answer", 0, maybe_sent=True
        )
        await store.sms_queue.mark_sms_sending(sms_id)  # and then killed
        async with sending(store, by_id, clock) as sender:
            await wait_for_state(store, sms_id, "given_up", maybe_sent=2)
            await wait_until(lambda: sender.link.ready, "modem ready")
    assert modem.counts.pdus_received == 0 and modem.delivered == []


async def test_a_failing_message_does_not_hold_up_the_next_alert_to_the_same_recipient(
    tmp_path: Path, by_id: Path
) -> None:
    """One message keeps getting a transient error (congestion). Before the fix it held every
    later message to that recipient until it was given up (6 h by default)."""
    clock = FakeClock()
    async with (
        opened(tmp_path / "a.db") as store,
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
    ):
        modem.fail_text("stuck", 42)
        stuck, after, to_bob = await enqueue(
            store, (ALICE, "stuck message"), (ALICE, "next alert"), (BOB, "to bob")
        )
        async with sending(store, by_id, clock) as sender:
            await wait_for_state(store, after, "sent")  # the clock has not moved
            await wait_for_state(store, to_bob, "sent")
            await wait_for_state(store, stuck, "queued", attempts=1, next_attempt_at=T0 + 30)
            modem.clear_faults()
            clock.now = T0 + 30
            sender.wake()
            await wait_for_state(store, stuck, "sent", attempts=2)
    assert [sms.text for sms in modem.delivered] == ["next alert", "to bob", "stuck message"]


async def test_due_messages_go_most_severe_first_then_oldest_first(
    tmp_path: Path, by_id: Path
) -> None:
    clock = FakeClock()
    async with (
        opened(tmp_path / "a.db") as store,
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
    ):
        warnings = await enqueue(
            store, (ALICE, "warning 1"), (BOB, "warning 2"), severity="warning"
        )
        criticals = await enqueue(store, (BOB, "critical 1"), (ALICE, "critical 2"))
        async with sending(store, by_id, clock):
            for sms_id in warnings + criticals:
                await wait_for_state(store, sms_id, "sent")
    texts = [sms.text for sms in modem.delivered]
    assert texts == ["critical 1", "critical 2", "warning 1", "warning 2"]


# --- the SIM PIN guard ----------------------------------------------------------------------


async def test_a_refused_pin_is_never_tried_again_not_even_after_a_restart(
    tmp_path: Path, by_id: Path
) -> None:
    clock = FakeClock()
    async with (
        opened(tmp_path / "a.db") as store,
        EmulatedModem(link_path=by_id, settings=emulator_settings(), pin="4711") as modem,
    ):
        pin, refused = await usable_pin(store.sms_queue, "0000")
        assert (pin, refused) == ("0000", False)
        async with sending(store, by_id, clock, modem=_with_pin(pin)) as sender:
            await wait_until(lambda: sender.status.pin_rejected, "PIN refused")
            await wait_until(lambda: sender.link.health.open_failures >= 2, "reopened")
        assert await store.sms_queue.flag(PIN_FLAG) is not None
        assert "0000" not in (await store.sms_queue.flag(PIN_FLAG) or "")  # only a salted hash

        # the next start: the same PIN is refused before the modem sees it
        pin, refused = await usable_pin(store.sms_queue, "0000")
        assert (pin, refused) == (None, True)
        async with sending(store, by_id, clock, modem=_with_pin(pin)) as sender:
            await wait_until(lambda: sender.link.health.open_failures >= 2, "tried to open")
        assert modem.counts.pin_attempts == 1  # two tries left: the SIM is not locked

        # the PIN was corrected in the config: the flag goes, the new PIN is used
        pin, refused = await usable_pin(store.sms_queue, "4711")
        assert (pin, refused) == ("4711", False) and await store.sms_queue.flag(PIN_FLAG) is None
        (sms_id,) = await enqueue(store, (ALICE, "unlocked"))
        async with sending(store, by_id, clock, modem=_with_pin(pin)):
            await wait_for_state(store, sms_id, "sent")
    assert modem.counts.pin_attempts == 2


def _with_pin(pin: str | None) -> ModemSettings:
    import dataclasses

    return dataclasses.replace(FAST_LINK, pin=pin)


# --- intake: policy -> durable queue, before the alert stage lets go ----------------------


async def test_the_alert_stage_lets_go_of_an_alert_only_once_its_sms_is_committed(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path / "a.db") as store:
        woken: list[int] = []
        status = SmsStatus(ModemHealth(), 1)
        policy = SmsPolicy(PolicySettings("gw", (ALICE,)))
        intake = SmsIntake(
            policy, store.sms_queue, 600.0, lambda: woken.append(1), status, clock=FakeClock()
        )
        router = AlertRouter("gw", ["pump-1/accel_x"], ["pump-1", "fan-2", "fan-3"])
        alerts_in: asyncio.Queue[Alert] = asyncio.Queue()
        records: asyncio.Queue[Any] = asyncio.Queue()
        stage = asyncio.create_task(run_alert_stage(router, alerts_in, records, intake.accept))
        alerts_in.put_nowait(raised())
        alerts_in.put_nowait(Alert("pump-1", T0, "warning", "spike_raised", "m", "accel_x"))
        await within_deadline(alerts_in.join(), "alerts handled")
        pending = await store.sms_queue.pending_sms()  # committed before join() returned
        stage.cancel()
        await asyncio.wait([stage])
    assert [(m.recipient, m.alert_kind) for m in pending] == [(ALICE, "anomaly_raised")]
    assert records.qsize() == 2 and woken == [1]
    assert status.policy is policy.counts and policy.counts.not_eligible == 1


async def test_a_failing_store_is_retried_and_the_alert_is_not_dropped(tmp_path: Path) -> None:
    async with opened(tmp_path / "a.db") as store:
        await store.set_max_page_count_for_tests(1)  # the next write that needs a page fails
        pauses: list[float] = []

        async def pause(delay_s: float) -> None:
            pauses.append(delay_s)
            await store.set_max_page_count_for_tests(None)  # space again

        recipients = tuple(f"+4917000000{i:02d}" for i in range(20))  # rows for a new page
        status = SmsStatus(ModemHealth(), len(recipients))
        policy = SmsPolicy(PolicySettings("gw", recipients))
        intake = SmsIntake(policy, store.sms_queue, 600.0, lambda: None, status, pause=pause)
        await intake.accept([Alert("pump-1", T0, "critical", "anomaly_raised", "x " * 2000)])
        pending = await store.sms_queue.pending_sms()
    assert len(pending) == 20 and pauses == [0.5] and status.enqueue_failures == 1


# --- configuration and the GPIO power-cycle hook -----------------------------------------


def test_sms_settings_from_config_read_the_pin_file(tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text("4711\n")
    config = SmsConfig.model_validate(
        {
            "port": "/dev/serial/by-id/usb-SimTech-if02-port0",
            "pin_file": str(pin_file),
            "recipients": [ALICE, BOB],
            "power_cycle_gpio": 17,
            "timezone": "Europe/Berlin",
        }
    )
    settings = sms_settings("gw", config)
    assert settings.modem.pin == "4711" and settings.port == config.port
    assert settings.policy.recipients == (ALICE, BOB)
    assert settings.power_cycle is not None and settings.power_cycle.offset == 17
    assert not settings.emulated
    pin_file.write_text("47 11")
    with pytest.raises(Exception, match="4-8 digits"):
        sms_settings("gw", config)


@pytest.mark.parametrize(("active_low", "idle_level"), [(False, "low"), (True, "high")])
def test_sysfs_gpio_pulses_the_line_active_then_inactive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, active_low: bool, idle_level: str
) -> None:
    root = tmp_path / "gpio"  # a stand-in for /sys/class/gpio with line 17 exported
    (root / "gpiochip512").mkdir(parents=True)
    (root / "gpiochip512" / "base").write_text("512\n")
    line_dir = root / "gpio529"  # base 512 + offset 17, as on a Pi 5 kernel
    line_dir.mkdir()
    seen: list[tuple[float, str]] = []
    monkeypatch.setattr(
        "appliance.sms.gpio.time.sleep",
        lambda s: seen.append((s, (line_dir / "value").read_text())),
    )
    gpio.SysfsGpio("gpiochip512", 17, active_low=active_low, root=root).pulse(3.0)
    assert seen == [(3.0, "1")]  # active (logical 1) while the power is cut
    assert (line_dir / "value").read_text() == "0"
    assert (line_dir / "direction").read_text() == idle_level  # output, inactive from the start
    assert (line_dir / "active_low").read_text() == ("1" if active_low else "0")


def test_sysfs_gpio_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="gpiochip0"):
        gpio.SysfsGpio("gpiochip0", 17, root=tmp_path).pulse(0.1)


async def test_the_power_cycle_hook_runs_the_pulse_off_the_event_loop() -> None:
    """The pulse blocks (seconds on a real line) until the event loop, still running, ends it."""
    loop_thread = threading.get_ident()
    pulses: list[tuple[float, bool]] = []
    released = threading.Event()

    class BlockingLine:
        def pulse(self, off_s: float) -> None:
            pulses.append((off_s, threading.get_ident() == loop_thread))
            assert released.wait(10.0), "the event loop stood still during the pulse"

    cycle = asyncio.create_task(gpio.power_cycle_hook(BlockingLine(), 2.5)())
    await wait_until(lambda: bool(pulses), "the pulse to start")
    released.set()
    await cycle
    assert pulses == [(2.5, False)]
    assert isinstance(gpio.gpio_line("gpiochip0", 4), gpio.SysfsGpio | gpio.GpiodLine)
