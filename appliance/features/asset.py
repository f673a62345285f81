"""One asset's feature engine: routes sample blocks to rings and emits one FeatureVector per stride.

Emission. An asset with vibration channels emits window e when every vibration channel has been
written up to its boundary N_e = window_samples + e * stride_samples (per channel rate; see
incremental.py for how the window is cut). The window is fixed by N_e, not by how far a channel
has got, so the vectors do not depend on how the stream was split into blocks or on the order in
which the channels' blocks arrive. Channels of one MCU advance together; a channel that is behind
only delays the emission until it passes the boundary.

A stalled channel must not hold the asset hostage (and the rings of the others are finite): when
some channel is a whole window past the pending boundary while another has not reached it, the
one behind is declared stalled. Emissions then go on without waiting for it, its features NaN.
When it delivers samples again it restarts: its stream continues at the position matching the
most advanced channel, on a new segment grid, and its features come back after a full window.

Gaps. A block whose t0 jumps (frames dropped upstream) is taken as contiguous with the previous
samples; the capture layer counts the gap. t0 only re-anchors the clock of the window end times.

Slow channels never hold up an emission: each vector carries their statistics over the slow window
ending at the vector's window_end, [end - slow_window_s, end), NaN if it holds no sample. An
asset with only slow channels emits at the stride boundaries k * stride_s of slow-sample time
(see SlowStrideClock: a gap skips empty windows, a clock set back restarts the slow rings).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from appliance.features.incremental import GroupWindows, IntArray, RateRings
from appliance.features.settings import (
    SLOW_FEATURES,
    ChannelSpec,
    FeatureSettings,
    channel_bands,
    channel_feature_names,
    feature_names,
    validate_channels,
)
from appliance.features.slow import SlowChannel, SlowStrideClock
from appliance.features.welch import SpectrumPlan
from appliance.records import FeatureVector, FloatArray, SampleBlock

RATE_TOLERANCE = 1e-9
"""Relative difference between a block's rate and its channel's rate that is still the same rate."""


@dataclass
class _RateGroup:
    """The vibration channels of one rate: their rings and the asset's bookkeeping of them."""

    rings: RateRings
    stalled: list[bool]
    """Rows left out of emissions until their channel delivers again."""
    feature_offsets: IntArray
    """Index in the feature vector of each row's first feature."""


class AssetFeatures:
    """Feature engine of one asset; pure (no I/O, no clock) and fed by `push`."""

    def __init__(
        self, asset: str, channels: Sequence[ChannelSpec], settings: FeatureSettings
    ) -> None:
        validate_channels(channels, settings)
        self.asset = asset
        self.settings = settings
        self.channels = tuple(channels)
        self.feature_names: tuple[str, ...] = feature_names(channels, settings)
        self._specs = {spec.name: spec for spec in channels}
        self._offsets = _feature_offsets(channels, settings)
        self._vibration_slots: dict[str, tuple[_RateGroup, int]] = {}
        self._groups = self._build_rate_groups(channels)
        self._slow = {
            spec.name: SlowChannel(spec.rate, _slow_capacity_s(settings))
            for spec in channels
            if not spec.vibration
        }
        self._emission = 0
        self._slow_clock = SlowStrideClock(settings.stride_s, settings.slow_window_s)

    @property
    def ring_bytes(self) -> int:
        """Memory held by all rings; fixed at construction."""
        return sum(group.rings.ring_bytes for group in self._groups) + sum(
            channel.ring_bytes for channel in self._slow.values()
        )

    def push(self, block: SampleBlock) -> list[FeatureVector]:
        """Take one block; return the vectors of the strides it completed (often none).

        Raises ValueError if the block is not for one of this asset's channels at its rate.
        """
        spec = self._check_block(block)
        samples = np.asarray(block.samples, dtype=np.float64)
        if samples.ndim != 1:
            raise ValueError(f"{self.asset}/{block.channel}: samples must be one-dimensional")
        if spec.vibration:
            return self._push_vibration(spec, block.t0, samples)
        return self._push_slow(spec, block.t0, samples)

    def _check_block(self, block: SampleBlock) -> ChannelSpec:
        if block.asset != self.asset:
            raise ValueError(f"block for asset {block.asset!r} pushed to asset {self.asset!r}")
        spec = self._specs.get(block.channel)
        if spec is None:
            raise ValueError(f"asset {self.asset!r} has no channel {block.channel!r}")
        if not math.isclose(block.rate, spec.rate, rel_tol=RATE_TOLERANCE):
            raise ValueError(
                f"{self.asset}/{block.channel}: block rate {block.rate} Hz, expected {spec.rate} Hz"
            )
        return spec

    def latest_psd(self, channel: str) -> tuple[SpectrumPlan, FloatArray] | None:
        """The plan (frequencies, scaling) and Welch PSD of `channel`'s last emitted window,
        computed now from the segments kept; None for a slow channel, before the first window
        and while the channel is stalled."""
        slot = self._vibration_slots.get(channel)
        if slot is None or self._emission == 0:
            return None
        group, row = slot
        if group.stalled[row]:
            return None
        return group.rings.plan, group.rings.latest_psd(row)

    # Vibration channels

    def _build_rate_groups(self, channels: Sequence[ChannelSpec]) -> list[_RateGroup]:
        groups = []
        for rate in sorted({spec.rate for spec in channels if spec.vibration}):
            members = [spec for spec in channels if spec.vibration and spec.rate == rate]
            rings = RateRings(
                rate,
                len(members),
                self.settings,
                channel_bands(self.settings, rate),
                lead_limit=round(self.settings.window_s * rate),  # then a lagging channel stalls
            )
            group = _RateGroup(
                rings=rings,
                stalled=[False] * len(members),
                feature_offsets=np.array(
                    [self._offsets[spec.name] for spec in members], dtype=np.int64
                ),
            )
            groups.append(group)
            for row, spec in enumerate(members):
                self._vibration_slots[spec.name] = (group, row)
        return groups

    def _push_vibration(
        self, spec: ChannelSpec, t0: float, samples: FloatArray
    ) -> list[FeatureVector]:
        group, row = self._vibration_slots[spec.name]
        rings = group.rings
        if group.stalled[row] and len(samples):
            self._rejoin(group, row)
        vectors: list[FeatureVector] = []
        # Pieces of at most one stride keep every channel within its ring between emissions.
        piece = rings.geometry.stride_samples
        for offset in range(0, len(samples), piece):
            rings.write(row, samples[offset : offset + piece], t0 + offset / spec.rate)
            if rings.counts[row] >= rings.geometry.boundary(self._emission):
                vectors.extend(self._emit_due_windows())
        return vectors

    def _emit_due_windows(self) -> list[FeatureVector]:
        vectors = []
        while self._window_due():
            vectors.append(self._emit_window())
        return vectors

    def _window_due(self) -> bool:
        """Are all active channels past the pending boundary (after stalling any left behind)?"""
        behind: list[tuple[_RateGroup, int]] = []
        some_channel_overdue = False
        for group in self._groups:
            geometry = group.rings.geometry
            boundary = geometry.boundary(self._emission)
            for row, count in enumerate(group.rings.counts):
                if group.stalled[row]:
                    continue
                if count < boundary:
                    behind.append((group, row))
                elif count >= boundary + group.rings.lead_limit:
                    some_channel_overdue = True
        if behind and not some_channel_overdue:
            return False
        for group, row in behind:
            group.stalled[row] = True
        return True

    def _emit_window(self) -> FeatureVector:
        values = np.full(len(self.feature_names), np.nan)
        window_end = math.nan
        for group in self._groups:
            boundary = group.rings.geometry.boundary(self._emission)
            active_rows = [row for row, stalled in enumerate(group.stalled) if not stalled]
            windows = group.rings.compute_windows(boundary, active_rows)
            matrix = vibration_feature_matrix(group.rings.plan, windows)
            columns = group.feature_offsets[windows.rows][:, None] + np.arange(matrix.shape[1])
            values[columns] = matrix
            # The window end comes from the first channel (lowest rate first) with a full window.
            if math.isnan(window_end) and len(windows.rows):
                window_end = group.rings.window_end_time(int(windows.rows[0]), boundary)
        if math.isnan(window_end):
            window_end = self._any_active_window_end()
        self._fill_slow_values(values, window_end)
        self._emission += 1
        return FeatureVector(self.asset, window_end, self.feature_names, values)

    def _any_active_window_end(self) -> float:
        """Window end on the grid of any active channel, for when none has a full window yet."""
        for group in self._groups:
            for row, stalled in enumerate(group.stalled):
                if not stalled:
                    boundary = group.rings.geometry.boundary(self._emission)
                    return group.rings.window_end_time(row, boundary)
        return math.nan

    def _rejoin(self, group: _RateGroup, row: int) -> None:
        """Restart a stalled channel level with the most advanced active channel."""
        progress_s = max(
            (
                (count - other.rings.geometry.boundary(self._emission)) / other.rings.rate
                for other in self._groups
                for other_row, count in enumerate(other.rings.counts)
                if not other.stalled[other_row]
            ),
            default=0.0,
        )
        rings = group.rings
        position = rings.geometry.boundary(self._emission) + round(progress_s * rings.rate)
        rings.restart(row, max(position, rings.counts[row]))
        group.stalled[row] = False

    # Slow channels

    def _push_slow(self, spec: ChannelSpec, t0: float, samples: FloatArray) -> list[FeatureVector]:
        channel = self._slow[spec.name]
        if self._groups:
            channel.write(t0, samples)
            return []
        vectors: list[FeatureVector] = []
        # Pieces of at most one stride keep the ring holding every window still to be emitted.
        piece = max(1, math.floor(self.settings.stride_s * spec.rate))
        for offset in range(0, len(samples), piece):
            piece_samples = samples[offset : offset + piece]
            piece_t0 = t0 + offset / spec.rate
            piece_last = piece_t0 + (len(piece_samples) - 1) / spec.rate
            if self._slow_clock.observe(piece_t0, piece_last):
                for slow_channel in self._slow.values():
                    slow_channel.clear()
            channel.write(piece_t0, piece_samples)
            for end in self._slow_clock.due_window_ends(self._slow.values()):
                values = np.full(len(self.feature_names), np.nan)
                self._fill_slow_values(values, end)
                vectors.append(FeatureVector(self.asset, end, self.feature_names, values))
        return vectors

    def _fill_slow_values(self, values: FloatArray, window_end: float) -> None:
        for name, channel in self._slow.items():
            start = self._offsets[name]
            stats = channel.window_stats(window_end, self.settings.slow_window_s)
            values[start : start + len(SLOW_FEATURES)] = stats


def vibration_feature_matrix(plan: SpectrumPlan, windows: GroupWindows) -> FloatArray:
    """(channels, features) in the order of settings.VIBRATION_FEATURES, then the bands."""
    moments = windows.moments
    psd = windows.psd
    dominant = np.where(moments.constant, 0.0, plan.dominant_frequency(psd))
    columns = np.column_stack(
        [
            moments.mean,
            moments.std,
            moments.rms,
            moments.peak,
            moments.crest_factor,
            moments.excess_kurtosis,
            plan.spectral_energy(psd),
            dominant,
        ]
    )
    return np.hstack([columns, plan.band_energies(psd)])


def _feature_offsets(channels: Sequence[ChannelSpec], settings: FeatureSettings) -> dict[str, int]:
    """Index in the feature vector of each channel's first feature."""
    offsets = {}
    position = 0
    for spec in channels:
        offsets[spec.name] = position
        position += len(channel_feature_names(spec, settings))
    return offsets


def _slow_capacity_s(settings: FeatureSettings) -> float:
    """The slow window, plus how far slow samples may run ahead of a vibration window's end."""
    return settings.slow_window_s + settings.window_s + 2.0 * settings.stride_s
