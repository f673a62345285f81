"""SequenceTracker: gaps, wrap-around and resets as PROTOCOL.md §4 defines them."""

from __future__ import annotations

import numpy as np

from firmware_bridge.codec import HelloFrame, SamplesFrame
from firmware_bridge.sequence import SequenceCheck, SequenceTracker


def samples(seq: int, time_us: int, n_samples: int = 32) -> SamplesFrame:
    return SamplesFrame(seq, time_us, 1000, (0,), 1.0, np.zeros((n_samples, 1), dtype=np.int32))


def checks(*frames: SamplesFrame | HelloFrame) -> list[SequenceCheck]:
    tracker = SequenceTracker()
    return [tracker.check(frame) for frame in frames]


def test_contiguous_stream_has_no_gaps() -> None:
    assert (
        checks(HelloFrame(0, 5, 1, "fw"), samples(1, 10), samples(2, 42_010))
        == [SequenceCheck()] * 3
    )


def test_gap_counts_frames_and_samples() -> None:
    result = checks(samples(10, 0), samples(13, 96_000, n_samples=16))
    assert result[1] == SequenceCheck(dropped_frames=2, dropped_samples=32)


def test_wrap_is_not_a_gap() -> None:
    assert checks(samples(2**32 - 1, 0), samples(0, 32_000))[1] == SequenceCheck()


def test_gap_across_wrap() -> None:
    assert checks(samples(2**32 - 2, 0), samples(1, 96_000))[1].dropped_frames == 2


def test_hello_after_frames_is_a_reset() -> None:
    assert checks(samples(5, 1_000_000), HelloFrame(0, 900, 2, "fw"))[1] == SequenceCheck(
        reset=True
    )


def test_time_going_backwards_is_a_reset_even_if_seq_looks_fine() -> None:
    assert checks(samples(5, 1_000_000), samples(6, 10))[1] == SequenceCheck(reset=True)


def test_seq_going_backwards_is_a_reset() -> None:
    assert checks(samples(500, 0), samples(3, 32_000))[1] == SequenceCheck(reset=True)
    assert checks(samples(500, 0), samples(500, 32_000))[1] == SequenceCheck(reset=True)


def test_stream_after_reset_is_tracked_from_the_new_seq() -> None:
    result = checks(samples(500, 5_000_000), HelloFrame(0, 10, 1, "fw"), samples(3, 20))
    assert result[2] == SequenceCheck(dropped_frames=2, dropped_samples=64)
