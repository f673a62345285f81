"""The durable SMS queue at work: the alert stage's intake and the sender task.

    alert stage --SmsIntake.accept(alerts)--> policy --> store.enqueue_sms (one transaction)
                                                             |  wake
    SmsSender.run():  ModemLink.run()  +  queue loop  <------+

`SmsIntake` (sms/intake.py) returns only once the messages are committed, so an alert accepted
for SMS survives a crash or restart. `SmsStatus` (sms/status.py) is the status board entry.

The queue loop (one message at a time, so a multipart message is never interleaved):
  * gives up on every pending message whose give_up_at has passed, or that may already have
    reached its recipient `max_copies` times, visibly: the row becomes given_up, an Alert of
    kind `sms_given_up` goes into the store's outbox in the same transaction (the uplink sends
    it), a log line (error) and the status board say so;
  * of the messages that are due, the most severe goes first, then the oldest (so messages to
    one recipient of one severity go in the order they were queued), when the modem link is
    ready (not ready: nothing is attempted and no backoff grows; the give-up time still runs).
    A message waiting out its backoff holds nothing up: later ones, to the same recipient
    too, go meanwhile (each SMS carries its alert's local time, so a late one is recognisable);
  * before the modem sees a byte of the message the row is marked `sending` (committed; the
    modem's setup check, `AT+CMGF?`, runs meanwhile), after each part the modem accepted
    `parts_done` is recorded; sent -> `sent`; rejected (the message can never go,
    MessageRejected) -> given up at once; any other SmsError -> back to `queued`, due after
    retry_initial_s * 2^(attempts-1) (at most retry_max_s, never past give_up_at), resuming
    from the first part not known to be sent, with the same reference. An error after the PDU
    went out (`maybe_sent`: no answer, port gone) counts one possible copy;
  * a row found in `sending` at start (the process died or was stopped mid-send) counts one
    possible copy and is sent again from its `parts_done`: the one part in flight may arrive
    twice, nothing is lost.

A SIM that refused the configured PIN: ModemLink stops using the PIN at once, and the sender
persists a salted hash of it (flag `sms.pin_rejected`); `usable_pin()` (sms/pin_guard.py)
refuses that PIN at the next start, until the configured PIN changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from appliance.errors import StoreError
from appliance.net.backoff import doubling_s
from appliance.records import Alert
from appliance.sms.errors import MessageRejected, PinRejected, SmsError
from appliance.sms.intake import Clock, SmsIntake
from appliance.sms.modem import ModemLink, ModemSettings, PowerCycle
from appliance.sms.pin_guard import PIN_FLAG, pin_digest, usable_pin
from appliance.sms.status import ShownSms, SmsStatus
from appliance.store import SmsQueue
from appliance.store.sms import QueuedSms

__all__ = [  # the intake, the PIN guard and the status entry are imported from here too
    "PIN_FLAG",
    "SenderSettings",
    "ShownSms",
    "SmsIntake",
    "SmsSender",
    "SmsStatus",
    "backoff_s",
    "send_order",
    "usable_pin",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SenderSettings:
    retry_initial_s: float = 30.0
    retry_max_s: float = 900.0
    give_up_after_s: float = 6 * 3600.0
    shutdown_grace_s: float = 5.0
    """On shutdown a send in progress gets this long to finish (else it resumes next start)."""
    recheck_s: float = 60.0
    """The queue is read again at least this often, even without a wake-up."""
    store_retry_s: float = 5.0
    """After a store error the loop waits this long before reading the queue again."""
    keep_finished_s: float = 30 * 86400.0
    """Sent and given-up rows are pruned after this long."""
    max_copies: int = 2
    """A message that may have reached its recipient this many times unconfirmed (a send
    that failed after the PDU went out) is given up instead of sent again."""

    def __post_init__(self) -> None:
        if not 0 < self.retry_initial_s <= self.retry_max_s:
            raise ValueError("need 0 < retry_initial_s <= retry_max_s")
        if not self.give_up_after_s > 0:
            raise ValueError("give_up_after_s must be positive")
        if not self.max_copies >= 1:
            raise ValueError("max_copies must be at least 1")


SEVERITY_ORDER = {"critical": 0, "warning": 1}


def send_order(message: QueuedSms) -> tuple[int, int]:
    """Due messages go most severe first, then oldest first."""
    return SEVERITY_ORDER.get(message.alert_severity, len(SEVERITY_ORDER)), message.id


def backoff_s(attempts: int, settings: SenderSettings) -> float:
    """The wait after the `attempts`-th failed attempt (1, 2, ...): doubling, capped."""
    return doubling_s(attempts - 1, settings.retry_initial_s, settings.retry_max_s)


# --- sender ---------------------------------------------------------------------------------


class SmsSender:
    """Owns the ModemLink and works through the queue. Run `run()` for the app's life."""

    def __init__(
        self,
        store: SmsQueue,
        port: str,
        modem_settings: ModemSettings,
        settings: SenderSettings,
        status: SmsStatus | None = None,
        *,
        power_cycle: PowerCycle | None = None,
        on_alert_stored: Callable[[], None] | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.link = ModemLink(
            port,
            modem_settings,
            power_cycle=power_cycle,
            on_pin_rejected=self._pin_rejected,
        )
        self.status = status if status is not None else SmsStatus(self.link.health, 0)
        self.status.modem = self.link.health
        self._pin = modem_settings.pin
        self._on_alert_stored = on_alert_stored
        self._clock = clock
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._next_prune = 0.0

    def wake(self) -> None:
        """New messages were queued (called by the intake)."""
        self._wake.set()

    async def run(self) -> None:
        """The modem link and the queue loop, until cancelled (a send in progress gets
        shutdown_grace_s to finish)."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.link.run(), name="modem")
                await self._work()
        finally:
            if self._background:
                await asyncio.wait(set(self._background))

    async def _work(self) -> None:
        interrupted_taken_back = False
        while True:
            try:
                if not interrupted_taken_back:
                    await self._take_back_interrupted()
                    interrupted_taken_back = True
                await self.step()
            except StoreError as error:
                log.error("sms_store_failed", reason=str(error))
                self.status.last_send_error = f"store: {error}"
                await self._wait(self.settings.store_retry_s, for_ready=False)

    async def step(self) -> None:
        """One pass: give up what expired, else send one due message, else wait for a reason
        to look again (new message, link ready, a due time, recheck_s)."""
        self._wake.clear()
        pending = await self.store.pending_sms()
        now = self._clock()
        await self._refresh_status(now)
        finished = [m for m in pending if self._give_up_reason(m, now) is not None]
        if finished:
            for message in finished:
                await self._give_up(message, self._give_up_reason(message, now) or "")
            return
        due = sorted((m for m in pending if m.next_attempt_at <= now), key=send_order)
        if due and self.link.ready:
            await self._attempt(due[0])
            return
        wake_at = min(
            [m.give_up_at for m in pending]
            + [m.next_attempt_at for m in pending if m.next_attempt_at > now]
            + [now + self.settings.recheck_s]
        )
        await self._wait(wake_at - now, for_ready=bool(due))

    async def _wait(self, timeout_s: float, *, for_ready: bool) -> None:
        waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(self._wake.wait())]
        if for_ready:
            waiters.append(asyncio.ensure_future(self.link.wait_ready()))
        try:
            await asyncio.wait(
                waiters, timeout=max(0.0, timeout_s), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    # --- one attempt -------------------------------------------------------------------------

    async def _attempt(self, message: QueuedSms) -> None:
        # The modem's setup check overlaps the commit (it sends none of the message's bytes).
        check = asyncio.ensure_future(self.link.check_setup())
        try:
            await self.store.mark_sms_sending(message.id)
        except BaseException:
            await _settled(check)  # never cut off mid-command: the conversation would go astray
            raise
        send = asyncio.ensure_future(self._send(message, check))
        try:
            await asyncio.shield(send)
        except asyncio.CancelledError:
            done, _ = await asyncio.wait([send], timeout=self.settings.shutdown_grace_s)
            if not done:
                send.cancel()
                await asyncio.wait([send])
                log.warning("sms_send_interrupted", id=message.id, resumes="at the next start")
            raise

    async def _send(self, message: QueuedSms, check: asyncio.Future[None]) -> None:
        async def part_done(parts_done: int) -> None:
            await self.store.mark_sms_parts_done(message.id, parts_done)

        started = self._clock()
        try:
            await check
            references = await self.link.send_sms(
                message.recipient,
                message.text,
                reference=message.reference,
                first_part=message.parts_done,
                on_part=part_done,
                setup_checked=True,
            )
        except MessageRejected as error:
            self._note_failure(error)
            await self._give_up(message, f"the modem or network refused it: {error}")
        except SmsError as error:
            self._note_failure(error)
            await self._retry_later(message, error)
        else:
            now = self._clock()
            await self.store.mark_sms_sent(message.id, now)
            self.status.sent_since_start += 1
            self.status.last_sent_utc = now
            self.status.last_sent_to = message.recipient
            log.info(
                "sms_sent",
                id=message.id,
                to=message.recipient,
                alert=message.alert_kind,
                asset=message.alert_asset,
                parts=message.parts_done + len(references),
                attempt=message.attempts + 1,
                send_s=round(now - started, 3),
            )

    def _note_failure(self, error: SmsError) -> None:
        self.status.failed_attempts += 1
        self.status.last_send_error = f"{type(error).__name__}: {error}"

    async def _retry_later(self, message: QueuedSms, error: SmsError) -> None:
        attempts = message.attempts + 1
        now = self._clock()
        next_at = min(now + backoff_s(attempts, self.settings), message.give_up_at)
        parts_done = max(message.parts_done, error.parts_done)
        text = f"{type(error).__name__}: {error}"
        await self.store.retry_sms_later(
            message.id, next_at, text, parts_done, maybe_sent=error.maybe_sent
        )
        copies = message.maybe_sent + int(error.maybe_sent)
        log.warning(
            "sms_send_failed",
            id=message.id,
            to=message.recipient,
            attempt=attempts,
            error=text,
            maybe_sent=error.maybe_sent,
            possible_copies=copies,
            parts_done=parts_done,
            retry_in_s=round(next_at - now, 3) if copies < self.settings.max_copies else None,
        )
        if copies >= self.settings.max_copies:
            reason = _copies_reason(copies, text)
            given_up = dataclasses.replace(message, attempts=attempts, maybe_sent=copies)
            await self._give_up(given_up, reason)

    # --- giving up ---------------------------------------------------------------------------

    def _give_up_reason(self, message: QueuedSms, now: float) -> str | None:
        """Why a pending message is given up now (None: it is not)."""
        if message.maybe_sent >= self.settings.max_copies:
            return _copies_reason(message.maybe_sent, message.last_error or "unknown")
        if message.give_up_at <= now:
            return self._expiry_reason(message)
        return None

    def _expiry_reason(self, message: QueuedSms) -> str:
        waited = _duration(self.settings.give_up_after_s)
        if message.last_error is not None:
            return f"not sent within {waited} ({message.attempts} attempts): {message.last_error}"
        modem = self.link.health
        state = modem.last_error or ("modem not ready" if not modem.ready else "no attempt made")
        return f"not sent within {waited}, never attempted: {state}"

    async def _give_up(self, message: QueuedSms, reason: str) -> None:
        now = self._clock()
        alert = Alert(
            asset=message.alert_asset,
            t=now,
            severity=message.alert_severity,
            kind="sms_given_up",
            message=(
                f"{message.alert_asset}: SMS to {message.recipient} about {message.alert_kind} "
                f"given up: {reason}"
            ),
        )
        seq = await self.store.give_up_sms(message.id, reason, alert)
        if seq is None:
            return
        self.status.last_given_up = f"to {message.recipient} about {message.alert_kind}: {reason}"
        log.error(
            "sms_given_up",
            id=message.id,
            to=message.recipient,
            alert=message.alert_kind,
            asset=message.alert_asset,
            attempts=message.attempts,
            possible_copies=message.maybe_sent,
            reason=reason,
            alert_seq=seq,
        )
        if self._on_alert_stored is not None:
            self._on_alert_stored()

    # --- bookkeeping -------------------------------------------------------------------------

    async def _take_back_interrupted(self) -> None:
        """Rows left in `sending` by the last run go back to `queued`, due at once, each with
        one possible copy counted (the part in flight may have left)."""
        for message in await self.store.pending_sms():
            if message.state != "sending":
                continue
            await self.store.retry_sms_later(
                message.id,
                message.next_attempt_at,
                "interrupted mid-send at the last stop (the part in flight may have left)",
                message.parts_done,
                maybe_sent=True,
            )
            log.warning(
                "sms_interrupted_at_last_stop",
                id=message.id,
                to=message.recipient,
                parts_done=message.parts_done,
                possible_copies=message.maybe_sent + 1,
                note="sent again from the first part not known to be sent (the part in flight "
                "may arrive twice), unless that would make more than max_copies",
            )

    async def _refresh_status(self, now: float) -> None:
        if now >= self._next_prune:
            self._next_prune = now + 3600.0
            pruned = await self.store.prune_sms(now - self.settings.keep_finished_s)
            if pruned:
                log.info("sms_pruned", rows=pruned)
        stats = await self.store.sms_stats()
        status = self.status
        status.queued = stats.queued
        status.oldest_queued_utc = stats.oldest_pending_created
        status.sent = stats.sent
        status.given_up = stats.given_up
        if status.last_sent_utc is None:
            status.last_sent_utc = stats.last_sent_at
        if status.last_given_up is None and stats.last_given_up is not None:
            last = stats.last_given_up
            status.last_given_up = f"to {last.recipient} about {last.alert_kind}: {last.last_error}"

    def _pin_rejected(self, error: PinRejected) -> None:
        self.status.pin_rejected = True
        log.error(
            "sms_pin_rejected",
            error=str(error),
            advice="the PIN is not tried again (not after a restart either) until the "
            "configured PIN changes",
        )
        if self._pin is None:
            return
        task = asyncio.get_running_loop().create_task(self._remember_rejected(self._pin))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _remember_rejected(self, pin: str) -> None:
        try:
            await self.store.set_flag(PIN_FLAG, pin_digest(pin))
        except StoreError as error:
            log.error(
                "sms_pin_flag_not_saved",
                reason=str(error),
                advice="the PIN would be tried again after a restart",
            )


async def _settled(task: asyncio.Future[None]) -> None:
    """Wait for `task` to end, its outcome retrieved and dropped."""
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()


def _copies_reason(copies: int, last_error: str) -> str:
    return (
        f"may already have reached the recipient {copies} times unconfirmed (no answer after "
        f"the message went to the modem; last: {last_error}); not sent again, to send no more "
        "copies"
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
