"""The serial link to the vibration MCU: bytes -> frames -> SampleBlocks on a queue.

One task (SerialLink.run) owns the port, the decoder, the sequence tracker and the MCU clock,
and is the only place that reconnects. The port is always opened by its path, so a
/dev/serial/by-id/... name finds the device again after it re-enumerates under a new ttyACM.

Rate check: a frame whose rate differs from a channel's expected rate is *dropped* for that
channel (counted in rate_mismatches, logged when it starts and stops). Features and models are
built for one rate; blocks at another rate would give wrong spectra and false anomalies, and
the counter plus the log make the misconfiguration visible instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import serial_asyncio
import structlog

from appliance.capture.clock import McuClock
from appliance.net.backoff import Backoff
from appliance.records import SampleBlock
from firmware_bridge.codec import (
    DELIMITER,
    DecoderCounters,
    Frame,
    FrameDecoder,
    HelloFrame,
    SamplesFrame,
)
from firmware_bridge.sequence import SequenceTracker

log = structlog.get_logger(__name__)

_DECODER_FIELDS = tuple(f.name for f in dataclasses.fields(DecoderCounters))


@dataclass
class SerialStats:
    """Counters of one link, owned by it; others only read them (status board, /metrics).

    frames..garbage_bytes are the decoder's (frames counts HELLOs too). seq_gaps counts gap
    events, dropped_frames/dropped_samples what they lost. rate_mismatches counts blocks
    dropped for a wrong rate; unmapped_frames frames with a channel id not in the map;
    queue_full puts that had to wait, queue_full_s the total wait. last_frame_utc is the host
    wall time the last good frame arrived. joined_mid_frame(_bytes) is the part of the bad
    frames/garbage that was a partial frame at the start of a connection (reopening a port
    mid-stream), as opposed to line noise.
    """

    frames: int = 0
    crc_errors: int = 0
    malformed: int = 0
    oversize: int = 0
    garbage_bytes: int = 0
    seq_gaps: int = 0
    dropped_frames: int = 0
    dropped_samples: int = 0
    resets: int = 0
    reconnects: int = 0
    open_failures: int = 0
    connected: bool = False
    last_frame_utc: float | None = None
    rate_mismatches: int = 0
    unmapped_frames: int = 0
    queue_full: int = 0
    queue_full_s: float = 0.0
    bytes_received: int = 0
    firmware: str | None = None
    clock_drift_ppm: float = 0.0
    joined_mid_frame: int = 0
    joined_mid_frame_bytes: int = 0
    last_disconnect_reason: str | None = None


class Disconnected(Exception):
    """The port stopped delivering; the message says why."""


class SerialLink:
    """Reads one MCU's frames from `port` and puts SampleBlocks on `queue`.

    `channel_map` maps a frame channel id to (asset, channel); unmapped ids are dropped and
    counted. `expected_rate_hz` maps channel ids to their configured rate (unchecked if absent).
    When the port vanishes it is reopened after `reconnect_initial_s`, doubling up to
    `reconnect_max_s`, each delay scaled by a random factor in [0.5, 1) (net.backoff). No byte for
    `idle_timeout_s` also counts as vanished (a hung USB device keeps its port open).
    While the queue is full the link waits; at most `read_buffer_bytes` pile up in user space
    before the kernel's and then the MCU's buffers fill and the MCU drops frames (seq gaps).
    """

    def __init__(
        self,
        port: str,
        channel_map: Mapping[int, tuple[str, str]],
        queue: asyncio.Queue[SampleBlock],
        *,
        expected_rate_hz: Mapping[int, float] | None = None,
        baudrate: int = 921600,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        idle_timeout_s: float | None = 5.0,
        read_buffer_bytes: int = 32768,
        clock: McuClock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.port = port
        self.stats = SerialStats()
        self._channel_map = dict(channel_map)
        self._queue = queue
        self._expected_rate_hz = dict(expected_rate_hz or {})
        self._baudrate = baudrate
        self._idle_timeout_s = idle_timeout_s
        self._read_buffer_bytes = read_buffer_bytes
        self._clock = clock if clock is not None else McuClock()
        rng = rng if rng is not None else random.Random()
        self._backoff = Backoff(reconnect_initial_s, reconnect_max_s, rng)
        self._sequence = SequenceTracker()
        self._decoder = FrameDecoder()
        self._seen_first_delimiter = False
        self._earlier_decoders = DecoderCounters()
        self._mismatched_channels: set[int] = set()
        self._unmapped_channels: set[int] = set()
        self._queue_blocked = False
        self._failed_opens_in_a_row = 0

    async def run(self) -> None:
        """Connect, stream, reconnect; until cancelled."""
        has_connected = False
        while True:
            try:
                reader, writer = await self._open()
            except OSError as error:  # serial.SerialException is an OSError
                self._note_open_failure(error)
            else:
                if has_connected:
                    self.stats.reconnects += 1
                has_connected = True
                frames_before = self.stats.frames
                try:
                    await self._stream(reader)
                except Disconnected as reason:
                    self._note_disconnect(str(reason))
                finally:
                    self._close(writer)
                if self.stats.frames > frames_before:
                    self._backoff.reset()
            await asyncio.sleep(self._backoff.next_delay())

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await serial_asyncio.open_serial_connection(
            url=self.port,
            baudrate=self._baudrate,
            exclusive=True,
            limit=self._read_buffer_bytes // 2,  # reading pauses at twice the limit
        )
        self.stats.connected = True
        self._failed_opens_in_a_row = 0
        log.info("serial_connected", port=self.port)
        return reader, writer

    def _close(self, writer: asyncio.StreamWriter) -> None:
        self.stats.connected = False
        self._copy_decoder_totals_to(self._earlier_decoders)
        self._decoder = FrameDecoder()  # a partial frame from this connection is stale
        self._seen_first_delimiter = False
        writer.close()

    def _note_open_failure(self, error: OSError) -> None:
        self.stats.open_failures += 1
        self._failed_opens_in_a_row += 1
        if self._failed_opens_in_a_row == 1:
            log.warning("serial_open_failed", port=self.port, error=str(error))

    def _note_disconnect(self, reason: str) -> None:
        self.stats.last_disconnect_reason = reason
        log.warning("serial_disconnected", port=self.port, reason=reason)

    async def _stream(self, reader: asyncio.StreamReader) -> None:
        while True:
            chunk = await self._read(reader)
            rx_mono, rx_wall = time.monotonic(), time.time()
            self.stats.bytes_received += len(chunk)
            frames = self._decode(chunk)
            self._copy_decoder_totals_to(self.stats)
            for frame in frames:
                for block in self._handle(frame, rx_mono, rx_wall):
                    await self._put(block)

    async def _read(self, reader: asyncio.StreamReader) -> bytes:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives as the read completes (see appliance/net/cancellation.py).
        try:
            async with asyncio.timeout(self._idle_timeout_s):
                chunk = await reader.read(65536)
        except TimeoutError as error:
            raise Disconnected(f"no data for {self._idle_timeout_s} s") from error
        except OSError as error:
            raise Disconnected(f"read failed: {error}") from error
        if not chunk:
            raise Disconnected("end of file")
        return chunk

    def _decode(self, chunk: bytes) -> list[Frame]:
        if self._seen_first_delimiter:
            return self._decoder.feed(chunk)
        head, delimiter, tail = chunk.partition(DELIMITER)
        frames = self._decoder.feed(head + delimiter)
        if delimiter:
            # Whatever was bad up to the first delimiter of a connection is where we joined.
            self._seen_first_delimiter = True
            counters = self._decoder.counters
            bad_frames = counters.crc_errors + counters.malformed + counters.oversize
            self.stats.joined_mid_frame += bad_frames
            self.stats.joined_mid_frame_bytes += counters.garbage_bytes
            frames += self._decoder.feed(tail)
        return frames

    def _copy_decoder_totals_to(self, target: DecoderCounters | SerialStats) -> None:
        """Counters of this connection's decoder plus those of all earlier connections."""
        for name in _DECODER_FIELDS:
            total = getattr(self._earlier_decoders, name) + getattr(self._decoder.counters, name)
            setattr(target, name, total)

    def _handle(self, frame: Frame, rx_mono: float, rx_wall: float) -> list[SampleBlock]:
        self.stats.last_frame_utc = rx_wall
        check = self._sequence.check(frame)
        if check.reset:
            self._clock.reanchor()
            self._note_reset("hello" if isinstance(frame, HelloFrame) else "seq or time restarted")
        elif check.dropped_frames:
            self.stats.seq_gaps += 1
            self.stats.dropped_frames += check.dropped_frames
            self.stats.dropped_samples += check.dropped_samples
            log.debug("serial_seq_gap", port=self.port, frames=check.dropped_frames)
        if isinstance(frame, HelloFrame):
            self._clock.reanchor()
            self._clock.observe(frame.mcu_time_us, rx_mono, rx_wall)
            self.stats.firmware = frame.firmware
            log.info("mcu_hello", port=self.port, firmware=frame.firmware, cause=frame.reset_cause)
            return []
        return self._blocks(frame, rx_mono, rx_wall)

    def _note_reset(self, reason: str) -> None:
        self.stats.resets += 1
        log.warning("mcu_reset", port=self.port, reason=reason)

    def _blocks(self, frame: SamplesFrame, rx_mono: float, rx_wall: float) -> list[SampleBlock]:
        n_samples = frame.counts.shape[0]
        data_complete_us = frame.mcu_time_us + math.ceil(n_samples * 1e6 / frame.rate_hz)
        if self._clock.observe(data_complete_us, rx_mono, rx_wall):
            self._note_reset("mcu time discontinuous with host time")
        self.stats.clock_drift_ppm = self._clock.drift_ppm
        t0 = self._clock.to_utc(frame.mcu_time_us)
        physical = frame.physical()
        blocks = []
        for column, channel_id in enumerate(frame.channel_ids):
            target = self._channel_map.get(channel_id)
            if target is None:
                self._note_unmapped(channel_id)
            elif self._rate_matches(channel_id, frame.rate_hz):
                samples = np.ascontiguousarray(physical[:, column])
                blocks.append(SampleBlock(target[0], target[1], t0, float(frame.rate_hz), samples))
        if any(channel_id not in self._channel_map for channel_id in frame.channel_ids):
            self.stats.unmapped_frames += 1
        return blocks

    def _note_unmapped(self, channel_id: int) -> None:
        if channel_id not in self._unmapped_channels:
            self._unmapped_channels.add(channel_id)
            log.warning("serial_unmapped_channel", port=self.port, channel_id=channel_id)

    def _rate_matches(self, channel_id: int, rate_hz: int) -> bool:
        expected = self._expected_rate_hz.get(channel_id)
        matches = expected is None or math.isclose(rate_hz, expected, rel_tol=1e-6)
        if not matches:
            self.stats.rate_mismatches += 1
        was_mismatched = channel_id in self._mismatched_channels
        if matches and was_mismatched:
            self._mismatched_channels.discard(channel_id)
            log.info("serial_rate_ok", port=self.port, channel_id=channel_id, rate_hz=rate_hz)
        elif not matches and not was_mismatched:
            self._mismatched_channels.add(channel_id)
            log.error(
                "serial_rate_mismatch",
                port=self.port,
                channel_id=channel_id,
                rate_hz=rate_hz,
                expected_hz=expected,
            )
        return matches

    async def _put(self, block: SampleBlock) -> None:
        if not self._queue.full():
            self._queue.put_nowait(block)
            self._queue_blocked = False
            return
        self.stats.queue_full += 1
        if not self._queue_blocked:
            self._queue_blocked = True
            log.warning("serial_queue_full", port=self.port, maxsize=self._queue.maxsize)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._queue.put(block)
        self.stats.queue_full_s += loop.time() - started
