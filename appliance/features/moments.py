"""Time-domain window statistics assembled from per-chunk central moments.

A window is a run of equal-sized chunks. Each chunk's mean and central moment sums are computed
once, when the chunk is complete; a window's statistics combine them exactly (the parallel-moments
identity: shift each chunk's sums from its own mean to the window mean). Central sums, rather than
raw power sums, keep the kurtosis accurate when the mean is large against the spread, as with an
accelerometer axis carrying 1 g.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from appliance.records import FloatArray

BoolArray = npt.NDArray[np.bool_]

MOMENT_FIELDS = 6
MEAN, M2, M3, M4, MAX, MIN = range(MOMENT_FIELDS)

CONSTANT_RELATIVE_STD = 1e-12
"""A window whose std is below this fraction of its peak |x| is a flat line (rounding noise)."""


@dataclass(frozen=True)
class WindowMoments:
    """Statistics of each channel's window (all arrays have shape (channels,))."""

    mean: FloatArray
    std: FloatArray
    rms: FloatArray
    peak: FloatArray
    crest_factor: FloatArray
    excess_kurtosis: FloatArray
    constant: BoolArray


def chunk_moments(chunks: FloatArray) -> FloatArray:
    """(n, chunk) samples -> (n, MOMENT_FIELDS): mean, central sums of powers 2..4, max, min."""
    stats = np.empty((chunks.shape[0], MOMENT_FIELDS))
    mean = chunks.mean(axis=-1)
    deviation = chunks - mean[:, None]
    squared = deviation * deviation
    stats[:, MEAN] = mean
    stats[:, M2] = squared.sum(axis=-1)
    stats[:, M3] = (squared * deviation).sum(axis=-1)
    stats[:, M4] = (squared * squared).sum(axis=-1)
    stats[:, MAX] = chunks.max(axis=-1)
    stats[:, MIN] = chunks.min(axis=-1)
    return stats


def combine_moments(stats: FloatArray, chunk_size: int) -> WindowMoments:
    """(channels, chunks, MOMENT_FIELDS) of equal-sized chunks -> each channel's window stats.

    std is the population std (ddof 0). Kurtosis is Fisher's (excess: 0 for a normal
    distribution); a flat-line window has no defined kurtosis and reports 0, and its crest
    factor (peak / rms) is 1 as for any constant, including all-zero.
    """
    count = stats.shape[1] * chunk_size
    chunk_means = stats[:, :, MEAN]
    mean = chunk_means.mean(axis=-1)
    shift = chunk_means - mean[:, None]
    shift2 = shift * shift
    m2 = stats[:, :, M2].sum(axis=-1) + chunk_size * shift2.sum(axis=-1)
    m4 = (
        stats[:, :, M4].sum(axis=-1)
        + 4.0 * (shift * stats[:, :, M3]).sum(axis=-1)
        + 6.0 * (shift2 * stats[:, :, M2]).sum(axis=-1)
        + chunk_size * (shift2 * shift2).sum(axis=-1)
    )
    variance = m2 / count
    std = np.sqrt(variance)
    peak = np.maximum(stats[:, :, MAX].max(axis=-1), -stats[:, :, MIN].min(axis=-1))
    rms = np.sqrt(variance + mean * mean)
    constant = std <= CONSTANT_RELATIVE_STD * peak
    safe_variance = np.where(constant, 1.0, variance)
    safe_rms = np.where(rms > 0.0, rms, 1.0)
    return WindowMoments(
        mean=mean,
        std=std,
        rms=rms,
        peak=peak,
        crest_factor=np.where(rms > 0.0, peak / safe_rms, 1.0),
        excess_kurtosis=np.where(constant, 0.0, (m4 / count) / safe_variance**2 - 3.0),
        constant=constant,
    )
