"""Feature-engine settings, channel descriptions and the feature names they imply.

Feature names are part of a model bundle's manifest, so everything that decides them lives here:
`feature_names` gives the same names in the same order for the same channels and settings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from appliance.errors import ConfigError
from appliance.records import FloatArray

Band = tuple[float, float]
Detrend = Literal["constant", "linear", "none"]
Scaling = Literal["density", "spectrum"]

DEFAULT_BAND_COUNT = 5
"""Default bands split 0..Nyquist into this many equal widths (100 Hz wide at 1 kHz)."""

VIBRATION_FEATURES = (
    "mean",
    "std",
    "rms",
    "peak",
    "crest_factor",
    "excess_kurtosis",
    "spectral_energy",
    "dominant_freq_hz",
)
"""Per vibration channel, followed by one `band_<lo>_<hi>hz` feature per band."""

SLOW_FEATURES = ("mean", "std", "min", "max", "slope")


def window_coefficients(name: str, nperseg: int) -> FloatArray:
    """scipy.signal.get_window(name, nperseg): the periodic window Welch uses.

    The Hann window is computed here because importing scipy.signal costs ~65 MB of RSS on the
    gateway; any other window name falls back to scipy (and validates the name).
    """
    if name == "hann":
        hann: FloatArray = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(nperseg) / nperseg)
        return hann
    from scipy.signal import get_window

    return np.asarray(get_window(name, nperseg), dtype=np.float64)


@dataclass(frozen=True)
class FeatureSettings:
    """How windows are cut and spectra estimated; the defaults are the shipped configuration.

    `bands_hz` None means `default_bands` of each channel's Nyquist frequency. Welch uses one-sided
    spectra only: the inputs are real, so the negative frequencies carry no extra information.
    """

    window_s: float = 5.0
    stride_s: float = 1.0
    nperseg: int = 256
    noverlap: int = 128
    bands_hz: tuple[Band, ...] | None = None
    slow_window_s: float = 60.0
    welch_window: str = "hann"
    detrend: Detrend = "constant"
    scaling: Scaling = "density"

    def __post_init__(self) -> None:
        _require(_positive(self.window_s), "features.window_s", "must be > 0")
        _require(_positive(self.stride_s), "features.stride_s", "must be > 0")
        _require(_positive(self.slow_window_s), "features.slow_window_s", "must be > 0")
        _require(self.nperseg >= 2, "features.nperseg", "must be >= 2")
        _require(0 <= self.noverlap < self.nperseg, "features.noverlap", "must be in [0, nperseg)")
        _require(
            self.detrend in ("constant", "linear", "none"),
            "features.detrend",
            "must be constant, linear or none",
        )
        _require(
            self.scaling in ("density", "spectrum"),
            "features.scaling",
            "must be density or spectrum",
        )
        try:
            window_coefficients(self.welch_window, self.nperseg)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"features.welch_window: {exc}") from exc
        for lo, hi in self.bands_hz or ():
            _require(0 <= lo < hi, "features.bands_hz", f"band ({lo}, {hi}) needs 0 <= lo < hi")

    @property
    def hop(self) -> int:
        """Samples between the starts of consecutive Welch segments."""
        return self.nperseg - self.noverlap


@dataclass(frozen=True)
class ChannelSpec:
    """One input channel of an asset. Vibration channels get spectra, the others window stats."""

    name: str
    rate: float
    vibration: bool


def default_bands(nyquist_hz: float) -> tuple[Band, ...]:
    """Equal-width bands covering 0..Nyquist (0-100, 100-200, ... 400-500 Hz at 1 kHz)."""
    width = nyquist_hz / DEFAULT_BAND_COUNT
    return tuple((i * width, (i + 1) * width) for i in range(DEFAULT_BAND_COUNT))


def channel_bands(settings: FeatureSettings, rate: float) -> tuple[Band, ...]:
    """The bands of a vibration channel at `rate`; configured bands must fit below its Nyquist."""
    nyquist = rate / 2.0
    bands = settings.bands_hz if settings.bands_hz is not None else default_bands(nyquist)
    for lo, hi in bands:
        _require(
            hi <= nyquist,
            "features.bands_hz",
            f"band ({lo}, {hi}) Hz is above the Nyquist frequency of a {rate} Hz channel",
        )
    return bands


def band_feature_name(band: Band) -> str:
    """`band_100_200hz`; fractional edges use `p` for the point (`band_62p5_125hz`)."""
    lo, hi = band
    return f"band_{_format_hz(lo)}_{_format_hz(hi)}hz"


def channel_feature_names(spec: ChannelSpec, settings: FeatureSettings) -> tuple[str, ...]:
    if not spec.vibration:
        return tuple(f"{spec.name}.{feature}" for feature in SLOW_FEATURES)
    bands = channel_bands(settings, spec.rate)
    features = VIBRATION_FEATURES + tuple(band_feature_name(band) for band in bands)
    return tuple(f"{spec.name}.{feature}" for feature in features)


def feature_names(channels: Sequence[ChannelSpec], settings: FeatureSettings) -> tuple[str, ...]:
    """All feature names of an asset: channels in the given order, features in a fixed order."""
    return tuple(name for spec in channels for name in channel_feature_names(spec, settings))


def validate_channels(channels: Sequence[ChannelSpec], settings: FeatureSettings) -> None:
    """Raise ConfigError unless the channels can be windowed with these settings."""
    _require(len(channels) > 0, "channels", "an asset needs at least one channel")
    names = [spec.name for spec in channels]
    _require(len(set(names)) == len(names), "channels", f"duplicate channel names in {names}")
    for spec in channels:
        key = f"channels.{spec.name}"
        _require(
            bool(spec.name) and "." not in spec.name, key, "name must be non-empty without '.'"
        )
        _require(_positive(spec.rate), key, "rate must be > 0")
        if spec.vibration:
            _require(
                round(settings.window_s * spec.rate) >= settings.nperseg,
                key,
                f"window_s * rate must hold at least nperseg={settings.nperseg} samples",
            )
            _require(round(settings.stride_s * spec.rate) >= 1, key, "stride is under one sample")
            channel_bands(settings, spec.rate)


def _format_hz(value: float) -> str:
    text = f"{value:.6g}"
    return text.replace(".", "p")


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")
