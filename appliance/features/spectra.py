"""The latest Welch PSD of each vibration channel, and a healthy baseline spectrum behind it.

Nothing is copied per window: the engines keep the periodograms of their last window's segments
anyway (incremental.py), so the latest PSD is computed from them when someone asks (the status
page, a few times a minute at most). The baseline is the running mean of the PSDs of windows the
detector scored normal while no alarm was up: before a block goes to an engine, the window it
emitted last is folded in once its score has arrived (the detect stage scores a window well before
the next one is due). After BASELINE_WINDOWS windows the mean becomes an exponential one over
about that many, so a slowly changing machine keeps a current baseline. An asset that is
commissioning or has no model has no scores, so no baseline yet. The baselines are saved with
the detector states (one state of kind BASELINE_STATE per asset, a few KB, every minute and at
shutdown) and restored at start, so a restart does not lose them.

Pure: owned by the feature stage (one task), read by the web layer on the same event loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from appliance.features.asset import AssetFeatures
from appliance.features.settings import Band, channel_bands
from appliance.features.welch import SpectrumPlan
from appliance.records import FeatureVector, FloatArray, Score

BASELINE_WINDOWS = 600
BASELINE_STATE = "spectrum_baseline"
"""The detector-state kind an asset's baselines are saved under."""
StateKey = tuple[str, str]


@dataclass(frozen=True)
class ChannelSpectrum:
    """One channel's latest PSD (unit²/Hz for a density, unit² for a power spectrum)."""

    asset: str
    channel: str
    window_end: float
    rate: float
    scaling: str
    freqs: FloatArray
    psd: FloatArray
    baseline: FloatArray | None
    """Mean PSD of the windows scored normal; None until one was."""
    baseline_windows: int
    bands: tuple[Band, ...]
    """The bands whose energies are features of this channel, in Hz."""


@dataclass
class _Baseline:
    mean: FloatArray
    windows: int = 1

    def add(self, psd: FloatArray) -> None:
        self.windows += 1
        self.mean += (psd - self.mean) / min(self.windows, BASELINE_WINDOWS)


class Spectra:
    """Latest and baseline spectra of every vibration channel of `engines`."""

    def __init__(self, engines: Mapping[str, AssetFeatures]) -> None:
        self._engines = engines
        vibration = [
            (asset, spec.name, engine)
            for asset, engine in engines.items()
            for spec in engine.channels
            if spec.vibration
        ]
        self._energy_index = {
            (asset, name): engine.feature_names.index(f"{name}.spectral_energy")
            for asset, name, engine in vibration
        }
        self._bins = {
            (asset, name): engine.settings.nperseg // 2 + 1 for asset, name, engine in vibration
        }
        self._channels: dict[str, list[str]] = {}
        for asset, channel in self._energy_index:
            self._channels.setdefault(asset, []).append(channel)
        self._latest: dict[str, FeatureVector] = {}
        self._folded: dict[str, float] = {}
        self._baselines: dict[tuple[str, str], _Baseline] = {}

    def channels(self) -> dict[str, list[str]]:
        """Vibration channels by asset, in configuration order."""
        return {asset: list(channels) for asset, channels in self._channels.items()}

    def emitted(self, vector: FeatureVector) -> None:
        """The feature stage emitted `vector` (kept by reference, not copied)."""
        self._latest[vector.asset] = vector

    def learn(self, asset: str, score: Score | None, alarmed: bool) -> None:
        """Before the asset's engine takes a block: fold its last window into the baseline if
        `score` is that window's and normal and no alarm is up (once per window)."""
        vector = self._latest.get(asset)
        if vector is None or score is None or score.anomalous or alarmed:
            return
        if score.t != vector.window_end or self._folded.get(asset) == vector.window_end:
            return
        self._folded[asset] = vector.window_end
        for channel in self._channels.get(asset, []):
            found = self._window_psd(asset, channel)
            if found is None or not np.all(np.isfinite(found[1])):
                continue
            baseline = self._baselines.get((asset, channel))
            if baseline is None:
                self._baselines[asset, channel] = _Baseline(found[1].copy())
            else:
                baseline.add(found[1])

    def to_states(self) -> dict[StateKey, dict[str, object]]:
        """Each asset's baselines as a detector state: {"channels": {name: {"windows", "mean"}}}."""
        by_asset: dict[str, dict[str, object]] = {}
        for (asset, channel), baseline in self._baselines.items():
            entry = {"windows": baseline.windows, "mean": baseline.mean.tolist()}
            by_asset.setdefault(asset, {})[channel] = entry
        return {(asset, BASELINE_STATE): {"channels": c} for asset, c in by_asset.items()}

    def restore(self, states: Mapping[StateKey, Mapping[str, object]]) -> list[str]:
        """Take the baselines `to_states` saved; returns the channels ("asset/channel") whose
        saved baseline no longer fits (another nperseg, a bad value) and was dropped."""
        dropped = []
        for (asset, channel), bins in self._bins.items():
            saved = states.get((asset, BASELINE_STATE), {}).get("channels")
            entry = saved.get(channel) if isinstance(saved, dict) else None
            if entry is None:
                continue
            baseline = _saved_baseline(entry, bins)
            if baseline is None:
                dropped.append(f"{asset}/{channel}")
            else:
                self._baselines[asset, channel] = baseline
        return dropped

    def stamp(self, asset: str, channel: str) -> tuple[float, int] | None:
        """What `latest` depends on, without computing it: (the last window's end, the windows
        in the channel's baseline); None before the first window. A reader may keep one answer
        per stamp (the status page does: one PSD per window, whatever the number of clients)."""
        vector = self._latest.get(asset)
        if vector is None:
            return None
        baseline = self._baselines.get((asset, channel))
        return vector.window_end, 0 if baseline is None else baseline.windows

    def latest(self, asset: str, channel: str) -> ChannelSpectrum | None:
        """The channel's latest spectrum; None for a channel without one yet (or unknown)."""
        found = self._window_psd(asset, channel)
        if found is None:
            return None
        plan, psd = found
        engine = self._engines[asset]
        baseline = self._baselines.get((asset, channel))
        return ChannelSpectrum(
            asset=asset,
            channel=channel,
            window_end=self._latest[asset].window_end,
            rate=plan.rate,
            scaling=engine.settings.scaling,
            freqs=plan.freqs,
            psd=psd,
            baseline=None if baseline is None else baseline.mean.copy(),
            baseline_windows=0 if baseline is None else baseline.windows,
            bands=channel_bands(engine.settings, plan.rate),
        )

    def _window_psd(self, asset: str, channel: str) -> tuple[SpectrumPlan, FloatArray] | None:
        """The PSD of the last emitted window, if that window had the channel's spectrum."""
        index = self._energy_index.get((asset, channel))
        vector = self._latest.get(asset)
        if index is None or vector is None or math.isnan(vector.values[index]):
            return None
        return self._engines[asset].latest_psd(channel)


def _saved_baseline(entry: object, bins: int) -> _Baseline | None:
    """A saved baseline if it is one for `bins` frequency bins; None otherwise."""
    if not isinstance(entry, dict):
        return None
    windows, mean = entry.get("windows"), entry.get("mean")
    if not isinstance(windows, int) or windows < 1 or not isinstance(mean, list):
        return None
    if len(mean) != bins or not all(isinstance(v, (int, float)) for v in mean):
        return None
    values = np.array(mean, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        return None
    return _Baseline(values, windows)
