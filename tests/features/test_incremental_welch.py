"""The incremental, batched Welch PSD equals scipy.signal.welch over the documented window span."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from appliance.features import FeatureSettings
from appliance.features.incremental import GroupWindows, RateRings
from appliance.features.settings import default_bands
from appliance.records import FloatArray
from appliance.rig.mcu import MachineSignal

from .signals import (
    block_sizes,
    boundaries,
    flatline,
    random_noise,
    reference_psd,
    relative_error,
    sines_with_harmonics,
    span_for,
    spikes,
)

TOLERANCE = 1e-9


def emulated_machine(n: int, rate: float, seed: int) -> FloatArray:
    """The MCU emulator's machine with a growing imbalance and a bearing defect, quantised to
    the ADXL355's int32 counts as the firmware sends them."""
    machine = MachineSignal(imbalance_growth_per_s=0.1, bearing_amplitude_g=0.05)
    scale = 3.9e-6
    g = machine.render(np.arange(n) / rate, 1, np.random.default_rng(seed))[:, 0]
    counts: FloatArray = np.round(g / scale) * scale
    return counts


SETTINGS = FeatureSettings()

SignalMaker = Callable[[int, float, int], FloatArray]
SIGNALS: dict[str, SignalMaker] = {
    "random": lambda n, rate, seed: random_noise(n, seed),
    "sines": sines_with_harmonics,
    "spikes": lambda n, rate, seed: spikes(n, seed),
    "flatline": lambda n, rate, seed: flatline(n),
    "zeros": lambda n, rate, seed: flatline(n, 0.0),
    "emulated": emulated_machine,
}
# Each row gets its own block pattern (same total per cycle), so rows are written out of step.
ROW_BLOCK_PATTERNS = ((1, 7, 32, 1000), (1000, 32, 7, 1), (13, 333, 2, 692))


def windows_from_rings(
    signals: FloatArray, rate: float, settings: FeatureSettings
) -> list[tuple[int, GroupWindows]]:
    """Drive RateRings as AssetFeatures does: write blocks, take each window once all rows pass."""
    rows, total = signals.shape
    lead_limit = round(settings.window_s * rate)
    rings = RateRings(rate, rows, settings, default_bands(rate / 2), lead_limit)
    stride = round(settings.stride_s * rate)
    patterns = [
        block_sizes(ROW_BLOCK_PATTERNS[row % len(ROW_BLOCK_PATTERNS)]) for row in range(rows)
    ]
    positions = [0] * rows
    emission = 0
    results = []
    while min(positions) < total:
        for row in range(rows):
            size = min(next(patterns[row]), stride)
            rings.write(row, signals[row, positions[row] : positions[row] + size], 0.0)
            positions[row] = min(positions[row] + size, total)
            while min(rings.counts) >= rings.geometry.boundary(emission):
                boundary = rings.geometry.boundary(emission)
                results.append((boundary, rings.compute_windows(boundary, list(range(rows)))))
                emission += 1
    return results


def assert_psd_matches_scipy(
    psd: FloatArray, samples: FloatArray, rate: float, settings: FeatureSettings
) -> None:
    _, expected = reference_psd(samples, rate, settings)
    # Relative to the PSD's peak; a flat line's PSD is rounding noise, so there relative to the
    # signal's power density instead.
    floor = 1e-12 * float(np.mean(samples**2)) / rate
    assert relative_error(psd, expected, floor) <= TOLERANCE
    significant = expected > 1e-6 * expected.max()
    np.testing.assert_allclose(psd[significant], expected[significant], rtol=TOLERANCE)


@pytest.mark.parametrize(("rate", "seconds"), [(1000.0, 30.0), (12000.0, 13.0)])
def test_every_window_matches_scipy_welch(rate: float, seconds: float) -> None:
    total = round(seconds * rate)
    names = list(SIGNALS)
    signals = np.stack([SIGNALS[name](total, rate, seed) for seed, name in enumerate(names)])

    results = windows_from_rings(signals, rate, SETTINGS)

    expected_boundaries = boundaries(total, rate, SETTINGS)
    assert [boundary for boundary, _ in results] == expected_boundaries
    window_samples = round(SETTINGS.window_s * rate)
    for boundary, windows in results:
        assert windows.rows.tolist() == list(range(len(names)))
        start, end = span_for(boundary, window_samples, SETTINGS)
        for row, name in enumerate(names):
            try:
                assert_psd_matches_scipy(windows.psd[row], signals[row, start:end], rate, SETTINGS)
            except AssertionError as error:
                raise AssertionError(f"{name} at {rate} Hz, boundary {boundary}") from error


def test_rings_wrap_around_many_times() -> None:
    """Enough windows that the sample ring and the periodogram ring each wrap several times."""
    rate = 1000.0
    settings = FeatureSettings(window_s=1.0, stride_s=0.25, nperseg=64, noverlap=32)
    total = 40_000
    signal = random_noise(total, seed=11)[None, :]

    results = windows_from_rings(signal, rate, settings)

    geometry = RateRings(rate, 1, settings, default_bands(rate / 2), 1000).geometry
    segments_written = (total - settings.nperseg) // geometry.hop + 1
    assert segments_written > 20 * geometry.segments
    assert len(results) == len(boundaries(total, rate, settings))
    for boundary, windows in results:
        start, end = span_for(boundary, round(settings.window_s * rate), settings)
        assert_psd_matches_scipy(windows.psd[0], signal[0, start:end], rate, settings)


@pytest.mark.parametrize(
    "settings",
    [
        FeatureSettings(nperseg=100, noverlap=30),  # hop does not divide nperseg
        FeatureSettings(nperseg=255, noverlap=0),  # odd nperseg: no Nyquist bin
        FeatureSettings(welch_window="hamming", detrend="linear", scaling="spectrum"),
        FeatureSettings(detrend="none", window_s=2.0, stride_s=0.3),
    ],
    ids=["hop-70", "odd-nperseg", "hamming-linear-spectrum", "no-detrend"],
)
def test_other_welch_settings_match_scipy(settings: FeatureSettings) -> None:
    rate = 1000.0
    total = 12_000
    signals = np.stack([sines_with_harmonics(total, rate, 3), random_noise(total, 4)])

    results = windows_from_rings(signals, rate, settings)

    assert len(results) == len(boundaries(total, rate, settings))
    for boundary, windows in results:
        start, end = span_for(boundary, round(settings.window_s * rate), settings)
        for row in range(2):
            assert_psd_matches_scipy(windows.psd[row], signals[row, start:end], rate, settings)


def test_comparison_detects_a_window_one_hop_off() -> None:
    """The tolerance is tight enough that a misplaced window would fail the comparison."""
    rate = 1000.0
    total = 9000
    signal = random_noise(total, seed=5)
    boundary, windows = windows_from_rings(signal[None, :], rate, SETTINGS)[-1]
    start, end = span_for(boundary, round(SETTINGS.window_s * rate), SETTINGS)
    hop = SETTINGS.hop

    with pytest.raises(AssertionError):
        assert_psd_matches_scipy(windows.psd[0], signal[start + hop : end + hop], rate, SETTINGS)
