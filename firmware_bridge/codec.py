"""Pure codec for the MCU frame protocol (see PROTOCOL.md): bytes in, frames and counters out.

No I/O and no asyncio here, so the capture stage, tests and tools can all use it directly.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum

import numpy as np
import numpy.typing as npt

FRAME_VERSION = 1
MAX_PAYLOAD = 4096
MAX_CHANNELS = 32
DELIMITER = b"\x00"


class FrameType(IntEnum):
    SAMPLES = 1
    HELLO = 2


class SampleFormat(IntEnum):
    INT16 = 1
    INT32 = 2


_HEADER = struct.Struct("<BBHIQ")  # version, type, flags, seq, mcu_time_us
_SAMPLES_HEAD = struct.Struct("<IBBHf")  # rate_hz, n_channels, sample_format, n_samples, scale
_HELLO_HEAD = struct.Struct("<BB")  # reset_cause, len
_CRC = struct.Struct("<I")
_BODY_OFFSET = _HEADER.size
_CHANNEL_IDS_OFFSET = _BODY_OFFSET + _SAMPLES_HEAD.size
MIN_PAYLOAD = _HEADER.size + _CRC.size
_SAMPLE_DTYPES: dict[int, np.dtype[np.signedinteger]] = {
    SampleFormat.INT16: np.dtype("<i2"),
    SampleFormat.INT32: np.dtype("<i4"),
}
_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFF_FFFF
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF


@dataclass(frozen=True, slots=True)
class SamplesFrame:
    """A block of samples; `counts` has shape (n_samples, n_channels) and is read-only."""

    seq: int
    mcu_time_us: int
    rate_hz: int
    channel_ids: tuple[int, ...]
    scale: float
    counts: npt.NDArray[np.int32]

    def physical(self) -> npt.NDArray[np.float64]:
        """Counts times scale, same shape as `counts`."""
        return self.counts.astype(np.float64) * self.scale

    def __eq__(self, other: object) -> bool:
        # The generated __eq__ would compare arrays with `==`, whose truth value is ambiguous.
        if not isinstance(other, SamplesFrame):
            return NotImplemented
        return (
            self.seq == other.seq
            and self.mcu_time_us == other.mcu_time_us
            and self.rate_hz == other.rate_hz
            and self.channel_ids == other.channel_ids
            and self.scale == other.scale
            and np.array_equal(self.counts, other.counts)
        )


@dataclass(frozen=True, slots=True)
class HelloFrame:
    """Sent once by the MCU after boot or reset."""

    seq: int
    mcu_time_us: int
    reset_cause: int
    firmware: str


Frame = SamplesFrame | HelloFrame


# --- COBS -----------------------------------------------------------------------------------


def cobs_encode(data: bytes) -> bytes:
    """Canonical COBS: no trailing 0x01 after a final 0xFF block (see PROTOCOL.md §1)."""
    out = bytearray()
    segments = data.split(b"\x00")
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        start = 0
        while len(segment) - start >= 254:
            out.append(0xFF)
            out += segment[start : start + 254]
            start += 254
        if index < last or start == 0 or start < len(segment):
            out.append(len(segment) - start + 1)
            out += segment[start:]
    return bytes(out)


def cobs_decode(encoded: bytes) -> bytes | None:
    """Inverse of cobs_encode; None if `encoded` is not valid COBS.

    Only the chain of code bytes is walked in Python (one integer step per block); the bytes are
    moved by numpy. Sample data holds many zero bytes, so a frame has many short blocks and a
    per-block slice-and-append loop was the decoder's main cost.
    """
    codes = []
    end = len(encoded)
    index = 0
    while index < end:
        code = encoded[index]
        if code == 0:
            return None
        codes.append(index)
        index += code
    if index > end:
        return None
    buffer = np.frombuffer(encoded, dtype=np.uint8).copy()
    starts = np.array(codes, dtype=np.intp)
    # A 0xFF block ends without an implied zero: its follower's code byte is dropped, not zeroed.
    after_full_block = starts[1:][buffer[starts[:-1]] == 0xFF]
    buffer[starts] = 0
    if len(after_full_block):
        keep = np.ones(end, dtype=bool)
        keep[after_full_block] = False
        buffer = buffer[keep]
        end = len(buffer)
    return buffer[1:end].tobytes()


def max_encoded_size(max_payload: int) -> int:
    """Largest COBS encoding of a payload of `max_payload` bytes (delimiter excluded)."""
    return max_payload + max(1, -(-max_payload // 254))


# --- encoding -------------------------------------------------------------------------------


def wire_from_payload(payload_without_crc: bytes) -> bytes:
    """Append the CRC, COBS-encode and add the delimiter. Does not check the payload."""
    payload = payload_without_crc + _CRC.pack(zlib.crc32(payload_without_crc))
    return cobs_encode(payload) + DELIMITER


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _pack_header(frame_type: FrameType, seq: int, mcu_time_us: int) -> bytes:
    _require(0 <= seq <= _U32_MAX, f"seq out of u32 range: {seq}")
    _require(0 <= mcu_time_us <= _U64_MAX, f"mcu_time_us out of u64 range: {mcu_time_us}")
    return _HEADER.pack(FRAME_VERSION, frame_type, 0, seq, mcu_time_us)


def _checked_channel_ids(channel_ids: Sequence[int]) -> bytes:
    ids = list(channel_ids)
    _require(1 <= len(ids) <= MAX_CHANNELS, f"n_channels must be 1..{MAX_CHANNELS}: {len(ids)}")
    _require(all(0 <= i <= 255 for i in ids), f"channel ids must be 0..255: {ids}")
    _require(len(set(ids)) == len(ids), f"channel ids must be unique: {ids}")
    return bytes(ids)


def _checked_counts(
    counts: npt.ArrayLike, n_channels: int, fmt: SampleFormat
) -> npt.NDArray[np.generic]:
    array = np.asarray(counts)
    _require(array.ndim == 2, f"counts must be 2-D (n_samples, n_channels), got {array.shape}")
    _require(array.shape[1] == n_channels, f"counts has {array.shape[1]} channels")
    _require(1 <= array.shape[0] <= _U16_MAX, f"n_samples out of range: {array.shape[0]}")
    _require(
        np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_,
        f"counts must be integers, got {array.dtype}",
    )
    limits = np.iinfo(_SAMPLE_DTYPES[fmt])
    _require(
        int(array.min()) >= limits.min and int(array.max()) <= limits.max,
        f"counts out of {fmt.name} range",
    )
    return array


def _pack_samples_head(
    rate_hz: int, n_channels: int, fmt: SampleFormat, n_samples: int, scale: float
) -> bytes:
    _require(1 <= rate_hz <= _U32_MAX, f"rate_hz out of range: {rate_hz}")
    _require(math.isfinite(scale), f"scale must be finite: {scale}")
    try:
        return _SAMPLES_HEAD.pack(rate_hz, n_channels, fmt, n_samples, scale)
    except OverflowError as error:
        raise ValueError(f"scale does not fit a float32: {scale}") from error


def encode_samples(
    seq: int,
    mcu_time_us: int,
    rate_hz: int,
    channel_ids: Sequence[int],
    counts: npt.ArrayLike,
    scale: float,
    fmt: SampleFormat = SampleFormat.INT16,
) -> bytes:
    """Complete wire bytes of a SAMPLES frame; ValueError on input the protocol cannot carry."""
    fmt = SampleFormat(fmt)
    ids = _checked_channel_ids(channel_ids)
    array = _checked_counts(counts, len(ids), fmt)
    payload = (
        _pack_header(FrameType.SAMPLES, seq, mcu_time_us)
        + _pack_samples_head(rate_hz, len(ids), fmt, array.shape[0], scale)
        + ids
        + array.astype(_SAMPLE_DTYPES[fmt]).tobytes()
    )
    _require(len(payload) + _CRC.size <= MAX_PAYLOAD, "frame exceeds the maximum payload")
    return wire_from_payload(payload)


def encode_hello(seq: int, mcu_time_us: int, reset_cause: int, firmware: str) -> bytes:
    """Complete wire bytes of a HELLO frame; ValueError on input the protocol cannot carry."""
    _require(0 <= reset_cause <= 255, f"reset_cause out of u8 range: {reset_cause}")
    _require(firmware.isascii(), "firmware id must be ASCII")
    firmware_bytes = firmware.encode("ascii")
    _require(len(firmware_bytes) <= 255, "firmware id longer than 255 bytes")
    body = _HELLO_HEAD.pack(reset_cause, len(firmware_bytes)) + firmware_bytes
    return wire_from_payload(_pack_header(FrameType.HELLO, seq, mcu_time_us) + body)


# --- decoding -------------------------------------------------------------------------------


class Rejection(Enum):
    """Why a frame was dropped; each is counted in the DecoderCounters field of that name."""

    CRC = "crc"
    MALFORMED = "malformed"
    OVERSIZE = "oversize"


def _parse_samples(payload: bytes, seq: int, mcu_time_us: int) -> SamplesFrame | None:
    if len(payload) < _CHANNEL_IDS_OFFSET + _CRC.size:
        return None
    rate_hz, n_channels, fmt, n_samples, scale = _SAMPLES_HEAD.unpack_from(payload, _BODY_OFFSET)
    if not (1 <= n_channels <= MAX_CHANNELS and n_samples >= 1 and rate_hz >= 1):
        return None
    if fmt not in _SAMPLE_DTYPES or not math.isfinite(scale):
        return None
    dtype = _SAMPLE_DTYPES[fmt]
    samples_offset = _CHANNEL_IDS_OFFSET + n_channels
    samples_size = n_samples * n_channels * dtype.itemsize
    if len(payload) != samples_offset + samples_size + _CRC.size:
        return None
    channel_ids = tuple(payload[_CHANNEL_IDS_OFFSET:samples_offset])
    if len(set(channel_ids)) != n_channels:
        return None
    counts = np.frombuffer(payload, dtype, n_samples * n_channels, samples_offset)
    counts = counts.astype(np.int32).reshape(n_samples, n_channels)
    counts.flags.writeable = False
    return SamplesFrame(seq, mcu_time_us, rate_hz, channel_ids, scale, counts)


def _parse_hello(payload: bytes, seq: int, mcu_time_us: int) -> HelloFrame | None:
    firmware_offset = _BODY_OFFSET + _HELLO_HEAD.size
    if len(payload) < firmware_offset + _CRC.size:
        return None
    reset_cause, length = _HELLO_HEAD.unpack_from(payload, _BODY_OFFSET)
    if len(payload) != firmware_offset + length + _CRC.size:
        return None
    firmware = payload[firmware_offset : firmware_offset + length]
    if not firmware.isascii():
        return None
    return HelloFrame(seq, mcu_time_us, reset_cause, firmware.decode("ascii"))


def parse_payload(payload: bytes) -> Frame | Rejection:
    """Check CRC, version and layout of one decoded payload (CRC included)."""
    if len(payload) < MIN_PAYLOAD:
        return Rejection.MALFORMED
    (crc,) = _CRC.unpack_from(payload, len(payload) - _CRC.size)
    if zlib.crc32(memoryview(payload)[: -_CRC.size]) != crc:
        return Rejection.CRC
    version, frame_type, _flags, seq, mcu_time_us = _HEADER.unpack_from(payload)
    frame: Frame | None = None
    if version == FRAME_VERSION and frame_type == FrameType.SAMPLES:
        frame = _parse_samples(payload, seq, mcu_time_us)
    elif version == FRAME_VERSION and frame_type == FrameType.HELLO:
        frame = _parse_hello(payload, seq, mcu_time_us)
    return Rejection.MALFORMED if frame is None else frame


def decode_frame(encoded: bytes, max_payload: int = MAX_PAYLOAD) -> Frame | Rejection:
    """Decode one COBS-encoded frame (without its delimiter)."""
    if len(encoded) > max_encoded_size(max_payload):
        return Rejection.OVERSIZE
    payload = cobs_decode(encoded)
    if payload is None:
        return Rejection.MALFORMED
    if len(payload) > max_payload:
        return Rejection.OVERSIZE
    return parse_payload(payload)


@dataclass
class DecoderCounters:
    frames: int = 0
    crc_errors: int = 0
    malformed: int = 0
    oversize: int = 0
    garbage_bytes: int = 0


class FrameDecoder:
    """Turns a byte stream into frames; never raises on bad bytes, counts them instead.

    The start of the stream counts as a frame boundary. Partial frames are kept across feed()
    calls; a run longer than the largest valid frame is dropped up to the next delimiter.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.counters = DecoderCounters()
        self._max_payload = max_payload
        self._max_encoded = max_encoded_size(max_payload)
        self._pending = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[Frame]:
        if DELIMITER not in data:
            self._buffer_partial(data)
            return []
        first, *complete, rest = data.split(DELIMITER)
        frames: list[Frame] = []
        self._finish_pending(first, frames)
        for encoded in complete:
            self._take(encoded, frames)
        self._buffer_partial(rest)
        return frames

    def _buffer_partial(self, data: bytes) -> None:
        if self._discarding:
            self.counters.garbage_bytes += len(data)
            return
        self._pending += data
        if len(self._pending) > self._max_encoded:
            self.counters.oversize += 1
            self.counters.garbage_bytes += len(self._pending)
            self._pending.clear()
            self._discarding = True

    def _finish_pending(self, tail: bytes, frames: list[Frame]) -> None:
        if self._discarding:
            self.counters.garbage_bytes += len(tail)
            self._discarding = False
            return
        encoded = bytes(self._pending) + tail if self._pending else tail
        self._pending.clear()
        self._take(encoded, frames)

    def _take(self, encoded: bytes, frames: list[Frame]) -> None:
        if not encoded:
            return
        result = decode_frame(encoded, self._max_payload)
        if isinstance(result, Rejection):
            self._count(result)
            self.counters.garbage_bytes += len(encoded)
        else:
            self.counters.frames += 1
            frames.append(result)

    def _count(self, rejection: Rejection) -> None:
        if rejection is Rejection.CRC:
            self.counters.crc_errors += 1
        elif rejection is Rejection.MALFORMED:
            self.counters.malformed += 1
        else:
            self.counters.oversize += 1
