"""The diagnosis names each fault the emulated MCU injects, read from its frames on a real pty."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import serial_asyncio

from appliance.diagnosis import CWRU_DRIVE_END, diagnose_channel
from appliance.rig.mcu import EmulatedMcu, MachineSignal, default_samples_per_frame, parse_faults
from firmware_bridge.codec import FrameDecoder, SamplesFrame

RATE = 1000
SECONDS = 5
FAULTS = {
    "none": [],
    "outer_race": ["outer_race=0.1"],
    "inner_race": ["inner_race=0.1"],
    "rolling_element": ["ball=0.1"],
    "misalignment": ["misalignment=0.2"],
    "imbalance": ["imbalance=0.5"],
}


async def radial_samples(link: Path, faults: list[str]) -> np.ndarray:
    """SECONDS of channel 0 (radial, g) as the MCU sends them, injected with `faults`."""
    plan, signal = parse_faults(faults)
    frames_needed = SECONDS * RATE // default_samples_per_frame(RATE)
    with EmulatedMcu(link_path=link, rate_hz=RATE, channels=3, faults=plan, signal=signal) as mcu:
        reader, writer = await serial_asyncio.open_serial_connection(url=str(link))
        running = asyncio.create_task(mcu.run(max_frames=frames_needed))
        decoder, samples = FrameDecoder(), []
        while len(samples) < frames_needed:
            frames = decoder.feed(await asyncio.wait_for(reader.read(65536), 30))
            samples += [f.counts[:, 0] for f in frames if isinstance(f, SamplesFrame)]
        await running
        writer.close()
    return np.concatenate(samples) * mcu.scale


async def test_each_injected_fault_is_diagnosed_as_itself(tmp_path: Path) -> None:
    recorded = await asyncio.gather(
        *(radial_samples(tmp_path / kind, faults) for kind, faults in FAULTS.items())
    )
    shaft_hz = MachineSignal().shaft_hz
    verdicts = {
        kind: diagnose_channel(x, RATE, shaft_hz, {"drive-end": CWRU_DRIVE_END}).verdict
        for kind, x in zip(FAULTS, recorded, strict=True)
    }
    assert verdicts == {kind: kind for kind in FAULTS}


def test_the_strikes_do_not_depend_on_how_machine_time_is_cut() -> None:
    signal = MachineSignal(noise_g=0.0, inner_race_g=0.1, ball_g=0.05, outer_race_g=0.05)
    t = 12.0 + np.arange(2000) / RATE
    whole = signal.render(t, 3, np.random.default_rng(0))
    pieces = np.vstack(
        [signal.render(t[i : i + 37], 3, np.random.default_rng(0)) for i in range(0, 2000, 37)]
    )
    np.testing.assert_allclose(pieces, whole, atol=1e-12)
