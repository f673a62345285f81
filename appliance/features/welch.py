"""Welch periodograms of many segments at once, and the spectral features taken from a PSD.

`SpectrumPlan.periodograms` applies exactly the per-segment steps of scipy.signal.welch (detrend,
window, rfft, scale, double the one-sided bins), so the mean of the periodograms of a window's
segments is scipy's Welch PSD of that window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.features.settings import Band, Detrend, FeatureSettings, window_coefficients
from appliance.records import FloatArray


@dataclass(frozen=True)
class SpectrumPlan:
    """Everything fixed about the spectra of channels sampled at one rate."""

    rate: float
    nperseg: int
    window: FloatArray
    scale: float
    detrend: Detrend
    freqs: FloatArray
    band_weights: FloatArray
    """(bands, bins): band energy = psd @ band_weights.T."""
    bin_weight: float
    """Integration weight of one bin: df for a density, 1 for a power spectrum."""

    @classmethod
    def create(
        cls, settings: FeatureSettings, rate: float, bands: tuple[Band, ...]
    ) -> SpectrumPlan:
        window = window_coefficients(settings.welch_window, settings.nperseg)
        if settings.scaling == "density":
            scale = 1.0 / (rate * float((window * window).sum()))
            bin_weight = rate / settings.nperseg
        else:
            scale = 1.0 / float(window.sum()) ** 2
            bin_weight = 1.0
        freqs = np.fft.rfftfreq(settings.nperseg, 1.0 / rate).astype(np.float64)
        return cls(
            rate=rate,
            nperseg=settings.nperseg,
            window=window,
            scale=scale,
            detrend=settings.detrend,
            freqs=freqs,
            band_weights=band_weight_matrix(freqs, bands, bin_weight),
            bin_weight=bin_weight,
        )

    @property
    def bins(self) -> int:
        return len(self.freqs)

    def periodograms(self, segments: FloatArray) -> FloatArray:
        """One-sided periodograms of the rows of `segments` (shape (n, nperseg) -> (n, bins))."""
        if self.detrend == "constant":
            detrended = segments - segments.mean(axis=-1, keepdims=True)
        elif self.detrend == "linear":
            from scipy.signal import detrend as scipy_detrend

            detrended = scipy_detrend(segments, type="linear", axis=-1)
        else:
            detrended = segments
        spectra = np.fft.rfft(detrended * self.window, axis=-1)
        power: FloatArray = (spectra.real**2 + spectra.imag**2) * self.scale
        # The DC bin and, for an even nperseg, the Nyquist bin have no mirror image to fold in.
        last = -1 if self.nperseg % 2 == 0 else None
        power[:, 1:last] *= 2.0
        return power

    def spectral_energy(self, psd: FloatArray) -> FloatArray:
        """Integral of each row's PSD over all frequencies (rectangle rule)."""
        energy: FloatArray = psd.sum(axis=-1) * self.bin_weight
        return energy

    def band_energies(self, psd: FloatArray) -> FloatArray:
        """(channels, bins) -> (channels, bands)."""
        energies: FloatArray = psd @ self.band_weights.T
        return energies

    def dominant_frequency(self, psd: FloatArray) -> FloatArray:
        """Frequency of the largest bin above DC (the first one on a tie)."""
        peak_bins = np.argmax(psd[:, 1:], axis=-1) + 1
        dominant: FloatArray = self.freqs[peak_bins]
        return dominant


def band_weight_matrix(freqs: FloatArray, bands: tuple[Band, ...], bin_weight: float) -> FloatArray:
    """Weights that sum the bins with lo <= f < hi (f <= hi for a band ending at Nyquist)."""
    nyquist = freqs[-1] if len(freqs) else 0.0
    weights = np.zeros((len(bands), len(freqs)))
    for row, (lo, hi) in enumerate(bands):
        upper = freqs <= hi if hi >= nyquist else freqs < hi
        weights[row, (freqs >= lo) & upper] = bin_weight
    return weights
