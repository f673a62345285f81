"""CWRU recordings: manifest, loading, blocks and the real feature path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.evaluation.cwru import (
    CWRU_RATE_HZ,
    Recording,
    load_recording,
    read_cwru_manifest,
    recording_features,
    sample_blocks,
    split_recording,
    vibration_settings,
)
from appliance.evaluation.skab import EvaluationError
from appliance.features import AssetFeatures, ChannelSpec
from appliance.records import SampleBlock

HEALTHY = "normal_0_97_DE_part1.npy"


def noise(samples: int, rate: float = 1000.0) -> Recording:
    return Recording("noise", rate, np.random.default_rng(7).standard_normal(samples))


def test_manifest_lists_the_three_fault_recordings(cwru_dir: Path) -> None:
    entries = read_cwru_manifest(cwru_dir / "manifest.csv")

    assert sorted(entry.label for entry in entries) == ["ball", "inner_race", "outer_race"]
    assert all(entry.rate == CWRU_RATE_HZ and entry.fault_diameter_in == 0.007 for entry in entries)
    for entry in entries:
        assert len(load_recording(cwru_dir / entry.file).samples) == entry.samples


def test_manifest_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "manifest.csv"
    path.write_text(
        "file,label,fault_diameter_in,load_hp,rpm,n_samples,fs_hz\na.npy,ball,x,0,1,2,3\n"
    )

    with pytest.raises(EvaluationError, match=r"manifest\.csv: line 2"):
        read_cwru_manifest(path)


def test_recording_loads_as_float64_named_after_the_file(cwru_dir: Path) -> None:
    recording = load_recording(cwru_dir / HEALTHY)

    assert recording.name == "normal_0_97_DE_part1"
    assert recording.samples.dtype == np.float64
    assert recording.samples.shape == (146_000,)
    assert recording.rate == CWRU_RATE_HZ


@pytest.mark.parametrize(
    ("array", "problem"),
    [(np.zeros((2, 2)), "1-d numeric"), (np.array([1.0, np.nan]), "non-finite")],
)
def test_unusable_arrays_are_refused(tmp_path: Path, array: np.ndarray, problem: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array)

    with pytest.raises(EvaluationError, match=problem):
        load_recording(path)


def test_split_keeps_every_sample_once() -> None:
    recording = noise(1000)

    head, tail = split_recording(recording, 0.75)

    assert (len(head.samples), len(tail.samples)) == (750, 250)
    assert np.array_equal(np.concatenate([head.samples, tail.samples]), recording.samples)
    assert (head.name, tail.name) == ("noise_head", "noise_tail")


def test_blocks_are_consecutive_and_cover_the_recording() -> None:
    recording = noise(2500)

    blocks = list(sample_blocks(recording, block_samples=1000))

    assert [len(block.samples) for block in blocks] == [1000, 1000, 500]
    assert [block.t0 for block in blocks] == [0.0, 1.0, 2.0]
    assert np.array_equal(np.concatenate([b.samples for b in blocks]), recording.samples)


def test_features_equal_the_engine_fed_directly() -> None:
    recording = noise(5000)
    settings = vibration_settings(window_s=1.0, stride_s=0.5)

    series = recording_features(recording, settings, block_samples=333)

    engine = AssetFeatures("direct", [ChannelSpec("accel", 1000.0, vibration=True)], settings)
    direct = engine.push(SampleBlock("direct", "accel", 0.0, 1000.0, recording.samples))
    assert len(series.features) == len(direct) == 9  # (5 s - 1 s window) / 0.5 s stride + 1
    assert np.array_equal(series.features, np.vstack([vector.values for vector in direct]))
    assert series.feature_names == engine.feature_names
    # Each block's t0 re-anchors the clock, so the times agree to rounding only.
    assert series.window_ends == pytest.approx([vector.window_end for vector in direct])


def test_recording_shorter_than_a_window_is_an_error() -> None:
    with pytest.raises(EvaluationError, match=r"shorter than one 1\.0 s window"):
        recording_features(noise(900), vibration_settings(window_s=1.0, stride_s=0.5))


def test_impossible_settings_are_an_evaluation_error() -> None:
    # 0.1 s at 1 kHz holds fewer samples than one Welch segment (256).
    with pytest.raises(EvaluationError, match="nperseg"):
        recording_features(noise(5000), vibration_settings(window_s=0.1, stride_s=0.1))
