"""The link gauge (flow.py) and the window of parts in flight (sending.py), without a broker:
how range size and parts in flight follow PUBACK times, and who gets a free place first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from waiting import wait_until

from appliance.uplink.flow import LinkGauge
from appliance.uplink.sending import Lane, PartWindow, alerts_first


def gauge() -> LinkGauge:
    return LinkGauge(min_bytes=4096, max_bytes=256 * 1024, max_window=32, target_ack_s=4.0)


def carry(link: LinkGauge, rate_bps: float, parts: int) -> None:
    """`parts` parts of the gauge's current budget over a saturated link of `rate_bps`, one
    after the other, the window full (each handed over when the one `window` before it ended)."""
    now = 0.0
    ends: list[float] = []
    for _ in range(parts):
        size = link.range_bytes
        handed_at = ends[-link.window] if len(ends) >= link.window else 0.0
        now = max(now, handed_at) + size / rate_bps
        ends.append(now)
        link.acknowledged(size, handed_at, now)


def test_it_starts_small_and_grows_while_acks_come_back_fast() -> None:
    link = gauge()
    assert (link.range_bytes, link.window) == (4096, 2)

    carry(link, rate_bps=50e6, parts=20)

    assert (link.range_bytes, link.window) == (256 * 1024, 32), "a fast link gets the most"


def test_on_a_thin_link_a_part_is_acknowledged_within_seconds() -> None:
    link = gauge()
    carry(link, rate_bps=50e6, parts=20)  # learnt on a fast link, then the link thins

    carry(link, rate_bps=2048, parts=40)

    assert link.range_bytes <= 3 * 2048, "a range is carried in a few seconds"
    assert link.ack_s is not None and link.ack_s <= 3 * link.target_ack_s
    assert link.rate_bps is not None and 1000 < link.rate_bps < 4000


def test_a_slow_ack_halves_and_a_restart_starts_small() -> None:
    link = gauge()
    carry(link, rate_bps=50e6, parts=20)

    link.acknowledged(256 * 1024, handed_at=0.0, now=60.0)
    assert (link.range_bytes, link.window) == (128 * 1024, 16)
    link.restart()
    assert (link.range_bytes, link.window) == (4096, 2)


def test_records_to_read_follow_the_encoded_size() -> None:
    link = gauge()
    link.encoded(records=100, size=100 * 100)
    link.encoded(records=100, size=100 * 100)

    assert link.records_for(4096) > 4096 // 600, "smaller records: more of them per range"
    assert link.records_for(1) == 1


def count_is(items: list[str], count: int) -> Callable[[], bool]:
    return lambda: len(items) == count


async def test_an_alert_goes_first_then_three_live_parts_to_one_backlog_part() -> None:
    window = PartWindow(1)
    await window.acquire("backlog")
    order: list[str] = []

    async def take(name: str, lane: Lane) -> None:
        await window.acquire(lane)
        order.append(name)

    waiting = [
        asyncio.create_task(take(name, lane))
        for name, lane in [
            ("backlog 1", "backlog"),
            ("backlog 2", "backlog"),
            *((f"live {n}", "live") for n in range(1, 5)),
            ("alert", "alert"),
        ]
    ]
    await asyncio.sleep(0)
    for expected in range(1, 8):
        window.release()
        await wait_until(count_is(order, expected), "the next part let in")
    await asyncio.gather(*waiting)

    assert order == ["alert", "live 1", "live 2", "live 3", "backlog 1", "live 4", "backlog 2"]


async def test_a_waiter_cancelled_gives_its_place_back() -> None:
    window = PartWindow(1)
    await window.acquire("alert")
    waiting = asyncio.create_task(window.acquire("backlog"))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    window.release()

    assert window.in_use == 0
    await window.acquire("backlog")
    window.resize(3)
    await window.acquire("live")
    assert window.in_use == 2


def test_a_range_hands_its_alerts_over_first() -> None:
    messages = [
        ("appliance/gw/features/p1", b"f"),
        ("appliance/gw/scores/p1", b"s"),
        ("appliance/gw/alerts/p1", b"a"),
    ]

    assert [part for part, _, _ in alerts_first(messages)] == [2, 0, 1]
