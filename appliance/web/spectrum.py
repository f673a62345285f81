"""GET /api/spectrum and /api/spectrum/<asset>/<channel>: a vibration channel's latest Welch PSD
with the healthy baseline behind it (features/spectra.py), the bands its features integrate, and
the shaft-speed harmonics when the asset's `speed_rpm` is configured.

A wrong asset or a channel that is not one of its vibration channels is a 404 naming the known
ones; a channel whose first window is not complete yet answers `"psd": null` with the reason.
Each channel's answer is built (the PSD summed, the JSON encoded) once per window and its
baseline's update, by the first client asking, and served to every other one (`SpectrumAnswers`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from appliance.config.assets import AssetConfig
from appliance.features.spectra import ChannelSpectrum
from appliance.web.history import CHARTS, asset_config, counted, refused

MAX_HARMONICS = 20
Stamp = tuple[float, int] | None
"""Spectra.stamp: the window (and baseline) an answer is of."""


class SpectrumAnswers:
    """The newest encoded answer of each (asset, channel) with the stamp it was built at. Built
    and kept without awaiting, so clients asking at once never build it twice. One entry per
    vibration channel (the routes check the channel first)."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str], tuple[Stamp, bytes]] = {}
        self.built = 0
        """Answers built so far (a bench and the tests read it)."""

    def get(self, key: tuple[str, str], stamp: Stamp, build: Callable[[], bytes]) -> bytes:
        found = self._answers.get(key)
        if found is None or found[0] != stamp:
            found = (stamp, build())
            self._answers[key] = found
            self.built += 1
        return found[1]


ANSWERS: web.AppKey[SpectrumAnswers] = web.AppKey("spectrum_answers", SpectrumAnswers)


def add_routes(app: web.Application) -> None:
    """After history.add_routes, which stores the sources these routes read."""
    app[ANSWERS] = SpectrumAnswers()
    app.router.add_get("/api/spectrum", _index)
    app.router.add_get("/api/spectrum/{asset}/{channel}", counted(_channel_spectrum))


async def _index(request: web.Request) -> web.Response:
    channels = request.app[CHARTS].spectra.channels()
    return web.json_response({"assets": [{"name": a, "channels": c} for a, c in channels.items()]})


async def _channel_spectrum(request: web.Request) -> web.Response:
    sources = request.app[CHARTS]
    asset = asset_config(sources, request.match_info["asset"])
    channel = request.match_info["channel"]
    known = sources.spectra.channels().get(asset.name, [])
    if channel not in known:
        names = ", ".join(known) or "none"
        raise refused(
            f"{asset.name!r} has no vibration channel {channel[:64]!r} (channels: {names})",
            web.HTTPNotFound,
        )
    unit = next(c.unit for c in asset.channels if c.name == channel)
    stamp = sources.spectra.stamp(asset.name, channel)

    def build() -> bytes:
        spectrum = sources.spectra.latest(asset.name, channel)
        if spectrum is None:
            return json.dumps(no_spectrum(asset.name, channel)).encode()
        return json.dumps(spectrum_body(spectrum, asset, unit)).encode()

    body = request.app[ANSWERS].get((asset.name, channel), stamp, build)
    return web.Response(body=body, content_type="application/json")


def no_spectrum(asset: str, channel: str) -> dict[str, Any]:
    return {
        "asset": asset,
        "channel": channel,
        "psd": None,
        "reason": "no complete window of this channel yet (starting, or sensor stalled)",
    }


def spectrum_body(spectrum: ChannelSpectrum, asset: AssetConfig, unit: str) -> dict[str, Any]:
    density = spectrum.scaling == "density"
    return {
        "asset": spectrum.asset,
        "channel": spectrum.channel,
        "window_end": spectrum.window_end,
        "rate_hz": spectrum.rate,
        "unit": unit,
        "psd_unit": f"{unit}²/Hz" if density else f"{unit}²",
        "freqs_hz": _finite(spectrum.freqs),
        "psd": _finite(spectrum.psd),
        "baseline": None if spectrum.baseline is None else _finite(spectrum.baseline),
        "baseline_windows": spectrum.baseline_windows,
        "bands_hz": [[lo, hi] for lo, hi in spectrum.bands],
        "speed_rpm": asset.speed_rpm,
        "harmonics_hz": harmonics(asset.speed_rpm, spectrum.rate / 2.0),
    }


def harmonics(speed_rpm: float | None, nyquist_hz: float) -> list[float]:
    """1x, 2x, ... the shaft frequency up to Nyquist (at most MAX_HARMONICS); none without a
    configured speed."""
    if speed_rpm is None:
        return []
    shaft_hz = speed_rpm / 60.0
    count = min(MAX_HARMONICS, math.floor(nyquist_hz / shaft_hz))
    return [shaft_hz * k for k in range(1, count + 1)]


def _finite(values: Iterable[float]) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]
