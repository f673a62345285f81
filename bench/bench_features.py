"""Feature engine throughput: incremental batched Welch vs recomputing every window with scipy.

Both paths compute the same features over the same windows (checked: the largest difference is
printed). The incremental path is timed end to end through AssetFeatures.push, block by block, as
the pipeline runs it. The baseline gets each window's samples for free as a slice of the whole
recording and, per channel and window, runs scipy.signal.welch plus the same time-domain, band
and dominant-frequency features in numpy. Each path runs `--repeat` times; the best time counts.

    .venv/bin/python bench/bench_features.py [--seconds 60 --block 100 --repeat 3]

Layouts (64 channels at 1 kHz either way): one asset of 64 vibration channels (the headline:
one batched rfft per stride for all of them) and 16 assets of 4 channels.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
from scipy.signal import welch

from appliance.features import AssetFeatures, ChannelSpec, FeatureSettings
from appliance.features.settings import default_bands
from appliance.records import FeatureVector, FloatArray, SampleBlock

RATE = 1000.0
T0 = 1_700_000_000.0
LAYOUTS = ((1, 64), (16, 4))


@dataclass(frozen=True)
class Layout:
    assets: int
    channels_per_asset: int
    seconds: float
    block: int

    @property
    def channels(self) -> int:
        return self.assets * self.channels_per_asset


@dataclass(frozen=True)
class Result:
    layout: Layout
    incremental_s: float
    baseline_s: float
    vectors: int
    mismatch: float

    @property
    def speedup(self) -> float:
        return self.baseline_s / self.incremental_s

    @property
    def channels_per_core(self) -> float:
        """1 kHz channels one core keeps up with in real time, through the features path."""
        return self.layout.channels * self.layout.seconds / self.incremental_s


def make_signals(layout: Layout, seed: int = 7) -> FloatArray:
    """(channels, samples): a 1 g offset, a sine and its third harmonic, and noise per channel."""
    rng = np.random.default_rng(seed)
    samples = round(layout.seconds * RATE)
    t = np.arange(samples) / RATE
    fundamentals = rng.uniform(10.0, 120.0, size=(layout.channels, 1))
    signals = 9.81 + 0.5 * np.sin(2 * np.pi * fundamentals * t)
    signals += 0.2 * np.sin(2 * np.pi * 3 * fundamentals * t)
    signals += 0.1 * rng.standard_normal((layout.channels, samples))
    return signals


def make_blocks(
    layout: Layout, signals: FloatArray, engines: list[AssetFeatures]
) -> list[tuple[AssetFeatures, SampleBlock]]:
    """Every channel's blocks in arrival order: block k of every channel, then block k + 1."""
    blocks = []
    for start in range(0, signals.shape[1], layout.block):
        for asset, engine in enumerate(engines):
            for channel in range(layout.channels_per_asset):
                samples = signals[asset * layout.channels_per_asset + channel]
                block = SampleBlock(
                    engine.asset,
                    f"accel_{channel}",
                    T0 + start / RATE,
                    RATE,
                    samples[start : start + layout.block],
                )
                blocks.append((engine, block))
    return blocks


def run_incremental(
    layout: Layout, signals: FloatArray, settings: FeatureSettings
) -> tuple[float, list[FeatureVector]]:
    specs = [ChannelSpec(f"accel_{c}", RATE, True) for c in range(layout.channels_per_asset)]
    engines = [AssetFeatures(f"asset_{a}", specs, settings) for a in range(layout.assets)]
    blocks = make_blocks(layout, signals, engines)
    vectors: list[FeatureVector] = []
    started = time.perf_counter()
    for engine, block in blocks:
        vectors.extend(engine.push(block))
    return time.perf_counter() - started, vectors


def baseline_features(window: FloatArray, settings: FeatureSettings) -> FloatArray:
    """The engine's features for one channel's window, recomputed from scratch."""
    freqs, psd = welch(
        window,
        fs=RATE,
        window=settings.welch_window,
        nperseg=settings.nperseg,
        noverlap=settings.noverlap,
        detrend=settings.detrend,
        scaling=settings.scaling,
    )
    df = freqs[1]
    mean = window.mean()
    deviation = window - mean
    variance = np.mean(deviation**2)
    rms = np.sqrt(np.mean(window**2))
    peak = np.abs(window).max()
    kurtosis = np.mean(deviation**4) / variance**2 - 3.0
    bands = []
    for lo, hi in default_bands(RATE / 2):
        upper = freqs <= hi if hi >= freqs[-1] else freqs < hi
        bands.append(psd[(freqs >= lo) & upper].sum() * df)
    dominant = freqs[1 + np.argmax(psd[1:])]
    time_domain = [mean, np.sqrt(variance), rms, peak, peak / rms, kurtosis]
    return np.array([*time_domain, psd.sum() * df, dominant, *bands])


def run_baseline(
    layout: Layout, signals: FloatArray, settings: FeatureSettings
) -> tuple[float, FloatArray]:
    """Features of every window of every channel, in window-major, channel-minor order."""
    hop = settings.hop
    window_samples = round(settings.window_s * RATE)
    stride = round(settings.stride_s * RATE)
    span = ((window_samples - settings.nperseg) // hop) * hop + settings.nperseg
    rows = []
    started = time.perf_counter()
    for boundary in range(window_samples, signals.shape[1] + 1, stride):
        end = ((boundary - settings.nperseg) // hop) * hop + settings.nperseg
        for channel in range(layout.channels):
            rows.append(baseline_features(signals[channel, end - span : end], settings))
    return time.perf_counter() - started, np.array(rows)


def incremental_rows(layout: Layout, vectors: list[FeatureVector]) -> FloatArray:
    """The vectors' values in the baseline's order: window, then asset, then channel."""
    by_asset: dict[str, list[FeatureVector]] = {}
    for vector in vectors:
        by_asset.setdefault(vector.asset, []).append(vector)
    windows = len(by_asset["asset_0"])
    rows: list[FloatArray] = []
    for window in range(windows):
        for asset in range(layout.assets):
            values = by_asset[f"asset_{asset}"][window].values
            rows.extend(values.reshape(layout.channels_per_asset, -1))
    return np.array(rows)


def measure(layout: Layout, repeat: int) -> Result:
    settings = FeatureSettings()
    signals = make_signals(layout)
    incremental_runs = [run_incremental(layout, signals, settings) for _ in range(repeat)]
    baseline_runs = [run_baseline(layout, signals, settings) for _ in range(repeat)]
    vectors = incremental_runs[0][1]
    incremental = incremental_rows(layout, vectors)
    baseline = baseline_runs[0][1]
    if incremental.shape != baseline.shape:
        raise SystemExit(f"paths disagree on windows: {incremental.shape} vs {baseline.shape}")
    scale = np.abs(baseline).max(axis=0)
    return Result(
        layout=layout,
        incremental_s=min(seconds for seconds, _ in incremental_runs),
        baseline_s=min(seconds for seconds, _ in baseline_runs),
        vectors=len(vectors),
        mismatch=float((np.abs(incremental - baseline) / scale).max()),
    )


def report(result: Result) -> None:
    layout = result.layout
    print(
        f"{layout.assets} asset(s) x {layout.channels_per_asset} vibration channels at "
        f"{RATE:g} Hz, {layout.seconds:g} s of stream in {layout.block}-sample blocks, "
        f"{result.vectors} vectors"
    )
    print(f"  incremental, batched (AssetFeatures.push): {result.incremental_s:8.3f} s")
    print(f"  baseline (scipy welch + numpy per window):  {result.baseline_s:8.3f} s")
    print(f"  speed-up: {result.speedup:.1f}x")
    print(f"  1 kHz channels one core sustains (features only): {result.channels_per_core:,.0f}")
    print(f"  largest feature difference / feature scale: {result.mismatch:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="stream length")
    parser.add_argument("--block", type=int, default=100, help="samples per pushed block")
    parser.add_argument("--repeat", type=int, default=3, help="runs per path; best counts")
    args = parser.parse_args()
    for assets, channels in LAYOUTS:
        report(measure(Layout(assets, channels, args.seconds, args.block), args.repeat))


if __name__ == "__main__":
    main()
