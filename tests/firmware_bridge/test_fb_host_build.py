"""Build the firmware's frame code for the host with gcc and hold it to the shared vectors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge import codec
from firmware_bridge.codec import FrameDecoder, HelloFrame, SamplesFrame
from firmware_bridge.sequence import SequenceCheck, SequenceTracker
from firmware_bridge.vectors import Vector

FIRMWARE_DIR = Path(codec.__file__).parent / "firmware"


@pytest.fixture(scope="module")
def frame_host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None or shutil.which("make") is None:
        pytest.fail("gcc and make are needed to build the firmware's host program")
    build_dir = tmp_path_factory.mktemp("frame_host")
    subprocess.run(
        ["make", "-s", "-C", str(FIRMWARE_DIR), "host", f"BUILD_DIR={build_dir}", "CC=gcc"],
        check=True,
        capture_output=True,
    )
    return build_dir / "frame_host"


def run(frame_host: Path, *args: str) -> bytes:
    return subprocess.run([str(frame_host), *args], check=True, capture_output=True).stdout


def test_c_encoder_matches_every_encodable_vector(
    frame_host: Path, good_vectors: list[Vector]
) -> None:
    lines = run(frame_host, "vectors").decode().splitlines()
    produced = dict(line.split(" ") for line in lines)
    assert produced == {v["name"]: v["wire_hex"] for v in good_vectors}


def synthetic_count(sample_index: int, channel: int) -> int:
    """Same formula as host_main.c; the C side computes it in uint32 arithmetic."""
    return ((sample_index * 7919 + channel * 104_729) % 2**32) % 2**20 - 2**19


def test_c_stream_decodes_contiguously_across_seq_wrap(frame_host: Path) -> None:
    n_frames, first_seq = 200, 2**32 - 50
    decoder = FrameDecoder()
    frames = decoder.feed(run(frame_host, "stream", str(n_frames), str(first_seq)))
    assert decoder.counters.frames == n_frames + 1
    assert decoder.counters.garbage_bytes == 0
    assert frames[0] == HelloFrame(first_seq, 1000, 1, "frame_host synthetic")
    tracker = SequenceTracker()
    assert [tracker.check(frame) for frame in frames] == [SequenceCheck()] * (n_frames + 1)
    assert frames[-1].seq == (first_seq + n_frames) % 2**32
    for index, frame in enumerate(frames[1:]):
        assert isinstance(frame, SamplesFrame)
        assert (frame.rate_hz, frame.channel_ids) == (1000, (0, 1, 2))
        assert frame.mcu_time_us == 1000 + index * 32_000
        assert frame.scale == float(np.float32(3.9e-6))
        expected = [[synthetic_count(index * 32 + s, c) for c in range(3)] for s in range(32)]
        assert frame.counts.tolist() == expected


def fifo_entry(count: int, x_marker: bool = False, empty: bool = False) -> str:
    raw = (count & 0xFFFFF) << 4 | (1 if x_marker else 0) | (2 if empty else 0)
    return raw.to_bytes(3, "big").hex()


def test_adxl355_fifo_parsing(frame_host: Path) -> None:
    entries = [
        fifo_entry(123),  # a z entry left over from an overrun: skipped
        fifo_entry(2**19 - 1, x_marker=True),
        fifo_entry(-1),
        fifo_entry(-(2**19)),
        fifo_entry(256000, x_marker=True),
        fifo_entry(0),
        fifo_entry(-256000),
        fifo_entry(0, x_marker=True, empty=True),  # FIFO ran empty: stop here
        fifo_entry(0),
        fifo_entry(0),
    ]
    output = run(frame_host, "adxl355", "".join(entries)).decode().splitlines()
    assert output == [f"{2**19 - 1} -1 {-(2**19)}", "256000 0 -256000"]
