"""Gap and reset detection for one MCU stream, as PROTOCOL.md §4 specifies. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.codec import Frame, HelloFrame, SamplesFrame

SEQ_MODULUS = 1 << 32
_BACKWARDS = 1 << 31


@dataclass(frozen=True, slots=True)
class SequenceCheck:
    """What one frame says about the frames before it."""

    dropped_frames: int = 0
    dropped_samples: int = 0
    reset: bool = False


class SequenceTracker:
    """Follows seq and mcu_time_us of one stream; feed it every good frame in arrival order."""

    def __init__(self) -> None:
        self._last_seq: int | None = None
        self._last_time_us = 0

    def check(self, frame: Frame) -> SequenceCheck:
        last_seq, last_time_us = self._last_seq, self._last_time_us
        self._last_seq, self._last_time_us = frame.seq, frame.mcu_time_us
        if isinstance(frame, HelloFrame):
            return SequenceCheck(reset=last_seq is not None)
        if last_seq is None:
            return SequenceCheck()
        gap = (frame.seq - last_seq - 1) % SEQ_MODULUS
        if gap >= _BACKWARDS or frame.mcu_time_us < last_time_us:
            return SequenceCheck(reset=True)
        return SequenceCheck(gap, gap * samples_per_frame(frame))


def samples_per_frame(frame: SamplesFrame) -> int:
    return int(frame.counts.shape[0])
