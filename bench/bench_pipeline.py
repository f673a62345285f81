"""How many 1 kHz channels one core sustains in real time through decode + features + store.

The wire bytes of `--seconds` of stream from `--channels / --per-mcu` emulated MCUs (int32 frames
of 32 samples, as the firmware sends) are made first, untimed. Then, timed in CPU seconds of the
whole process (the store's SQLite thread included), the bytes go through the real path: the
FrameDecoder in 4 KiB reads, SampleBlocks per channel, one AssetFeatures per MCU, and every
stride's vectors into a real SQLite store (a temp file, WAL, synchronous=NORMAL) in one batch.

Baseline, same run, same decode and store: features recomputed per window and per channel with
scipy.signal.welch (bench_features.baseline_features). The ratio is baseline / incremental.

    .venv/bin/python bench/bench_pipeline.py [--channels 64 --per-mcu 4 --seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bench_features import baseline_features

from appliance.features import AssetFeatures, ChannelSpec, FeatureSettings
from appliance.records import FeatureVector, FloatArray, SampleBlock
from appliance.rig.mcu import MachineSignal
from appliance.store import Store, StoreSettings
from firmware_bridge.codec import FrameDecoder, SampleFormat, SamplesFrame, encode_samples

RATE = 1000
SAMPLES_PER_FRAME = 32
SCALE = 3.9e-6
READ_BYTES = 4096
T0 = 1_700_000_000.0


@dataclass(frozen=True)
class Stream:
    asset: str
    channels: tuple[str, ...]
    wire: bytes


def make_streams(mcus: int, per_mcu: int, seconds: int) -> list[Stream]:
    frames = seconds * RATE // SAMPLES_PER_FRAME
    t = np.arange(frames * SAMPLES_PER_FRAME) / RATE
    streams = []
    for m in range(mcus):
        signal = MachineSignal().render(t, per_mcu, np.random.default_rng(m))
        counts = np.round(signal / SCALE).astype(np.int32)
        wire = b"".join(
            encode_samples(
                seq=i,
                mcu_time_us=i * SAMPLES_PER_FRAME * 1000,
                rate_hz=RATE,
                channel_ids=range(per_mcu),
                counts=counts[i * SAMPLES_PER_FRAME : (i + 1) * SAMPLES_PER_FRAME],
                scale=SCALE,
                fmt=SampleFormat.INT32,
            )
            for i in range(frames)
        )
        streams.append(Stream(f"mcu{m}", tuple(f"accel_{c}" for c in range(per_mcu)), wire))
    return streams


Push = Callable[[SampleBlock], list[FeatureVector]]


class BaselineAsset:
    """Keeps each channel's last window of raw samples; recomputes every window from scratch."""

    def __init__(self, asset: str, channels: tuple[str, ...], settings: FeatureSettings) -> None:
        self.asset = asset
        self.channels = channels
        self.settings = settings
        self.window = round(settings.window_s * RATE)
        self.stride = round(settings.stride_s * RATE)
        self.rings = {c: np.zeros(0) for c in channels}
        self.received = 0
        self.next_emit = self.window

    def push(self, block: SampleBlock) -> list[FeatureVector]:
        ring = np.concatenate([self.rings[block.channel], block.samples])[-self.window :]
        self.rings[block.channel] = ring
        if block.channel != self.channels[-1]:
            return []
        self.received += len(block.samples)
        if self.received < self.next_emit:
            return []
        self.next_emit += self.stride
        values = np.concatenate(
            [baseline_features(self.rings[c], self.settings) for c in self.channels]
        )
        names = tuple(
            f"{c}.f{i}" for c in self.channels for i in range(len(values) // len(self.channels))
        )
        return [FeatureVector(self.asset, block.t_end, names, values)]


async def run_path(streams: list[Stream], pushes: list[Push], db: Path) -> tuple[float, float, int]:
    """(cpu seconds, wall seconds, vectors stored) for the whole stream through one path."""
    store = await Store.open(StoreSettings(db))
    decoders = [FrameDecoder() for _ in streams]
    longest = max(len(s.wire) for s in streams)
    stored = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    pending: list[FeatureVector] = []
    for offset in range(0, longest, READ_BYTES):
        for stream, decoder, push in zip(streams, decoders, pushes, strict=True):
            for frame in decoder.feed(stream.wire[offset : offset + READ_BYTES]):
                assert isinstance(frame, SamplesFrame)
                pending.extend(push_frame(stream, frame, push))
        if len(pending) >= len(streams):
            stored += len(await store.recorder.add_features(pending))
            pending = []
    stored += len(await store.recorder.add_features(pending))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await store.close()
    return cpu, wall, stored


def push_frame(stream: Stream, frame: SamplesFrame, push: Push) -> list[FeatureVector]:
    samples: FloatArray = frame.physical()
    t0 = T0 + frame.mcu_time_us * 1e-6
    out = []
    for column, channel in enumerate(stream.channels):
        out.extend(push(SampleBlock(stream.asset, channel, t0, RATE, samples[:, column])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--per-mcu", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    mcus = args.channels // args.per_mcu
    settings = FeatureSettings()
    streams = make_streams(mcus, args.per_mcu, args.seconds)
    incremental = [
        AssetFeatures(s.asset, [ChannelSpec(c, RATE, True) for c in s.channels], settings).push
        for s in streams
    ]
    baseline = [BaselineAsset(s.asset, s.channels, settings).push for s in streams]
    with tempfile.TemporaryDirectory() as tmp:
        inc = asyncio.run(run_path(streams, incremental, Path(tmp) / "inc.db"))
        base = asyncio.run(run_path(streams, baseline, Path(tmp) / "base.db"))
    stream_s = args.seconds * args.channels
    print(
        f"{args.channels} channels x 1 kHz as {mcus} MCUs x {args.per_mcu}, "
        f"{args.seconds} s of stream"
    )
    for name, (cpu, wall, stored) in (("incremental", inc), ("baseline (scipy per window)", base)):
        print(
            f"  {name:28s} cpu {cpu:6.2f} s  wall {wall:6.2f} s  vectors {stored:5d}  "
            f"-> {stream_s / cpu:8.0f} channels per core in real time"
        )
    print(f"  speed-up (baseline cpu / incremental cpu): {base[0] / inc[0]:.1f}x")


if __name__ == "__main__":
    main()
