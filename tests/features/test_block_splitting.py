"""Property: the vectors depend on the samples, not on how they were split into blocks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.features import AssetFeatures, ChannelSpec, FeatureSettings
from appliance.records import FeatureVector

from .signals import random_noise, sines_with_harmonics, split_into_blocks

RATE = 1000.0
T0 = 1_700_000_000.0
TOTAL = 2_000
# Small windows so that one example runs many strides quickly.
SETTINGS = FeatureSettings(window_s=0.5, stride_s=0.1, nperseg=64, noverlap=32)
CHANNELS = [ChannelSpec("x", RATE, True), ChannelSpec("y", RATE, True)]
SIGNALS = {"x": random_noise(TOTAL, 1), "y": sines_with_harmonics(TOTAL, RATE, 2)}


def run(patterns: dict[str, list[int]]) -> list[FeatureVector]:
    """Push both channels split by their patterns, blocks arriving in order of their end time."""
    blocks = [
        block
        for name, pattern in patterns.items()
        for block in split_into_blocks("m", name, SIGNALS[name], RATE, T0, pattern)
    ]
    blocks.sort(key=lambda block: block.t_end)
    engine = AssetFeatures("m", CHANNELS, SETTINGS)
    return [vector for block in blocks for vector in engine.push(block)]


REFERENCE = run({"x": [50], "y": [50]})

block_patterns = st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(x_pattern=block_patterns, y_pattern=block_patterns)
def test_any_split_gives_the_same_vectors(x_pattern: list[int], y_pattern: list[int]) -> None:
    vectors = run({"x": x_pattern, "y": y_pattern})

    assert len(vectors) == len(REFERENCE) == 16
    for actual, expected in zip(vectors, REFERENCE, strict=True):
        assert actual.names == expected.names
        assert actual.window_end == pytest.approx(expected.window_end, abs=1e-6)
        np.testing.assert_allclose(actual.values, expected.values, rtol=1e-12, atol=1e-15)
