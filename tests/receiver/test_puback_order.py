"""Two batches are handled at once (the next decoded while the previous one commits), yet each
message is PUBACKed only after its own batch is handled, and in the order received, even when
the later batch finishes first (receiver/service.py, `_puback_in_order`)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from receiver.service import Receiver


class Paho:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)


async def test_pubacks_follow_each_batch_and_keep_the_order_received() -> None:
    paho = Paho()
    client: Any = SimpleNamespace(_client=paho)
    first_done, second_done = asyncio.Event(), asyncio.Event()
    first = [SimpleNamespace(mid=1, qos=1), SimpleNamespace(mid=2, qos=1)]
    second = [SimpleNamespace(mid=3, qos=1), SimpleNamespace(mid=4, qos=0)]
    handled: asyncio.Queue[Any] = asyncio.Queue()
    slots = asyncio.Semaphore(2)
    await slots.acquire()
    await slots.acquire()
    first_task = asyncio.create_task(first_done.wait())
    second_task = asyncio.create_task(second_done.wait())
    handled.put_nowait((first_task, first))
    handled.put_nowait((second_task, second))
    handled.put_nowait(None)
    acker = asyncio.create_task(Receiver._puback_in_order(client, handled, slots))

    second_done.set()
    await second_task  # the later batch is handled first
    assert paho.acked == []
    assert slots.locked()
    first_done.set()
    await acker
    assert paho.acked == [1, 2, 3]  # QoS 0 has no PUBACK
    assert not slots.locked()
