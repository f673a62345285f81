"""AssetFeatures: names, emission on stride boundaries, features against direct computation."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import kurtosis

from appliance.features import AssetFeatures, ChannelSpec, FeatureSettings
from appliance.features.settings import default_bands
from appliance.records import FeatureVector, FloatArray, SampleBlock

from .signals import (
    boundaries,
    flatline,
    random_noise,
    reference_psd,
    sines_with_harmonics,
    span_for,
    spikes,
    split_into_blocks,
)

T0 = 1_700_000_000.0
SETTINGS = FeatureSettings()
TOLERANCE = 1e-9


def push_all(engine: AssetFeatures, blocks: list[SampleBlock]) -> list[FeatureVector]:
    vectors = []
    for block in blocks:
        vectors.extend(engine.push(block))
    return vectors


def interleave(*streams: list[SampleBlock]) -> list[SampleBlock]:
    """Blocks of several channels in arrival order: one block of each channel in turn."""
    merged: list[SampleBlock] = []
    for index in range(max(len(stream) for stream in streams)):
        merged.extend(stream[index] for stream in streams if index < len(stream))
    return merged


def expected_vibration_features(window: FloatArray, rate: float) -> dict[str, float]:
    """The documented features, computed directly with numpy and scipy."""
    freqs, psd = reference_psd(window, rate, SETTINGS)
    df = freqs[1] - freqs[0]
    rms = float(np.sqrt(np.mean(window**2)))
    peak = float(np.abs(window).max())
    expected = {
        "mean": float(window.mean()),
        "std": float(window.std()),
        "rms": rms,
        "peak": peak,
        "crest_factor": peak / rms,
        "excess_kurtosis": float(kurtosis(window, fisher=True, bias=True)),
        "spectral_energy": float(psd.sum() * df),
        "dominant_freq_hz": float(freqs[1 + np.argmax(psd[1:])]),
    }
    for lo, hi in default_bands(rate / 2):
        upper = freqs <= hi if hi >= freqs[-1] else freqs < hi
        name = f"band_{lo:.6g}_{hi:.6g}hz".replace(".", "p")
        expected[name] = float(psd[(freqs >= lo) & upper].sum() * df)
    return expected


def assert_channel_matches(
    vector: FeatureVector, channel: str, window: FloatArray, rate: float
) -> None:
    values = vector.as_dict()
    for feature, expected in expected_vibration_features(window, rate).items():
        actual = values[f"{channel}.{feature}"]
        assert actual == pytest.approx(expected, rel=TOLERANCE, abs=1e-12), f"{channel}.{feature}"


def test_feature_names_are_channel_dot_feature_in_a_fixed_order() -> None:
    engine = AssetFeatures(
        "pump",
        [ChannelSpec("accel_x", 1000.0, True), ChannelSpec("bearing_temp", 1.0, False)],
        SETTINGS,
    )

    assert engine.feature_names == (
        "accel_x.mean",
        "accel_x.std",
        "accel_x.rms",
        "accel_x.peak",
        "accel_x.crest_factor",
        "accel_x.excess_kurtosis",
        "accel_x.spectral_energy",
        "accel_x.dominant_freq_hz",
        "accel_x.band_0_100hz",
        "accel_x.band_100_200hz",
        "accel_x.band_200_300hz",
        "accel_x.band_300_400hz",
        "accel_x.band_400_500hz",
        "bearing_temp.mean",
        "bearing_temp.std",
        "bearing_temp.min",
        "bearing_temp.max",
        "bearing_temp.slope",
    )


def test_default_bands_scale_with_nyquist_and_configured_bands_are_named_in_hz() -> None:
    fast = AssetFeatures("m", [ChannelSpec("accel", 12000.0, True)], SETTINGS)
    configured = AssetFeatures(
        "m",
        [ChannelSpec("accel", 1000.0, True)],
        FeatureSettings(bands_hz=((10.0, 62.5), (62.5, 500.0))),
    )

    fast_bands = [name for name in fast.feature_names if ".band_" in name]
    assert fast_bands == [
        "accel.band_0_1200hz",
        "accel.band_1200_2400hz",
        "accel.band_2400_3600hz",
        "accel.band_3600_4800hz",
        "accel.band_4800_6000hz",
    ]
    assert configured.feature_names[-2:] == ("accel.band_10_62p5hz", "accel.band_62p5_500hz")


@pytest.mark.parametrize(
    "make_signal",
    [
        lambda n, rate: random_noise(n, 1),
        lambda n, rate: sines_with_harmonics(n, rate, 2),
        lambda n, rate: spikes(n, 3),
    ],
    ids=["random", "sines", "spikes"],
)
def test_each_stride_emits_one_vector_matching_direct_computation(
    make_signal: Callable[[int, float], FloatArray],
) -> None:
    rate = 1000.0
    total = 12_345
    signals = {"accel_x": make_signal(total, rate), "accel_y": random_noise(total, 9)}
    engine = AssetFeatures("m", [ChannelSpec(name, rate, True) for name in signals], SETTINGS)
    streams = [split_into_blocks("m", name, x, rate, T0) for name, x in signals.items()]

    vectors = push_all(engine, interleave(*streams))

    expected_boundaries = boundaries(total, rate, SETTINGS)
    assert len(vectors) == len(expected_boundaries) == 8
    for vector, boundary in zip(vectors, expected_boundaries, strict=True):
        assert vector.asset == "m"
        assert vector.names == engine.feature_names
        start, end = span_for(boundary, 5000, SETTINGS)
        assert vector.window_end == pytest.approx(T0 + end / rate, abs=1e-6)
        for name, x in signals.items():
            assert_channel_matches(vector, name, x[start:end], rate)


def test_rates_above_1_khz_and_mixed_rates_in_one_asset() -> None:
    seconds = 7.5
    fast_rate, slow_rate = 12000.0, 1000.0
    fast = sines_with_harmonics(round(seconds * fast_rate), fast_rate, 4)
    slow = random_noise(round(seconds * slow_rate), 5)
    engine = AssetFeatures(
        "m",
        [ChannelSpec("accel_hf", fast_rate, True), ChannelSpec("accel_lf", slow_rate, True)],
        SETTINGS,
    )
    streams = [
        split_into_blocks("m", "accel_hf", fast, fast_rate, T0, pattern=(1200, 12, 1000)),
        split_into_blocks("m", "accel_lf", slow, slow_rate, T0, pattern=(100, 1, 99)),
    ]

    vectors = push_all(engine, interleave(*streams))

    assert len(vectors) == 3
    for emission, vector in enumerate(vectors):
        fast_span = span_for(60000 + emission * 12000, 60000, SETTINGS)
        slow_span = span_for(5000 + emission * 1000, 5000, SETTINGS)
        assert_channel_matches(vector, "accel_hf", fast[slice(*fast_span)], fast_rate)
        assert_channel_matches(vector, "accel_lf", slow[slice(*slow_span)], slow_rate)


def test_vectors_do_not_depend_on_block_sizes_or_channel_lag() -> None:
    rate = 1000.0
    total = 11_000
    x, y = random_noise(total, 1), sines_with_harmonics(total, rate, 2)
    channels = [ChannelSpec("x", rate, True), ChannelSpec("y", rate, True)]

    lockstep = push_all(
        AssetFeatures("m", channels, SETTINGS),
        interleave(
            split_into_blocks("m", "x", x, rate, T0, pattern=(100,)),
            split_into_blocks("m", "y", y, rate, T0, pattern=(100,)),
        ),
    )
    # x's blocks arrive 3 s early (within one window), and in other sizes than y's.
    x_blocks = split_into_blocks("m", "x", x, rate, T0, pattern=(1, 999, 7, 2993, 13))
    y_blocks = split_into_blocks("m", "y", y, rate, T0, pattern=(32, 968))
    arrival = sorted(
        [(block.t_end - 3.0, block) for block in x_blocks] + [(b.t_end, b) for b in y_blocks],
        key=lambda pair: pair[0],
    )
    lagging = AssetFeatures("m", channels, SETTINGS)
    pushed = {"x": 0, "y": 0}
    late: list[FeatureVector] = []
    waited_for_y = False
    for _, block in arrival:
        pending_boundary = 5000 + 1000 * len(late)
        vectors = lagging.push(block)
        pushed[block.channel] += len(block.samples)
        waited_for_y |= pushed["x"] >= pending_boundary > pushed["y"]
        if vectors:
            assert min(pushed.values()) >= pending_boundary + 1000 * (len(vectors) - 1)
        late.extend(vectors)

    assert waited_for_y
    assert len(late) == len(lockstep) == 7
    for a, b in zip(late, lockstep, strict=True):
        assert a.window_end == pytest.approx(b.window_end, abs=1e-6)
        np.testing.assert_allclose(a.values, b.values, rtol=1e-12, atol=1e-15)


def test_a_stalled_channel_is_dropped_then_rejoins_after_a_full_window() -> None:
    rate = 1000.0
    # y is a ramp of its own sample time, so its window mean shows which samples it holds.
    x, y = random_noise(40_000, 1), np.arange(40_000) / rate
    engine = AssetFeatures(
        "m", [ChannelSpec("x", rate, True), ChannelSpec("y", rate, True)], SETTINGS
    )
    x_blocks = split_into_blocks("m", "x", x, rate, T0, pattern=(100,))
    y_blocks = split_into_blocks("m", "y", y, rate, T0, pattern=(100,))

    # Both for 10 s, then y goes silent for 20 s, then comes back for the last 10 s.
    vectors = push_all(engine, interleave(x_blocks[:100], y_blocks[:100]))
    vectors += push_all(engine, x_blocks[100:300])
    vectors += push_all(engine, interleave(x_blocks[300:], y_blocks[300:]))

    ends = [vector.window_end - T0 for vector in vectors]
    expected_ends = [
        span_for(b, 5000, SETTINGS)[1] / rate for b in boundaries(40_000, rate, SETTINGS)
    ]
    assert ends == pytest.approx(expected_ends, abs=1e-6)
    y_rms = np.array([vector.as_dict()["y.rms"] for vector in vectors])
    x_rms = np.array([vector.as_dict()["x.rms"] for vector in vectors])
    assert np.all(np.isfinite(x_rms))
    assert np.all(np.isfinite(y_rms[:6]))  # windows ending by 10 s
    missing = np.flatnonzero(np.isnan(y_rms))
    # Dropped once x was a window ahead; back a full window after its samples resumed at 30 s.
    assert missing[0] == 6
    assert missing[-1] < len(vectors) - 1
    assert ends[missing[-1] + 1] >= 35.0
    assert np.all(np.isfinite(y_rms[missing[-1] + 1 :]))
    # Rejoined level with x: y's windows hold the samples of x's windows, give or take one
    # block (arrival order) and one hop (y restarted on its own segment grid).
    span_s = span_for(5000, 5000, SETTINGS)[1] / rate
    for vector in vectors[missing[-1] + 1 :]:
        x_window_centre = vector.window_end - T0 - span_s / 2
        assert vector.as_dict()["y.mean"] == pytest.approx(x_window_centre, abs=0.1 + 0.128)


def test_a_stalled_channel_at_another_rate_does_not_stop_the_asset() -> None:
    engine = AssetFeatures(
        "m", [ChannelSpec("hf", 12000.0, True), ChannelSpec("lf", 1000.0, True)], SETTINGS
    )
    hf_blocks = split_into_blocks("m", "hf", random_noise(12000 * 30, 1), 12000.0, T0, (1200,))
    lf_blocks = split_into_blocks("m", "lf", random_noise(30_000, 2), 1000.0, T0, (100,))

    # hf is silent from 8 s to 20 s.
    vectors = push_all(engine, interleave(hf_blocks[:80], lf_blocks[:80]))
    vectors += push_all(engine, lf_blocks[80:200])
    vectors += push_all(engine, interleave(hf_blocks[200:], lf_blocks[200:]))

    hf_missing = [math.isnan(vector.as_dict()["hf.rms"]) for vector in vectors]
    assert len(vectors) == 26
    assert not any(math.isnan(vector.as_dict()["lf.rms"]) for vector in vectors)
    # Windows ending by 8 s have hf; it is back a full window after it resumed at 20 s.
    assert hf_missing == [False] * 4 + [True] * 16 + [False] * 6


def test_a_jump_in_t0_is_treated_as_contiguous_samples() -> None:
    rate = 1000.0
    x = random_noise(8000, 3)
    contiguous = push_all(
        AssetFeatures("m", [ChannelSpec("x", rate, True)], SETTINGS),
        split_into_blocks("m", "x", x, rate, T0, pattern=(500,)),
    )
    gappy_blocks = split_into_blocks("m", "x", x, rate, T0, pattern=(500,))
    gap = 2.5
    gappy_blocks[8:] = [
        SampleBlock(b.asset, b.channel, b.t0 + gap, b.rate, b.samples) for b in gappy_blocks[8:]
    ]
    gappy = push_all(AssetFeatures("m", [ChannelSpec("x", rate, True)], SETTINGS), gappy_blocks)

    assert len(gappy) == len(contiguous) == 4
    for a, b in zip(gappy, contiguous, strict=True):
        np.testing.assert_array_equal(a.values, b.values)
        # Every window is taken after the jump, so its end time follows the re-anchored clock.
        assert a.window_end == pytest.approx(b.window_end + gap, abs=1e-6)


def test_flat_and_zero_signals_give_defined_features() -> None:
    rate = 1000.0
    engine = AssetFeatures(
        "m", [ChannelSpec("flat", rate, True), ChannelSpec("zero", rate, True)], SETTINGS
    )
    blocks = interleave(
        split_into_blocks("m", "flat", flatline(6000, 0.1), rate, T0),
        split_into_blocks("m", "zero", flatline(6000, 0.0), rate, T0),
    )

    values = push_all(engine, blocks)[-1].as_dict()

    assert values["flat.mean"] == pytest.approx(0.1, rel=1e-12)
    assert values["flat.std"] == pytest.approx(0.0, abs=1e-15)
    assert values["flat.crest_factor"] == pytest.approx(1.0, rel=1e-12)
    assert values["flat.excess_kurtosis"] == 0.0
    assert values["flat.dominant_freq_hz"] == 0.0
    assert values["zero.rms"] == 0.0
    assert values["zero.crest_factor"] == 1.0
    assert values["zero.excess_kurtosis"] == 0.0
    assert values["zero.spectral_energy"] == 0.0


def test_kurtosis_stays_accurate_under_a_large_offset() -> None:
    """Central chunk moments: an offset of 1000x the spread must not swamp the kurtosis."""
    rate = 1000.0
    x = 9.81 + 0.01 * spikes(6000, 8) / 0.001
    engine = AssetFeatures("m", [ChannelSpec("x", rate, True)], SETTINGS)

    vector = push_all(engine, split_into_blocks("m", "x", x, rate, T0))[-1]

    start, end = span_for(6000, 5000, SETTINGS)
    expected = kurtosis(x[start:end], fisher=True, bias=True)
    assert vector.as_dict()["x.excess_kurtosis"] == pytest.approx(expected, rel=1e-9)
    assert expected > 10.0


def test_ring_memory_is_fixed() -> None:
    rate = 1000.0
    engine = AssetFeatures(
        "m", [ChannelSpec("x", rate, True), ChannelSpec("t", 1.0, False)], SETTINGS
    )
    before = engine.ring_bytes

    for block in split_into_blocks("m", "x", random_noise(60_000, 1), rate, T0):
        engine.push(block)
    for second in range(120):
        engine.push(SampleBlock("m", "t", T0 + second, 1.0, np.array([20.0])))

    assert engine.ring_bytes == before
    assert before < 300_000


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (SampleBlock("m", "nope", T0, 1000.0, np.zeros(3)), "no channel"),
        (SampleBlock("other", "x", T0, 1000.0, np.zeros(3)), "asset"),
        (SampleBlock("m", "x", T0, 1024.0, np.zeros(3)), "rate"),
        (SampleBlock("m", "x", T0, 1000.0, np.zeros((3, 2))), "one-dimensional"),
    ],
)
def test_blocks_that_do_not_belong_raise_value_error(block: SampleBlock, message: str) -> None:
    engine = AssetFeatures("m", [ChannelSpec("x", 1000.0, True)], SETTINGS)

    with pytest.raises(ValueError, match=message):
        engine.push(block)


def test_window_end_is_last_segment_sample_time_plus_one_period() -> None:
    rate = 1000.0
    engine = AssetFeatures("m", [ChannelSpec("x", rate, True)], SETTINGS)

    vectors = push_all(engine, split_into_blocks("m", "x", random_noise(5000, 1), rate, T0))

    assert len(vectors) == 1
    # K = 38 segments, last one starts at 37 * 128: samples 0..4991, last at T0 + 4.991 s.
    assert vectors[0].window_end == pytest.approx(T0 + 4.992, abs=1e-6)
    assert np.all(np.isfinite(vectors[0].values))
