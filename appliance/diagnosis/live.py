"""The gateway's diagnosis stage: each diagnosed asset's last window of raw samples, diagnosed
when its detector or a sensor rule is up, and at a low rate otherwise.

It runs inline in the feature stage as a block observer (no task of its own): one diagnosis of
three 5 s channels at 1 kHz costs a few milliseconds (bench/bench_diagnosis.py: 0.3-0.5 % of a
core when every window is diagnosed), so it needs no worker. Every block of a diagnosed channel
goes into that channel's ring (in g); once per stride of samples the asset's state is read
(`Raised`, the detect and health stages' word on the last window) and, when raised or when
`every_s` has passed since the last run, the rings are diagnosed. The result (`Diagnosed`: the
verdict, its words, the envelope spectrum of the finding's band and the defect lines to mark on
it) is held here, the one owner; the status board, the alarm text and the page read it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from appliance.config.assets import AssetConfig
from appliance.config.machine import diagnosed_channels
from appliance.diagnosis.asset import AssetDiagnosis, ChannelWindow, describe, diagnose_asset
from appliance.diagnosis.bearing import DefectOrders
from appliance.diagnosis.envelope import EnvelopeSpectrum, band_envelope_spectrum
from appliance.diagnosis.from_config import bearing_orders, machine_severity, to_g
from appliance.records import FloatArray, SampleBlock

MARKED_HARMONICS = 3
"""Defect lines marked on the page: each defect frequency and its harmonics up to this one."""
SHOWN_ORDERS_ABOVE = 1.2
"""The page's envelope spectrum reaches this factor above the highest line marked."""
Raised = Callable[[], bool]
"""Is the asset's detector flagging its windows, or an alarm or a sensor rule up on it?"""


@dataclass(frozen=True)
class Mark:
    """A defect frequency to mark on the envelope spectrum."""

    name: str
    """E.g. "BPFO", "2xBPFI" (the bearing's name is in `bearing`)."""
    bearing: str
    hz: float
    harmonic: int
    """1 for the defect frequency itself, 2, 3 for its harmonics."""


@dataclass(frozen=True)
class Diagnosed:
    """One run of the diagnosis on an asset's last window."""

    asset: str
    t: float
    """End of the window diagnosed (the last sample's time)."""
    diagnosis: AssetDiagnosis
    text: str
    """describe(): the words the alarm and the page carry."""
    raised: bool
    """Run because the detector or a rule was up (else the periodic run)."""
    envelope: EnvelopeSpectrum
    """The finding's channel's squared-envelope spectrum in the finding's band."""
    marks: tuple[Mark, ...]

    @property
    def verdict(self) -> str:
        return self.diagnosis.finding.verdict


class _Ring:
    """The last `size` samples of one channel, in g."""

    def __init__(self, size: int, factor: float) -> None:
        self._values = np.zeros(size)
        self._factor = factor
        self.written = 0

    def write(self, samples: FloatArray) -> None:
        size = len(self._values)
        samples = np.asarray(samples[-size:], dtype=np.float64) * self._factor
        start = self.written % size
        first = min(len(samples), size - start)
        self._values[start : start + first] = samples[:first]
        self._values[: len(samples) - first] = samples[first:]
        self.written += len(samples)

    def window(self) -> FloatArray | None:
        """The last `size` samples in order; None until that many came."""
        size = len(self._values)
        if self.written < size:
            return None
        return np.roll(self._values, -(self.written % size))


class AssetDiagnoser:
    """One asset's rings, when to diagnose, and its latest diagnosis."""

    def __init__(self, asset: AssetConfig, window_s: float, stride_s: float, raised: Raised):
        machine = asset.machine
        assert machine is not None
        self.asset = asset.name
        self._bearings = bearing_orders(machine)
        self._severity = machine_severity(machine)
        self._speed_rpm = asset.speed_rpm
        given = machine.speed_range_rpm
        self._range = (given[0], given[1]) if given is not None else None
        self._every_s = machine.diagnose_every_s
        self._raised = raised
        channels = diagnosed_channels(machine, asset.channels)
        self._rates = {c.name: c.rate_hz for c in channels}
        self._axial = {c.name: machine.orientation.get(c.name) == "axial" for c in channels}
        self._rings = {c.name: _Ring(round(window_s * c.rate_hz), to_g(c.unit)) for c in channels}
        # Checked when every ring has passed the next window boundary, as the feature engine
        # emits (observers see a block before the engine does: the diagnosis of a window is
        # there before its score, so an alarm raised on that window can carry it).
        first = channels[0].rate_hz if channels else 1.0
        self._stride = round(stride_s * first)
        self._next_check = round(window_s * first)
        self._last_run = -math.inf
        self.latest: Diagnosed | None = None
        self.on_diagnosed: Callable[[Diagnosed], None] = lambda _: None
        """Told each new diagnosis (the status board's copy)."""
        self.on_failed: Callable[[str], None] = lambda _: None
        """Told why a run failed (it is counted; the stage goes on)."""
        self.failures = 0

    def push(self, block: SampleBlock) -> None:
        ring = self._rings.get(block.channel)
        if ring is None:
            return
        ring.write(block.samples)
        if min(r.written for r in self._rings.values()) >= self._next_check:
            while self._next_check <= ring.written:
                self._next_check += self._stride
            self.stride_done(block.t_end)

    def stride_done(self, t: float) -> None:
        """Diagnose the rings if the asset is raised or the periodic run is due."""
        raised = self._raised()
        if not raised and t - self._last_run < self._every_s:
            return
        windows = self._windows()
        if windows is None:
            return
        self._last_run = t
        try:
            self.latest = self._diagnose(windows, t, raised)
        except Exception as exc:  # e.g. no speed, or a bug of ours: never stops the feature stage
            self.failures += 1
            self.on_failed(str(exc) if isinstance(exc, ValueError) else repr(exc))
            return
        self.on_diagnosed(self.latest)

    def _windows(self) -> dict[str, ChannelWindow] | None:
        windows = {}
        for name, ring in self._rings.items():
            samples = ring.window()
            if samples is None:
                return None
            windows[name] = ChannelWindow(samples, self._rates[name], self._axial[name])
        return windows or None

    def _diagnose(self, windows: Mapping[str, ChannelWindow], t: float, raised: bool) -> Diagnosed:
        diagnosis = diagnose_asset(
            windows,
            self._bearings,
            speed_rpm=self._speed_rpm,
            speed_range_rpm=self._range,
            machine=self._severity,
            anomalous=raised,
        )
        finding = diagnosis.finding
        window = windows[diagnosis.channel]
        envelope = band_envelope_spectrum(window.samples_g, window.rate, finding.band)
        marks = defect_marks(self._bearings, finding.shaft_hz, float(envelope.freqs[-1]))
        top = max((mark.hz for mark in marks), default=float(envelope.freqs[-1]))
        shown = envelope.freqs <= SHOWN_ORDERS_ABOVE * top
        envelope = EnvelopeSpectrum(envelope.band, envelope.freqs[shown], envelope.magnitude[shown])
        return Diagnosed(self.asset, t, diagnosis, describe(diagnosis), raised, envelope, marks)


def defect_marks(
    bearings: Mapping[str, DefectOrders], shaft_hz: float, up_to_hz: float
) -> tuple[Mark, ...]:
    """BPFO, BPFI, 2xBSF (a ball strikes both races), FTF and their harmonics below `up_to_hz`."""
    marks = []
    for bearing, orders in bearings.items():
        for name, order in (
            ("BPFO", orders.bpfo),
            ("BPFI", orders.bpfi),
            ("BSF", 2 * orders.bsf),
            ("FTF", orders.ftf),
        ):
            for k in range(1, MARKED_HARMONICS + 1):
                hz = k * order * shaft_hz
                multiple = k * 2 if name == "BSF" else k
                if hz < up_to_hz:
                    label = name if multiple == 1 else f"{multiple}x{name}"
                    marks.append(Mark(label, bearing, hz, k))
    return tuple(marks)


class BlockObserver(Protocol):
    def push(self, block: SampleBlock) -> None: ...


class BlockObservers:
    """Several observers of one asset's blocks, in order (the sensor-health checks, then the
    diagnosis)."""

    def __init__(self, observers: Sequence[BlockObserver]) -> None:
        self._observers = tuple(observers)

    def push(self, block: SampleBlock) -> None:
        for observer in self._observers:
            observer.push(block)


def build_diagnosers(
    assets: Sequence[AssetConfig],
    window_s: float,
    stride_s: float,
    raised: Callable[[str], Raised],
) -> dict[str, AssetDiagnoser]:
    """A diagnoser for each asset with an [assets.machine] table and a channel to diagnose."""
    return {
        asset.name: AssetDiagnoser(asset, window_s, stride_s, raised(asset.name))
        for asset in assets
        if asset.machine is not None and diagnosed_channels(asset.machine, asset.channels)
    }
