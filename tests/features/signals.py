"""Test signals and a reference implementation of the documented window geometry."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from scipy.signal import welch

from appliance.features import FeatureSettings
from appliance.records import FloatArray, SampleBlock

IRREGULAR_BLOCK_SIZES = (1, 7, 32, 1000, 13, 333, 2, 999)


def random_noise(samples: int, seed: int) -> FloatArray:
    return np.random.default_rng(seed).standard_normal(samples)


def sines_with_harmonics(samples: int, rate: float, seed: int) -> FloatArray:
    """A 1 g offset, a fundamental with two harmonics, and a little noise."""
    t = np.arange(samples) / rate
    fundamental = rate / 37.0
    signal = 9.81 + 0.8 * np.sin(2 * np.pi * fundamental * t)
    signal += 0.3 * np.sin(2 * np.pi * 2 * fundamental * t + 0.4)
    signal += 0.1 * np.sin(2 * np.pi * 3 * fundamental * t + 1.1)
    return signal + 0.01 * random_noise(samples, seed)


def spikes(samples: int, seed: int) -> FloatArray:
    """Rare large impulses on low noise, like a bearing defect."""
    rng = np.random.default_rng(seed)
    signal = 0.001 * rng.standard_normal(samples)
    hits = rng.choice(samples, size=max(1, samples // 700), replace=False)
    signal[hits] += rng.choice([-1.0, 1.0], size=len(hits)) * rng.uniform(5.0, 20.0, len(hits))
    return signal


def flatline(samples: int, value: float = 0.1) -> FloatArray:
    return np.full(samples, value)


def span_for(boundary: int, window_samples: int, settings: FeatureSettings) -> tuple[int, int]:
    """[start, end) of the window due at stream position `boundary` (the documented geometry)."""
    hop = settings.nperseg - settings.noverlap
    segments = (window_samples - settings.nperseg) // hop + 1
    last = (boundary - settings.nperseg) // hop
    end = last * hop + settings.nperseg
    return end - ((segments - 1) * hop + settings.nperseg), end


def boundaries(samples: int, rate: float, settings: FeatureSettings) -> list[int]:
    window_samples = round(settings.window_s * rate)
    stride = round(settings.stride_s * rate)
    return list(range(window_samples, samples + 1, stride))


def reference_psd(
    samples: FloatArray, rate: float, settings: FeatureSettings
) -> tuple[FloatArray, FloatArray]:
    freqs, psd = welch(
        samples,
        fs=rate,
        window=settings.welch_window,
        nperseg=settings.nperseg,
        noverlap=settings.noverlap,
        detrend=False if settings.detrend == "none" else settings.detrend,
        scaling=settings.scaling,
        return_onesided=True,
    )
    return freqs, psd


def relative_error(actual: FloatArray, expected: FloatArray, floor: float) -> float:
    """max |actual - expected| over max(max |expected|, floor); all-zero must match exactly."""
    scale = max(float(np.abs(expected).max()), floor)
    difference = float(np.abs(actual - expected).max())
    if scale == 0.0:
        return 0.0 if difference == 0.0 else float("inf")
    return difference / scale


def block_sizes(pattern: Sequence[int]) -> Iterator[int]:
    while True:
        yield from pattern


def split_into_blocks(
    asset: str,
    channel: str,
    samples: FloatArray,
    rate: float,
    t0: float,
    pattern: Sequence[int] = IRREGULAR_BLOCK_SIZES,
) -> list[SampleBlock]:
    blocks = []
    position = 0
    sizes = block_sizes(pattern)
    while position < len(samples):
        size = next(sizes)
        piece = samples[position : position + size]
        blocks.append(SampleBlock(asset, channel, t0 + position / rate, rate, piece))
        position += size
    return blocks
