"""Demodulation band chosen from the data, and the squared-envelope spectrum of that band.

A bearing defect strikes at its defect rate and each strike rings a structural resonance, often
kilohertz high. The strikes are impulsive, so the band where the signal is most impulsive (the
largest spectral kurtosis) is where to demodulate (Antoni, "Fast computation of the kurtogram",
MSSP 21 (2007)). The search here is a simplified fast kurtogram: the binary levels of the
kurtogram (bands of width Nyquist / 2^k) plus the same bands shifted by half a width, down to the
narrowest band that still holds the first sidebands of the highest defect line. Each band is cut
from one FFT of the window; its analytic signal is the band's spectrum with the negative
frequencies removed and the positive ones doubled, which is what scipy.signal.hilbert computes
for the band-passed signal, done for every band at once with one inverse FFT per band.

The kurtosis of a band's complex envelope c is E|c|^4 / (E|c|^2)^2 - 2: 0 for Gaussian noise,
large for a train of impulses. Estimated from a short window, a narrow band's kurtosis is noisy:
its standard deviation under Gaussian noise is about 2 / sqrt(B T) (B T, bandwidth times
duration, counts its independent samples), so the highest raw kurtosis among many narrow bands
is often chance (on CWRU's healthy recording, a 750 Hz band at the anti-aliasing edge won most
windows). The band chosen is the one whose kurtosis stands highest in those units, kurtosis x
sqrt(B T). The squared envelope's spectrum (Randall and Antoni 2011, Smith and Randall 2015) of
that band and of the whole band (Smith and Randall's plain envelope analysis, which needs no
choice) are both searched for defect lines (lines.py); verdict.py keeps the stronger finding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from appliance.records import FloatArray

ComplexArray = npt.NDArray[np.complex128]


@dataclass(frozen=True)
class Band:
    low_hz: float
    high_hz: float
    kurtosis: float


@dataclass(frozen=True)
class EnvelopeSpectrum:
    band: Band
    freqs: FloatArray
    magnitude: FloatArray
    """|FFT| of the squared envelope (mean removed), one-sided."""


def candidate_bands(rate: float, min_width_hz: float, max_level: int = 6) -> FloatArray:
    """(bands, 2) [low, high) edges: halvings of 0..Nyquist, each also shifted by half a width."""
    nyquist = rate / 2
    edges: list[tuple[float, float]] = [(0.0, nyquist)]
    for level in range(1, max_level + 1):
        width = nyquist / 2**level
        if width < min_width_hz:
            break
        starts = np.arange(0.0, nyquist - width + 1e-9, width / 2)
        edges.extend((float(start), float(start + width)) for start in starts)
    return np.array(edges)


def band_envelopes(signal: FloatArray, rate: float, bands: FloatArray) -> ComplexArray:
    """(bands, samples) complex envelopes: the analytic signal of each band-passed copy."""
    count = len(signal)
    spectrum = np.fft.fft(signal - np.mean(signal))
    freqs = np.fft.fftfreq(count, 1.0 / rate)
    inside = (freqs[None, :] >= bands[:, :1]) & (freqs[None, :] < bands[:, 1:])
    inside &= freqs[None, :] > 0
    return np.fft.ifft(np.where(inside, 2.0 * spectrum[None, :], 0.0), axis=1)


def envelope_kurtosis(envelopes: ComplexArray) -> FloatArray:
    """Spectral kurtosis per band: E|c|^4 / (E|c|^2)^2 - 2 (0 for Gaussian noise)."""
    power = np.abs(envelopes) ** 2
    mean_power = np.mean(power, axis=1)
    safe = np.where(mean_power > 0, mean_power, 1.0)
    return np.where(mean_power > 0, np.mean(power**2, axis=1) / safe**2 - 2.0, 0.0)


def envelope_spectra(
    signal: FloatArray, rate: float, min_width_hz: float, max_level: int = 6
) -> list[EnvelopeSpectrum]:
    """Squared-envelope spectra of the most impulsive candidate band and of the whole band (one
    spectrum when they are the same band)."""
    bands = candidate_bands(rate, min_width_hz, max_level)
    envelopes = band_envelopes(signal, rate, bands)
    kurtosis = envelope_kurtosis(envelopes)
    independent = (bands[:, 1] - bands[:, 0]) * len(signal) / rate
    best = int(np.argmax(kurtosis * np.sqrt(independent)))
    chosen = [best] if best == 0 else [best, 0]
    return [
        _squared_envelope_spectrum(envelopes[index], rate, bands[index], kurtosis[index])
        for index in chosen
    ]


def band_envelope_spectrum(signal: FloatArray, rate: float, band: Band) -> EnvelopeSpectrum:
    """The squared-envelope spectrum of one band (a finding's, for the status page)."""
    edges = np.array([[band.low_hz, band.high_hz]])
    envelope = band_envelopes(signal, rate, edges)[0]
    return _squared_envelope_spectrum(envelope, rate, edges[0], band.kurtosis)


def _squared_envelope_spectrum(
    envelope: ComplexArray, rate: float, edges: FloatArray, kurtosis: float
) -> EnvelopeSpectrum:
    squared = np.abs(envelope) ** 2
    magnitude = np.abs(np.fft.rfft(squared - np.mean(squared))) / len(squared)
    return EnvelopeSpectrum(
        band=Band(float(edges[0]), float(edges[1]), float(kurtosis)),
        freqs=np.fft.rfftfreq(len(squared), 1.0 / rate).astype(np.float64),
        magnitude=magnitude,
    )
