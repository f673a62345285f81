"""SerialLink against EmulatedMcu over real pseudo-terminals opened through a by-id symlink."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import tty
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from appliance.capture.clock import McuClock
from appliance.capture.serial_link import SerialLink
from appliance.records import SampleBlock
from appliance.rig.mcu import EmulatedMcu, FaultPlan
from firmware_bridge.codec import SampleFormat, encode_samples

Waiter = Callable[..., Awaitable[None]]
AXES = {0: ("pump-1", "accel_x"), 1: ("pump-1", "accel_y"), 2: ("pump-1", "accel_z")}
FOUR_CHANNELS = {**AXES, 3: ("pump-1", "accel_far_x")}


@pytest.fixture
def by_id(tmp_path: Path) -> Path:
    return tmp_path / "serial" / "by-id" / "usb-Raspberry_Pi_Pico_E6614103E7452D2F-if00"


def make_link(
    port: Path,
    queue: asyncio.Queue[SampleBlock],
    channel_map: dict[int, tuple[str, str]] = FOUR_CHANNELS,
    **kwargs: object,
) -> SerialLink:
    options: dict[str, object] = {
        "reconnect_initial_s": 0.02,
        "reconnect_max_s": 0.1,
        "idle_timeout_s": 10.0,
    }
    options.update(kwargs)
    return SerialLink(str(port), channel_map, queue, **options)  # type: ignore[arg-type]


@asynccontextmanager
async def running(link: SerialLink, wait_until: Waiter) -> AsyncIterator[SerialLink]:
    task = asyncio.create_task(link.run())
    try:
        await wait_until(lambda: link.stats.connected, "link connected")
        yield link
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def drain(queue: asyncio.Queue[SampleBlock]) -> list[SampleBlock]:
    blocks = []
    while not queue.empty():
        blocks.append(queue.get_nowait())
    return blocks


def by_channel(blocks: list[SampleBlock]) -> dict[str, list[SampleBlock]]:
    channels: dict[str, list[SampleBlock]] = {}
    for block in blocks:
        channels.setdefault(block.channel, []).append(block)
    return channels


async def stream_all(mcu: EmulatedMcu, link: SerialLink, frames: int, wait_until: Waiter) -> None:
    """Run the emulator for `frames` SAMPLES frames and wait until the link decoded them all."""
    await mcu.run(max_frames=frames)
    expected = mcu.counts.frames_written - mcu.counts.frames_corrupted
    await wait_until(lambda: link.stats.frames >= expected, f"{expected} frames at the link")
    assert link.stats.frames == expected


async def test_clean_run_has_no_gaps_and_counts_match(by_id: Path, wait_until: Waiter) -> None:
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    started = time.time()
    with EmulatedMcu(link_path=by_id, rate_hz=1000, channels=4) as mcu:
        link = make_link(by_id, queue, expected_rate_hz=dict.fromkeys(range(4), 1000.0))
        async with running(link, wait_until):
            await stream_all(mcu, link, 60, wait_until)
    stats = link.stats
    assert (stats.seq_gaps, stats.dropped_samples, stats.resets) == (0, 0, 0)
    assert (stats.crc_errors, stats.malformed, stats.oversize, stats.garbage_bytes) == (0, 0, 0, 0)
    assert (stats.rate_mismatches, stats.unmapped_frames, stats.reconnects) == (0, 0, 0)
    assert stats.frames == 61  # HELLO + 60
    assert stats.firmware == mcu_firmware()
    channels = by_channel(drain(queue))
    assert sorted(channels) == ["accel_far_x", "accel_x", "accel_y", "accel_z"]
    for blocks in channels.values():
        assert len(blocks) == 60
        assert all(b.rate == 1000.0 and len(b.samples) == 32 for b in blocks)
        t0 = [b.t0 for b in blocks]
        assert all(later > earlier for earlier, later in itertools.pairwise(t0))
        assert started - 1.0 < t0[0] < t0[-1] < time.time() + 1.0
    z = np.concatenate([b.samples for b in channels["accel_z"]])
    assert np.mean(z) == pytest.approx(1.0, abs=0.05)  # gravity, in g


def mcu_firmware() -> str:
    from appliance.rig.mcu import DEFAULT_FIRMWARE

    return DEFAULT_FIRMWARE


async def test_dropped_frames_and_garbage_are_counted_exactly(
    by_id: Path, wait_until: Waiter
) -> None:
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    plan = FaultPlan(drop_probability=0.08, garbage_probability=0.08, garbage_max_bytes=300)
    with EmulatedMcu(link_path=by_id, channels=4, faults=plan, seed=11) as mcu:
        link = make_link(by_id, queue)
        async with running(link, wait_until):
            run = asyncio.create_task(stream_all(mcu, link, 90, wait_until))
            await wait_until(lambda: mcu.counts.samples_frames_written >= 30, "30 frames sent")
            mcu.drop_frames(3)
            mcu.inject_garbage(5000)  # longer than any frame: an oversize run
            await run
    truth, stats = mcu.counts, link.stats
    assert truth.frames_dropped >= 4 and truth.garbage_injections >= 2  # the test means something
    assert truth.frames_dropped_tx_full == 0
    assert stats.dropped_frames == truth.missing_frames
    assert stats.dropped_samples == truth.missing_frames * 32
    assert stats.crc_errors + stats.malformed + stats.oversize == truth.garbage_injections
    assert stats.oversize >= 1
    assert stats.garbage_bytes == truth.garbage_bytes
    assert (stats.resets, stats.reconnects) == (0, 0)
    assert len(drain(queue)) == 4 * (truth.samples_frames_written - truth.frames_corrupted)


async def test_unplug_and_replug_through_the_symlink(by_id: Path, wait_until: Waiter) -> None:
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    with EmulatedMcu(link_path=by_id, channels=3) as mcu:
        link = make_link(by_id, queue, AXES)
        async with running(link, wait_until):
            run = asyncio.create_task(mcu.run(max_frames=50))
            await wait_until(lambda: link.stats.frames >= 10, "frames before unplug")
            mcu.unplug(0.3)
            await wait_until(lambda: not link.stats.connected, "link notices the unplug")
            await wait_until(lambda: link.stats.reconnects == 1, "link reconnects")
            await run

            def every_seq_accounted() -> bool:
                seen = link.stats.frames + link.stats.dropped_frames
                return seen == mcu.counts.frames_generated

            await wait_until(every_seq_accounted, "every seq number accounted for")
            assert link.stats.connected
    assert (mcu.counts.unplugs, mcu.counts.replugs) == (1, 1)
    assert mcu.counts.frames_lost_unplugged >= 1
    assert link.stats.dropped_frames >= mcu.counts.frames_lost_unplugged
    assert link.stats.open_failures >= 1
    assert link.stats.last_disconnect_reason is not None
    assert link.stats.resets == 0


async def test_unplug_with_power_cycle_counts_a_reset(by_id: Path, wait_until: Waiter) -> None:
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    with EmulatedMcu(link_path=by_id, channels=3) as mcu:
        link = make_link(by_id, queue, AXES)
        async with running(link, wait_until):
            run = asyncio.create_task(mcu.run())
            await wait_until(lambda: link.stats.frames >= 10, "frames before unplug")
            mcu.unplug(0.2, reset_on_replug=True)
            await wait_until(lambda: link.stats.resets == 1, "reset seen after replug")
            run.cancel()
    assert link.stats.reconnects == 1


async def test_mcu_reset_is_counted_and_time_reanchored(by_id: Path, wait_until: Waiter) -> None:
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    clock = McuClock()
    with EmulatedMcu(link_path=by_id, channels=3) as mcu:
        link = make_link(by_id, queue, AXES, clock=clock)
        async with running(link, wait_until):
            run = asyncio.create_task(stream_all(mcu, link, 60, wait_until))
            await wait_until(lambda: mcu.counts.samples_frames_written >= 25, "25 frames sent")
            mcu.reset()
            await run
    assert mcu.counts.resets == 1
    assert link.stats.resets == 1
    assert link.stats.seq_gaps == 0  # seq restarting at 0 is a reset, not a gap
    assert clock.sessions == 2
    t0 = [b.t0 for b in by_channel(drain(queue))["accel_x"]]
    assert len(t0) == 60
    assert all(later > earlier for earlier, later in itertools.pairwise(t0))


async def test_12_khz_stream(by_id: Path, wait_until: Waiter) -> None:
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    with EmulatedMcu(
        link_path=by_id, rate_hz=12_000, channels=3, sample_format=SampleFormat.INT16
    ) as mcu:
        assert mcu.samples_per_frame == 128
        link = make_link(by_id, queue, AXES, expected_rate_hz=dict.fromkeys(AXES, 12_000.0))
        async with running(link, wait_until):
            await stream_all(mcu, link, 190, wait_until)  # ~2 s
    assert (link.stats.seq_gaps, link.stats.crc_errors, link.stats.rate_mismatches) == (0, 0, 0)
    blocks = by_channel(drain(queue))["accel_y"]
    assert len(blocks) == 190
    assert all(b.rate == 12_000.0 and len(b.samples) == 128 for b in blocks)


async def test_sequence_wraps_without_a_gap(by_id: Path, wait_until: Waiter) -> None:
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    with EmulatedMcu(link_path=by_id, channels=3, first_seq=2**32 - 10) as mcu:
        link = make_link(by_id, queue, AXES)
        async with running(link, wait_until):
            await stream_all(mcu, link, 20, wait_until)
    assert (link.stats.seq_gaps, link.stats.resets) == (0, 0)


async def test_wrong_rate_is_dropped_and_unmapped_channels_counted(
    by_id: Path, wait_until: Waiter
) -> None:
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    with EmulatedMcu(link_path=by_id, rate_hz=2000, channels=4) as mcu:
        link = make_link(by_id, queue, AXES, expected_rate_hz={0: 1000.0, 1: 2000.0})
        async with running(link, wait_until):
            await stream_all(mcu, link, 20, wait_until)
    assert link.stats.rate_mismatches == 20
    assert link.stats.unmapped_frames == 20  # channel 3 has no mapping
    channels = by_channel(drain(queue))
    assert sorted(channels) == ["accel_y", "accel_z"]


async def test_full_queue_is_waited_for_and_counted(by_id: Path, wait_until: Waiter) -> None:
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue(maxsize=3)
    with EmulatedMcu(link_path=by_id, channels=3, tx_buffer_bytes=2048) as mcu:
        link = make_link(by_id, queue, AXES, read_buffer_bytes=4096)
        async with running(link, wait_until):
            run = asyncio.create_task(stream_all(mcu, link, 120, wait_until))
            # Nobody consumes: the link blocks, the pty fills, the MCU drops frames.
            await wait_until(lambda: mcu.counts.frames_dropped_tx_full >= 3, "MCU TX overflow")
            consumer = asyncio.create_task(consume(queue))
            await run
            consumer.cancel()
    assert link.stats.queue_full >= 1
    assert link.stats.queue_full_s > 0
    assert link.stats.dropped_frames == mcu.counts.frames_dropped_tx_full


async def consume(queue: asyncio.Queue[SampleBlock]) -> None:
    while True:
        await queue.get()


async def test_silent_port_is_reopened(by_id: Path, wait_until: Waiter) -> None:
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    with EmulatedMcu(link_path=by_id) as _silent:
        link = make_link(by_id, queue, AXES, idle_timeout_s=0.1)
        async with running(link, wait_until):
            await wait_until(lambda: link.stats.reconnects >= 1, "reopen after silence")
    assert "no data" in (link.stats.last_disconnect_reason or "")


async def test_port_missing_at_start_is_retried(by_id: Path, wait_until: Waiter) -> None:
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    link = make_link(by_id, queue, AXES)
    task = asyncio.create_task(link.run())
    try:
        await wait_until(lambda: link.stats.open_failures >= 2, "failed opens")
        assert not link.stats.connected
        with EmulatedMcu(link_path=by_id) as mcu:
            await wait_until(lambda: link.stats.connected, "connected once the device appears")
            await stream_all(mcu, link, 5, wait_until)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert link.stats.reconnects == 0


async def test_mcu_time_jump_without_hello_is_a_reset(wait_until: Waiter) -> None:
    """Frames written straight into a pty: seq continuous, MCU time jumps an hour ahead."""
    master, slave = os.openpty()
    tty.setraw(slave)
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    clock = McuClock()
    link = make_link(Path(os.ttyname(slave)), queue, AXES, clock=clock)
    counts = np.zeros((32, 3), dtype=np.int32)
    try:
        async with running(link, wait_until):
            for seq in range(1, 21):
                jump_us = 3_600_000_000 if seq > 10 else 0
                frame = encode_samples(seq, jump_us + seq * 32_000, 1000, (0, 1, 2), counts, 1e-3)
                os.write(master, frame)
                if seq == 10:
                    await wait_until(lambda: link.stats.frames == 10, "frames before the jump")
            await wait_until(lambda: link.stats.frames == 20, "frames after the jump")
    finally:
        os.close(master)
        os.close(slave)
    assert (link.stats.resets, link.stats.seq_gaps) == (1, 0)
    assert clock.discontinuities == 1
    assert len(drain(queue)) == 60


async def test_partial_frame_at_connect_is_told_apart_from_noise(wait_until: Waiter) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue()
    link = make_link(Path(os.ttyname(slave)), queue, AXES)
    counts = np.zeros((32, 3), dtype=np.int32)
    frames = [encode_samples(seq, seq * 32_000, 1000, (0, 1, 2), counts, 1e-3) for seq in (1, 2)]
    try:
        async with running(link, wait_until):
            os.write(master, frames[0][100:] + frames[1])  # joined in the middle of frame 1
            await wait_until(lambda: link.stats.frames == 1, "the whole frame after the partial")
    finally:
        os.close(master)
        os.close(slave)
    partial_bytes = len(frames[0]) - 100 - 1  # without its delimiter
    assert (link.stats.joined_mid_frame, link.stats.joined_mid_frame_bytes) == (1, partial_bytes)
    assert link.stats.crc_errors + link.stats.malformed == 1
    assert link.stats.garbage_bytes == partial_bytes
