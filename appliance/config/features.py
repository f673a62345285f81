"""The [features] table: window, stride and Welch segments, and the bounds on what they allocate."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from appliance.config.fields import Strict

MAX_WINDOW_SAMPLES = 1 << 22
"""Samples in one vibration window (e.g. 40 s at 100 kHz): the rings and per-segment spectra of
every channel are sized from it, so it bounds the feature engine's memory."""
MAX_SEGMENTS_PER_WINDOW = 4096
MAX_SPECTRUM_VALUES = 1 << 23
"""Welch segments per window times frequency bins per segment: the per-segment spectra kept."""


class FeaturesConfig(Strict):
    window_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    stride_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    nperseg: Annotated[int, Field(ge=8, le=65536)] = 256
    noverlap: Annotated[int, Field(ge=0)] = 128
    bands_hz: (
        list[Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=2, max_length=2)]]
        | None
    ) = None
    """Band-energy edges [[lo, hi], ...] in Hz; default: bands scaled to each channel's Nyquist."""
    slow_window_s: Annotated[float, Field(gt=0, le=86400)] = 60.0

    @model_validator(mode="after")
    def _check_segments(self) -> FeaturesConfig:
        if self.noverlap >= self.nperseg:
            raise ValueError(
                f"noverlap ({self.noverlap}) must be smaller than nperseg ({self.nperseg})"
            )
        if self.stride_s > self.window_s:
            raise ValueError(
                f"stride_s ({self.stride_s}) must not exceed window_s ({self.window_s})"
            )
        for i, (lo, hi) in enumerate(self.bands_hz or []):
            if lo >= hi:
                raise ValueError(f"bands_hz[{i}]: lower edge {lo} must be below upper edge {hi}")
        return self
