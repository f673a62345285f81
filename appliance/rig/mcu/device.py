"""An emulated vibration MCU (RP2040 + ADXL355-class accelerometer) on a real pseudo-terminal.

It speaks the real frame protocol (firmware_bridge/PROTOCOL.md) through the real codec: a 0x00
and a HELLO after boot, then SAMPLES frames at the configured rate, paced by the event loop
clock against a fixed schedule (late frames are sent at once to catch up; the schedule never
drifts). Faults are injected the way they happen on real hardware, and everything injected is
counted in `counts` so tests can compare a receiver's counters with the truth.

Standalone:  python -m appliance.rig.mcu --link /tmp/mcu --rate 1000 --channels 4
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt
import structlog

from appliance.rig.mcu.signal import FaultPlan, MachineSignal
from appliance.rig.pty import PtyPort
from firmware_bridge.codec import SampleFormat, encode_hello, encode_samples

log = structlog.get_logger(__name__)

DEFAULT_FIRMWARE = "vibration-bridge-emulator 0.1.0 adxl355"
RESET_POWER_ON = 1
RESET_WATCHDOG = 2
RESET_SOFTWARE = 3
ADXL355_G_PER_LSB = 1 / 256_000  # ±2 g range, 20-bit
BOOT_TO_FIRST_SAMPLE_US = 2000
SEQ_MODULUS = 1 << 32
_FORMAT_LIMITS = {SampleFormat.INT16: (-32768, 32767), SampleFormat.INT32: (-(2**19), 2**19 - 1)}


def default_scale(fmt: SampleFormat) -> float:
    """g per count: the ADXL355's 20 bits, or its top 16 bits when sent as int16."""
    return ADXL355_G_PER_LSB * (16 if fmt == SampleFormat.INT16 else 1)


def default_samples_per_frame(rate_hz: int) -> int:
    """32, or the power of two that keeps the stream at or below ~100 frames/s."""
    if rate_hz <= 32 * 100:
        return 32
    return 1 << math.ceil(math.log2(rate_hz / 100))


@dataclass
class EmulatorCounts:
    """What the emulator did. A receiver connected throughout should see:
    good frames = frames_written - frames_corrupted; missing frames = frames_dropped +
    frames_dropped_tx_full + frames_corrupted; garbage bytes = garbage_bytes. Across unplugs
    without a reset, good + missing = frames_generated (frames written to a new pty before the
    receiver reopened it are flushed by the open and show up as missing)."""

    frames_generated: int = 0
    frames_written: int = 0
    samples_frames_written: int = 0
    hello_written: int = 0
    frames_dropped: int = 0
    frames_dropped_tx_full: int = 0
    frames_lost_unplugged: int = 0
    frames_corrupted: int = 0
    garbage_injections: int = 0
    garbage_bytes: int = 0
    spikes: int = 0
    resets: int = 0
    unplugs: int = 0
    replugs: int = 0

    @property
    def missing_frames(self) -> int:
        return self.frames_dropped + self.frames_dropped_tx_full + self.frames_corrupted


@dataclass
class _Flatline:
    channel: int
    until_s: float
    count: int | None = None


@dataclass
class _PendingFaults:
    drop_frames: int = 0
    garbage: list[bytes] = field(default_factory=list)
    reset_cause: int | None = None


class EmulatedMcu:
    """The MCU firmware's behaviour on a pty whose slave path is `path` (or `link_path`).

    `crystal_ppm` makes the MCU clock run fast (+) or slow against the host. `first_seq` is the
    seq of the first HELLO (the firmware uses 0; other values exercise the u32 wrap). Frames
    that do not fit `tx_buffer_bytes` while nobody reads are dropped, as the USB TX FIFO would.
    """

    def __init__(
        self,
        *,
        link_path: str | Path | None = None,
        rate_hz: int = 1000,
        channels: int = 3,
        samples_per_frame: int | None = None,
        sample_format: SampleFormat = SampleFormat.INT32,
        scale: float | None = None,
        channel_ids: Sequence[int] | None = None,
        crystal_ppm: float = 0.0,
        first_seq: int = 0,
        faults: FaultPlan | None = None,
        signal: MachineSignal | None = None,
        tx_buffer_bytes: int = 16384,
        firmware: str = DEFAULT_FIRMWARE,
        seed: int = 0,
    ) -> None:
        self.link_path = Path(link_path) if link_path is not None else None
        self.rate_hz = rate_hz
        self.samples_per_frame = samples_per_frame or default_samples_per_frame(rate_hz)
        self.sample_format = SampleFormat(sample_format)
        self.scale = scale if scale is not None else default_scale(self.sample_format)
        self.channel_ids = tuple(channel_ids) if channel_ids is not None else tuple(range(channels))
        self.faults = faults if faults is not None else FaultPlan()
        self.signal = signal if signal is not None else MachineSignal()
        self.counts = EmulatorCounts()
        self._crystal_ppm = crystal_ppm
        self._firmware = firmware
        self._random = random.Random(seed)
        self._rng = np.random.default_rng(seed)
        self._seq = first_seq % SEQ_MODULUS
        self._pending = _PendingFaults()
        self._flatlines: list[_Flatline] = []
        self._machine_samples = 0  # the machine keeps turning across MCU resets
        self._samples_since_boot = 0
        self._boot_host_time = 0.0
        self._port = PtyPort(self.link_path, "emulated MCU", tx_limit=tx_buffer_bytes)
        self._replug_at: float | None = None
        self._replug_reset = False
        self._replugged_at = -math.inf
        self._next_unplug = math.inf
        self._next_reset = math.inf
        self._frames_this_run = 0

    # --- plugging ----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The pty slave path while plugged in."""
        return self._port.path

    @property
    def plugged_in(self) -> bool:
        return self._port.plugged_in

    def open(self) -> None:
        """Create the pty (and the symlink): the device appears."""
        self._port.plug()

    def close(self) -> None:
        """Remove the symlink and the pty: the device disappears."""
        self._port.unplug()

    def __enter__(self) -> EmulatedMcu:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- faults ------------------------------------------------------------------------------

    def drop_frames(self, n: int = 1) -> None:
        """The next `n` SAMPLES frames are lost before the wire (their seq numbers are skipped)."""
        self._pending.drop_frames += n

    def inject_garbage(self, n_bytes: int) -> None:
        """Line noise before the next frame: no delimiter, so that frame is lost with it."""
        self._pending.garbage.append(bytes(self._random.randrange(1, 256) for _ in range(n_bytes)))

    def reset(self, cause: int = RESET_SOFTWARE) -> None:
        """Reboot before the next frame: seq and MCU time restart, HELLO is sent."""
        self._pending.reset_cause = cause

    def unplug(self, for_s: float, *, reset_on_replug: bool = False) -> None:
        """Vanish now (pty closed, symlink removed); come back on a new pty after `for_s`."""
        if not self.plugged_in:
            return
        self.close()
        self.counts.unplugs += 1
        self._replug_at = asyncio.get_running_loop().time() + for_s
        self._replug_reset = reset_on_replug
        log.info("mcu_emulator_unplugged", for_s=for_s)

    def flatline(self, channel: int, for_s: float) -> None:
        """Channel index `channel` repeats its current value for `for_s` s of machine time."""
        self._flatlines.append(_Flatline(channel, self._machine_time() + for_s))

    # --- running -----------------------------------------------------------------------------

    async def run(self, max_frames: int | None = None) -> None:
        """Boot, then stream SAMPLES frames until cancelled or `max_frames` were generated.

        The end of a bounded run is clean (no periodic unplug or reset that would not be over
        a second before the end, and no random fault on the last frame), so a receiver can see
        every gap before it.
        """
        loop = asyncio.get_running_loop()
        self._frames_this_run = 0
        self._boot(RESET_POWER_ON, self._seq, loop.time())
        self._next_unplug = _first_due(loop.time(), self.faults.unplug_every_s)
        self._next_reset = _first_due(loop.time(), self.faults.reset_every_s)
        while max_frames is None or self._frames_this_run < max_frames:
            delay = self._next_frame_due() - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            self._periodic_faults(now, self._remaining_s(max_frames))
            self._replug_if_due(now)
            if self._pending.reset_cause is not None:
                self._boot(self._pending.reset_cause, 0, now)
                self.counts.resets += 1
                continue  # the first frame after boot is due one frame duration later
            self._emit_samples_frame(is_last=self._frames_this_run + 1 == max_frames)
            self._frames_this_run += 1

    def _remaining_s(self, max_frames: int | None) -> float:
        if max_frames is None:
            return math.inf
        return (max_frames - self._frames_this_run) * self.samples_per_frame / self.rate_hz

    def _periodic_faults(self, now: float, remaining_s: float) -> None:
        if now >= self._next_unplug and remaining_s > self.faults.unplug_for_s + 1.0:
            self.unplug(self.faults.unplug_for_s, reset_on_replug=self.faults.reset_on_replug)
            self._next_unplug = now + self.faults.unplug_every_s
        if now >= self._next_reset and remaining_s > 1.0 and self._settled_since_replug(now):
            self.reset()
            self._next_reset = now + self.faults.reset_every_s

    def _boot(self, cause: int, seq: int, host_time: float) -> None:
        self._pending.reset_cause = None
        self._seq = seq
        self._samples_since_boot = 0
        self._boot_host_time = host_time
        hello = encode_hello(self._take_seq(), 0, cause, self._firmware)
        if self.plugged_in and self._send(b"\x00" + hello):
            self.counts.hello_written += 1
            self.counts.frames_written += 1
        log.info(
            "mcu_emulator_boot", reset_cause=cause, path=self.path if self.plugged_in else None
        )

    def _settled_since_replug(self, now: float) -> bool:
        """Periodic resets wait until 1 s after a replug: a reset in the window before the host
        reopens the port would hide the frames lost while unplugged from any receiver's gap
        count (reset_on_replug covers that case on purpose)."""
        return self.plugged_in and now - self._replugged_at >= 1.0

    def _replug_if_due(self, now: float) -> None:
        if self._replug_at is None or now < self._replug_at:
            return
        self._replug_at = None
        self._replugged_at = now
        self.open()
        self.counts.replugs += 1
        log.info("mcu_emulator_replugged", path=self.path)
        if self._replug_reset:
            self.reset(RESET_POWER_ON)

    def _next_frame_due(self) -> float:
        end_us = self._mcu_time_us(self._samples_since_boot + self.samples_per_frame)
        return self._boot_host_time + end_us * 1e-6 / (1.0 + self._crystal_ppm * 1e-6)

    def _mcu_time_us(self, samples_since_boot: int) -> int:
        return BOOT_TO_FIRST_SAMPLE_US + samples_since_boot * 1_000_000 // self.rate_hz

    def _machine_time(self) -> float:
        return self._machine_samples / self.rate_hz

    def _take_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % SEQ_MODULUS
        self.counts.frames_generated += 1
        return seq

    def _emit_samples_frame(self, is_last: bool) -> None:
        seq = self._take_seq()
        mcu_time_us = self._mcu_time_us(self._samples_since_boot)
        counts = self._acquire(self.samples_per_frame)
        self._samples_since_boot += self.samples_per_frame
        if not self.plugged_in:
            self.counts.frames_lost_unplugged += 1
            return
        if self._take_drop(is_last):
            self.counts.frames_dropped += 1
            return
        frame = encode_samples(
            seq, mcu_time_us, self.rate_hz, self.channel_ids, counts, self.scale, self.sample_format
        )
        garbage = self._take_garbage(is_last)
        if not self._send(garbage + frame):
            self.counts.frames_dropped_tx_full += 1
            return
        self.counts.frames_written += 1
        self.counts.samples_frames_written += 1
        if garbage:
            self.counts.garbage_injections += 1
            self.counts.frames_corrupted += 1
            self.counts.garbage_bytes += len(garbage) + len(frame) - 1  # delimiter isn't garbage

    def _take_drop(self, is_last: bool) -> bool:
        if self._pending.drop_frames:
            self._pending.drop_frames -= 1
            return True
        return not is_last and self._random.random() < self.faults.drop_probability

    def _take_garbage(self, is_last: bool) -> bytes:
        if self._pending.garbage:
            return self._pending.garbage.pop(0)
        if is_last or self._random.random() >= self.faults.garbage_probability:
            return b""
        n_bytes = self._random.randint(1, self.faults.garbage_max_bytes)
        return bytes(self._random.randrange(1, 256) for _ in range(n_bytes))

    def _acquire(self, n: int) -> npt.NDArray[np.int64]:
        """Next `n` samples of every channel as ADC counts (saturating like the sensor)."""
        t = (self._machine_samples + np.arange(n)) / self.rate_hz
        self._start_scheduled_flatline()
        self._flatlines = [f for f in self._flatlines if t[0] < f.until_s]
        values = self.signal.render(t, len(self.channel_ids), self._rng)
        self._add_spikes(values, n, stuck={f.channel for f in self._flatlines})
        low, high = _FORMAT_LIMITS[self.sample_format]
        counts = np.clip(np.round(values / self.scale), low, high).astype(np.int64)
        self._apply_flatlines(counts)
        self._machine_samples += n
        return counts

    def _add_spikes(self, values: npt.NDArray[np.float64], n: int, stuck: set[int]) -> None:
        """Random shocks on channels that are not stuck (a stuck channel shows nothing)."""
        expected = self.faults.spike_rate_hz * n / self.rate_hz
        live = [c for c in range(values.shape[1]) if c not in stuck]
        if expected <= 0 or not live:
            return
        for _ in range(int(self._rng.poisson(expected))):
            sample = int(self._rng.integers(n))
            channel = live[int(self._rng.integers(len(live)))]
            sign = 1.0 if self._rng.random() < 0.5 else -1.0
            values[sample, channel] += sign * self.faults.spike_amplitude_g
            self.counts.spikes += 1

    def _start_scheduled_flatline(self) -> None:
        channel = self.faults.flatline_channel
        if channel is not None and self._machine_time() >= self.faults.flatline_at_s:
            self.faults.flatline_channel = None
            self.flatline(channel, self.faults.flatline_for_s)

    def _apply_flatlines(self, counts: npt.NDArray[np.int64]) -> None:
        for stuck in self._flatlines:
            if stuck.count is None:
                stuck.count = int(counts[0, stuck.channel])
            counts[:, stuck.channel] = stuck.count

    def _send(self, data: bytes) -> bool:
        """Queue bytes for the pty like the MCU's USB TX buffer; False if they don't fit."""
        return self._port.write(data)


def _first_due(now: float, every_s: float) -> float:
    return now + every_s if every_s > 0 else math.inf
