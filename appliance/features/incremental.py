"""Incremental Welch PSD and time-domain moments over fixed-size per-channel rings.

Segment grid. Segments live on a grid fixed to each channel's stream: segment j starts at sample
`origin + j * hop` (hop = nperseg - noverlap), where `origin` is the position of the channel's first
sample (or of its last restart, see AssetFeatures). Positions count samples since the channel
started.

Windows. Emission e of a channel sampled at `rate` happens at the stream boundary
`N_e = window_samples + e * stride_samples`. Its window is the latest K complete segments at N_e,

    K = (window_samples - nperseg) // hop + 1,

that is the samples x[first_segment_start : last_segment_end], a span of (K - 1) * hop + nperseg
samples ending at most hop - 1 samples before N_e. scipy.signal.welch over exactly those samples
with the same parameters splits them into the same K segments and so returns the same PSD. The
window's end time is the time of the last sample of the last segment + 1 / rate.

Why a grid and not windows aligned to the stride: a stride of 1000 samples is not a multiple of a
hop of 128, so a window starting at a stride boundary would cut segments at new offsets every time
and nothing could be reused. On the grid a segment is the same segment in every window holding it:
each emission computes only the periodograms of segments new since the last one (one rfft batched
over every channel of the group), keeps the last K in a ring, and the window PSD is the mean over
that ring.

Time-domain features (mean, std, rms, peak, crest factor, kurtosis) are computed over the same
span. The span is cut into chunks of gcd(hop, nperseg) samples; each chunk's central moments are
computed once and kept in a second ring, and a window combines its chunks (see moments.py).

Memory is fixed at construction: a sample ring, a periodogram ring and a moment ring per channel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided

from appliance.features.moments import (
    MOMENT_FIELDS,
    WindowMoments,
    chunk_moments,
    combine_moments,
)
from appliance.features.settings import Band, FeatureSettings
from appliance.features.welch import SpectrumPlan
from appliance.records import FloatArray

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class WindowGeometry:
    """Sample counts of windows, strides, segments and chunks for one sample rate."""

    window_samples: int
    stride_samples: int
    nperseg: int
    hop: int
    segments: int
    span: int
    chunk: int

    @classmethod
    def create(cls, settings: FeatureSettings, rate: float) -> WindowGeometry:
        window_samples = round(settings.window_s * rate)
        hop = settings.hop
        segments = (window_samples - settings.nperseg) // hop + 1
        return cls(
            window_samples=window_samples,
            stride_samples=round(settings.stride_s * rate),
            nperseg=settings.nperseg,
            hop=hop,
            segments=segments,
            span=(segments - 1) * hop + settings.nperseg,
            chunk=math.gcd(hop, settings.nperseg),
        )

    @property
    def chunks(self) -> int:
        """Chunks per window span."""
        return self.span // self.chunk

    def boundary(self, emission: int) -> int:
        """Stream position at which emission `emission` (0, 1, ...) is due."""
        return self.window_samples + emission * self.stride_samples

    def last_segment(self, boundary: int, origin: int) -> int:
        """Index on the grid at `origin` of the last segment ending at or before `boundary`."""
        return (boundary - origin - self.nperseg) // self.hop

    def span_end(self, boundary: int, origin: int) -> int:
        """Stream position just after the last sample of the window at `boundary`."""
        return origin + self.last_segment(boundary, origin) * self.hop + self.nperseg


@dataclass(frozen=True)
class GroupWindows:
    """The windows computed at one boundary: one row per channel that had a full window."""

    rows: IntArray
    psd: FloatArray
    moments: WindowMoments


@dataclass(frozen=True)
class _Run:
    """Rows whose new segments (or chunks) sit at the same stream positions: one strided read."""

    position: int
    first_index: int
    count: int
    rows: list[int]


class RateRings:
    """Rings of the vibration channels of one asset that share a sample rate, one row each.

    Per-row counters are plain lists: they are touched on every pushed block, where numpy scalar
    access would cost more than the arithmetic.
    """

    def __init__(
        self,
        rate: float,
        channel_count: int,
        settings: FeatureSettings,
        bands: tuple[Band, ...],
        lead_limit: int,
    ) -> None:
        """`lead_limit`: how far (samples) past a pending boundary a channel may be written."""
        self.rate = rate
        self.lead_limit = lead_limit
        self.plan = SpectrumPlan.create(settings, rate, bands)
        self.geometry = WindowGeometry.create(settings, rate)
        geometry = self.geometry
        self.capacity = geometry.span + geometry.hop + geometry.stride_samples + lead_limit
        self._samples = np.zeros((channel_count, self.capacity))
        self._psd_ring = np.zeros((channel_count, geometry.segments, self.plan.bins))
        self._moment_ring = np.zeros((channel_count, geometry.chunks, MOMENT_FIELDS))
        self.counts = [0] * channel_count
        """Samples written to each row since its channel started (its stream position)."""
        self._origins = [0] * channel_count
        self._next_segment = [0] * channel_count
        self._next_chunk = [0] * channel_count
        self._anchor_times = [0.0] * channel_count
        self._anchor_positions = [0] * channel_count

    @property
    def ring_bytes(self) -> int:
        return self._samples.nbytes + self._psd_ring.nbytes + self._moment_ring.nbytes

    def write(self, row: int, samples: FloatArray, t0: float) -> None:
        """Append up to `capacity` samples to a row; `t0` is the time of the first one.

        Samples are taken as contiguous with the previous ones whatever `t0` says (the capture
        layer counts gaps); `t0` only re-anchors the clock used for window end times.
        """
        count = self.counts[row]
        start = count % self.capacity
        stop = start + len(samples)
        if stop <= self.capacity:
            self._samples[row, start:stop] = samples
        else:
            head = self.capacity - start
            self._samples[row, start:] = samples[:head]
            self._samples[row, : stop - self.capacity] = samples[head:]
        self._anchor_times[row] = t0
        self._anchor_positions[row] = count
        self.counts[row] = count + len(samples)

    def restart(self, row: int, position: int) -> None:
        """Forget a row's samples; its stream continues at `position` on a new grid."""
        self.counts[row] = position
        self._origins[row] = position
        self._next_segment[row] = 0
        self._next_chunk[row] = 0
        self._anchor_positions[row] = position

    def window_end_time(self, row: int, boundary: int) -> float:
        end = self.geometry.span_end(boundary, self._origins[row])
        return self._anchor_times[row] + (end - self._anchor_positions[row]) / self.rate

    def compute_windows(self, boundary: int, rows: Sequence[int]) -> GroupWindows:
        """Windows at `boundary` of `rows` (each written up to `boundary` or beyond).

        Rows whose grid does not yet hold K segments before `boundary` are left out.
        """
        geometry = self.geometry
        full_rows = []
        segment_runs: dict[tuple[int, int, int], list[int]] = {}
        chunk_runs: dict[tuple[int, int, int], list[int]] = {}
        for row in rows:
            origin = self._origins[row]
            last = geometry.last_segment(boundary, origin)
            first = last - geometry.segments + 1
            if first < 0:
                continue
            self._check_still_in_ring(row, origin + first * geometry.hop)
            full_rows.append(row)
            new_segment = max(self._next_segment[row], first)
            key = (origin + new_segment * geometry.hop, new_segment, last + 1 - new_segment)
            segment_runs.setdefault(key, []).append(row)
            self._next_segment[row] = last + 1
            end_chunk = (last * geometry.hop + geometry.nperseg) // geometry.chunk
            new_chunk = max(self._next_chunk[row], first * geometry.hop // geometry.chunk)
            key = (origin + new_chunk * geometry.chunk, new_chunk, end_chunk - new_chunk)
            chunk_runs.setdefault(key, []).append(row)
            self._next_chunk[row] = end_chunk
        self._update_periodograms(_runs(segment_runs))
        self._update_moments(_runs(chunk_runs))
        row_index = np.array(full_rows, dtype=np.int64)
        return GroupWindows(
            rows=row_index,
            psd=self._psd_ring[row_index].sum(axis=1) / geometry.segments,
            moments=combine_moments(self._moment_ring[row_index], geometry.chunk),
        )

    def latest_psd(self, row: int) -> FloatArray:
        """The PSD of the row's last computed window: its ring holds exactly that window's
        segments until the next compute_windows."""
        psd: FloatArray = self._psd_ring[row].sum(axis=0) / self.geometry.segments
        return psd

    def _update_periodograms(self, runs: list[_Run]) -> None:
        """One batched periodogram call for the new segments of every run."""
        if not runs:
            return
        geometry = self.geometry
        batches = []
        for run in runs:
            length = (run.count - 1) * geometry.hop + geometry.nperseg
            spans = self._read(run.rows, run.position, length)
            batches.append(_strided_segments(spans, run.count, geometry.nperseg, geometry.hop))
        periodograms = self.plan.periodograms(np.concatenate(batches))
        start = 0
        for run in runs:
            stop = start + len(run.rows) * run.count
            block = periodograms[start:stop].reshape(len(run.rows), run.count, -1)
            slots = (run.first_index + np.arange(run.count)) % geometry.segments
            self._psd_ring[np.array(run.rows)[:, None], slots] = block
            start = stop

    def _update_moments(self, runs: list[_Run]) -> None:
        geometry = self.geometry
        for run in runs:
            spans = self._read(run.rows, run.position, run.count * geometry.chunk)
            moments = chunk_moments(spans.reshape(-1, geometry.chunk))
            slots = (run.first_index + np.arange(run.count)) % geometry.chunks
            block = moments.reshape(len(run.rows), run.count, MOMENT_FIELDS)
            self._moment_ring[np.array(run.rows)[:, None], slots] = block

    def _read(self, rows: list[int], position: int, length: int) -> FloatArray:
        """(rows, length) samples starting at stream `position`, unwrapped from the ring."""
        start = position % self.capacity
        stop = start + length
        if stop <= self.capacity:
            return self._samples[rows, start:stop]
        wrapped = stop - self.capacity
        return np.concatenate([self._samples[rows, start:], self._samples[rows, :wrapped]], axis=-1)

    def _check_still_in_ring(self, row: int, span_start: int) -> None:
        if self.counts[row] - span_start > self.capacity:
            raise RuntimeError("window samples were overwritten: emission fell behind the ring")


def _strided_segments(spans: FloatArray, count: int, nperseg: int, hop: int) -> FloatArray:
    """(rows, length) spans -> (rows * count, nperseg) overlapping segments, hop apart."""
    row_stride, sample_stride = spans.strides
    view = as_strided(
        spans,
        shape=(spans.shape[0], count, nperseg),
        strides=(row_stride, hop * sample_stride, sample_stride),
        writeable=False,
    )
    return view.reshape(-1, nperseg)


def _runs(grouped: dict[tuple[int, int, int], list[int]]) -> list[_Run]:
    return [
        _Run(position, first_index, count, rows)
        for (position, first_index, count), rows in grouped.items()
        if count > 0
    ]
