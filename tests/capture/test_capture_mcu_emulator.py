"""EmulatedMcu on its own: signal model, fault parsing, frames on the pty, the CLI."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
import serial_asyncio

from appliance.rig.mcu import (
    EmulatedMcu,
    FaultPlan,
    MachineSignal,
    default_samples_per_frame,
    parse_faults,
)
from firmware_bridge.codec import Frame, FrameDecoder, HelloFrame, SamplesFrame

Waiter = Callable[..., Awaitable[None]]
RATE = 1000


def amplitude_at(signal: np.ndarray, frequency: float, rate: float = RATE) -> float:
    """Single-sided amplitude of the FFT bin nearest `frequency` (Hann window, coherent gain)."""
    window = np.hanning(len(signal))
    spectrum = np.abs(np.fft.rfft((signal - signal.mean()) * window)) * 2 / window.sum()
    frequencies = np.fft.rfftfreq(len(signal), 1 / rate)
    nearest = int(np.argmin(np.abs(frequencies - frequency)))
    return float(spectrum[nearest - 2 : nearest + 3].max())


def render_x(signal: MachineSignal, start_s: float = 0.0, seconds: float = 10.0) -> np.ndarray:
    t = start_s + np.arange(int(seconds * RATE)) / RATE
    return signal.render(t, 3, np.random.default_rng(0))[:, 0]


def test_healthy_machine_has_shaft_tone_and_no_bearing_tone() -> None:
    x = render_x(MachineSignal())
    assert amplitude_at(x, 29.6) == pytest.approx(0.05, rel=0.15)
    assert amplitude_at(x, 107.0) < 0.005


def test_bearing_defect_adds_bpfo_and_harmonics() -> None:
    x = render_x(MachineSignal(bearing_amplitude_g=0.05))
    assert amplitude_at(x, 107.0) > 0.03
    assert amplitude_at(x, 214.0) > 0.015


def test_imbalance_grows_the_1x_amplitude() -> None:
    signal = MachineSignal(imbalance_growth_per_s=0.05)
    early = amplitude_at(render_x(signal, 0.0), 29.6)
    late = amplitude_at(render_x(signal, 100.0), 29.6)
    assert late > 4 * early


def test_gravity_is_on_z() -> None:
    t = np.arange(2000) / RATE
    values = MachineSignal().render(t, 4, np.random.default_rng(0))
    assert values[:, 2].mean() == pytest.approx(1.0, abs=0.01)
    assert abs(values[:, 0].mean()) < 0.01
    assert abs(values[:, 3].mean()) < 0.01


def test_parse_faults() -> None:
    plan, signal = parse_faults(["drop=0.01", "garbage_bytes=12", "bearing=0.2", "flatline=1"])
    assert plan.drop_probability == 0.01
    assert plan.garbage_max_bytes == 12
    assert plan.flatline_channel == 1
    assert signal.bearing_amplitude_g == 0.2
    with pytest.raises(ValueError, match="names:"):
        parse_faults(["dropp=0.1"])
    with pytest.raises(ValueError, match="bad fault value"):
        parse_faults(["drop=lots"])


def test_samples_per_frame_keeps_frame_rate_moderate() -> None:
    assert default_samples_per_frame(1000) == 32
    assert default_samples_per_frame(12_000) == 128


async def read_frames(
    path: str, until: Callable[[list[Frame]], bool], opened: asyncio.Event | None = None
) -> list[Frame]:
    reader, writer = await serial_asyncio.open_serial_connection(url=path)
    if opened is not None:
        opened.set()
    decoder, frames = FrameDecoder(), list[Frame]()
    try:
        while not until(frames):
            frames += decoder.feed(await reader.read(65536))
    finally:
        writer.close()
    assert decoder.counters.crc_errors == decoder.counters.malformed == 0
    return frames


async def test_frames_follow_the_protocol_and_mcu_time_never_drifts(tmp_path: Path) -> None:
    with EmulatedMcu(link_path=tmp_path / "mcu", rate_hz=12_000, channels=4) as mcu:
        opened = asyncio.Event()
        reading = asyncio.create_task(
            read_frames(str(tmp_path / "mcu"), lambda frames: len(frames) >= 101, opened)
        )
        await opened.wait()  # boot once the port is open: opening flushes earlier input
        running = asyncio.create_task(mcu.run(max_frames=100))
        frames = await asyncio.wait_for(reading, 30)
        await running
    hello, samples = frames[0], frames[1:]
    assert isinstance(hello, HelloFrame) and hello.seq == 0
    assert all(isinstance(f, SamplesFrame) for f in samples)
    for k, frame in enumerate(samples):
        assert isinstance(frame, SamplesFrame)
        assert frame.seq == k + 1
        assert frame.mcu_time_us == 2000 + k * 128 * 1_000_000 // 12_000
        assert frame.channel_ids == (0, 1, 2, 3)
        assert frame.counts.shape == (128, 4)


async def test_flatline_and_spikes_are_in_the_data(tmp_path: Path) -> None:
    plan = FaultPlan(spike_rate_hz=20.0, spike_amplitude_g=1.5)
    with EmulatedMcu(link_path=tmp_path / "mcu", channels=3, faults=plan, seed=3) as mcu:
        mcu.flatline(1, for_s=0.64)
        opened = asyncio.Event()
        reading = asyncio.create_task(
            read_frames(str(tmp_path / "mcu"), lambda frames: len(frames) >= 61, opened)
        )
        await opened.wait()  # boot once the port is open: opening flushes earlier input
        running = asyncio.create_task(mcu.run(max_frames=60))
        frames = await asyncio.wait_for(reading, 30)
        await running
    counts = np.concatenate([f.counts for f in frames if isinstance(f, SamplesFrame)])
    g = counts * mcu.scale
    flat = g[:640, 1]
    assert np.all(flat == flat[0]) and np.std(g[640:, 1]) > 0
    deviation = np.abs(g - np.median(g[640:], axis=0))
    deviation[:640, 1] = 0.0  # the stuck stretch sits wherever the channel stopped
    assert mcu.counts.spikes >= 10
    assert int(np.sum(deviation > 0.75)) == mcu.counts.spikes


async def test_standalone_cli_prints_the_pty_and_streams(
    tmp_path: Path, wait_until: Waiter
) -> None:
    link = tmp_path / "by-id" / "usb-emulated"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "appliance.rig.mcu",
        "--link",
        str(link),
        "--rate",
        "1000",
        "--channels",
        "4",
        "--fault",
        "drop=0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("/dev/pts/") and str(link) in line
        assert str(link.resolve()) == line.split()[0]
        frames = await asyncio.wait_for(read_frames(str(link), lambda f: len(f) >= 5), 30)
        assert all(isinstance(f, SamplesFrame) and f.counts.shape[1] == 4 for f in frames[1:])
    finally:
        process.terminate()
        await process.wait()
    await wait_until(lambda: not link.exists(), "symlink removed on exit")
