"""The alert stage's side of the SMS queue (`SmsIntake`): the policy decides, the messages are
committed (one transaction), the sender is woken. `accept()` returns only once the messages are
durable, and the alert stage marks its alerts done only after that, so an alert accepted for
SMS survives a crash or restart."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

import structlog

from appliance.errors import StoreError
from appliance.records import Alert
from appliance.sms.pdu import count_parts
from appliance.sms.policy import NewSms, SmsPolicy
from appliance.sms.status import SmsStatus
from appliance.store import SmsQueue

log = structlog.get_logger(__name__)

ENQUEUE_RETRY_DELAYS_S: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

Clock = Callable[[], float]
Pause = Callable[[float], Awaitable[None]]


class SmsIntake:
    """The alert stage's side: the policy decides, the messages are committed, the sender is
    woken. `accept()` returns only when the messages are durable (a failing store is retried
    with backoff: the alert stage waits, nothing is dropped)."""

    def __init__(
        self,
        policy: SmsPolicy,
        store: SmsQueue,
        give_up_after_s: float,
        wake: Callable[[], None],
        status: SmsStatus,
        *,
        clock: Clock = time.time,
        retry_delays_s: Sequence[float] = ENQUEUE_RETRY_DELAYS_S,
        pause: Pause = asyncio.sleep,
    ) -> None:
        self.policy = policy
        self._store = store
        self._give_up_after_s = give_up_after_s
        self._wake = wake
        self._status = status
        self._clock = clock
        self._retry_delays_s = tuple(retry_delays_s) or (1.0,)
        self._pause = pause
        status.policy = policy.counts

    async def accept(self, alerts: Sequence[Alert]) -> None:
        now = self._clock()
        messages = [message for alert in alerts for message in self.policy.decide(alert, now)]
        await self._enqueue(messages, now)

    async def send_test(self, requested_by: str) -> int:
        """Queue a test SMS to every recipient the rate limits allow; how many were queued."""
        now = self._clock()
        messages = self.policy.test_messages(requested_by, now)
        await self._enqueue(messages, now)
        return len(messages)

    async def _enqueue(self, messages: Sequence[NewSms], now: float) -> None:
        if not messages:
            return
        for attempt, delay_s in enumerate(_forever(self._retry_delays_s), start=1):
            try:
                rows = await self._store.enqueue_sms(messages, now, self._give_up_after_s)
                break
            except StoreError as error:
                self._status.enqueue_failures += 1
                log.error(
                    "sms_enqueue_failed",
                    reason=str(error),
                    messages=len(messages),
                    attempt=attempt,
                    retry_in_s=delay_s,
                )
                await self._pause(delay_s)
        for row in rows:
            log.info(
                "sms_queued",
                id=row.id,
                to=row.recipient,
                alert=row.alert_kind,
                asset=row.alert_asset,
                parts=count_parts(row.text),
            )
        self._wake()


def _forever(delays: Sequence[float]) -> Iterator[float]:
    return itertools.chain(delays, itertools.repeat(delays[-1]))
