"""Raw vibration recordings (CWRU bearing data as .npy) through the appliance's feature path.

A recording is one channel of raw samples at a known rate. It is cut into SampleBlocks, as the
capture layer would deliver them, and pushed through the real feature engine
(appliance.features.AssetFeatures), so the evaluation sees the same FeatureVectors the gateway
computes. The CWRU files are about 10 s long at 12 kHz: the shipped 5 s window would leave a
handful of vectors, so window and stride are options (`vibration_settings`). The block size does
not change the vectors (AssetFeatures cuts windows by sample count, not by block).

manifest.csv describes the fault recordings (label, defect size, load, rpm, samples, rate); the
healthy baseline is not listed in it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.errors import ConfigError
from appliance.evaluation.skab import EvaluationError
from appliance.features import AssetFeatures, ChannelSpec, FeatureSettings
from appliance.records import FloatArray, SampleBlock

CWRU_RATE_HZ = 12_000.0
EVAL_ASSET = "eval"
EVAL_CHANNEL = "accel"
DEFAULT_BLOCK_SAMPLES = 1024
"""Samples per SampleBlock; any size gives the same vectors."""


@dataclass(frozen=True)
class Recording:
    name: str
    rate: float
    samples: FloatArray


@dataclass(frozen=True)
class CwruManifestEntry:
    file: str
    label: str
    fault_diameter_in: float
    load_hp: int
    rpm: float
    samples: int
    rate: float


@dataclass(frozen=True)
class FeatureSeries:
    """A recording's feature vectors: row i describes the window ending at window_ends[i]."""

    name: str
    window_ends: FloatArray
    """Seconds since the recording's first sample."""
    feature_names: tuple[str, ...]
    features: FloatArray


def read_cwru_manifest(path: Path) -> list[CwruManifestEntry]:
    """Parse manifest.csv; EvaluationError naming the file and line if a field is missing or bad."""
    try:
        with path.open(newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EvaluationError(f"{path}: cannot read: {exc}") from exc
    entries = []
    for line, row in enumerate(rows, start=2):
        try:
            entries.append(
                CwruManifestEntry(
                    file=_required(row, "file"),
                    label=_required(row, "label"),
                    fault_diameter_in=float(_required(row, "fault_diameter_in")),
                    load_hp=int(_required(row, "load_hp")),
                    rpm=float(_required(row, "rpm")),
                    samples=int(_required(row, "n_samples")),
                    rate=float(_required(row, "fs_hz")),
                )
            )
        except ValueError as exc:
            raise EvaluationError(f"{path}: line {line}: {exc}") from exc
    return entries


def load_recording(path: Path, rate: float = CWRU_RATE_HZ) -> Recording:
    """One-dimensional finite samples from a .npy file, named after the file's stem."""
    try:
        raw = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"{path}: cannot load: {exc}") from exc
    if raw.ndim != 1 or raw.dtype.kind not in "fiu":
        raise EvaluationError(f"{path}: need a 1-d numeric array, got {raw.dtype} {raw.shape}")
    samples = raw.astype(np.float64)
    if not np.all(np.isfinite(samples)):
        raise EvaluationError(f"{path}: holds non-finite samples")
    return Recording(path.stem, rate, samples)


def split_recording(recording: Recording, fraction: float) -> tuple[Recording, Recording]:
    """(first `fraction` of the samples, the rest), e.g. to hold healthy data back from training."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    cut = round(len(recording.samples) * fraction)
    head = Recording(f"{recording.name}_head", recording.rate, recording.samples[:cut])
    tail = Recording(f"{recording.name}_tail", recording.rate, recording.samples[cut:])
    return head, tail


def vibration_settings(window_s: float, stride_s: float) -> FeatureSettings:
    """The shipped feature settings with another window and stride (ConfigError if impossible)."""
    return FeatureSettings(window_s=window_s, stride_s=stride_s)


def sample_blocks(
    recording: Recording, block_samples: int = DEFAULT_BLOCK_SAMPLES
) -> Iterator[SampleBlock]:
    """The recording as consecutive blocks of one channel, starting at t = 0."""
    if block_samples < 1:
        raise ValueError(f"block_samples must be >= 1, got {block_samples}")
    for start in range(0, len(recording.samples), block_samples):
        yield SampleBlock(
            asset=EVAL_ASSET,
            channel=EVAL_CHANNEL,
            t0=start / recording.rate,
            rate=recording.rate,
            samples=recording.samples[start : start + block_samples],
        )


def recording_features(
    recording: Recording,
    settings: FeatureSettings,
    block_samples: int = DEFAULT_BLOCK_SAMPLES,
) -> FeatureSeries:
    """Every feature vector AssetFeatures emits for the recording (EvaluationError if none)."""
    try:
        engine = AssetFeatures(
            EVAL_ASSET, [ChannelSpec(EVAL_CHANNEL, recording.rate, vibration=True)], settings
        )
    except ConfigError as exc:
        raise EvaluationError(f"{recording.name}: {exc}") from exc
    window_ends: list[float] = []
    rows: list[FloatArray] = []
    for block in sample_blocks(recording, block_samples):
        for vector in engine.push(block):
            window_ends.append(vector.window_end)
            rows.append(vector.values)
    if not rows:
        seconds = len(recording.samples) / recording.rate
        raise EvaluationError(
            f"{recording.name}: {seconds:.3g} s is shorter than one {settings.window_s} s window"
        )
    features = np.vstack(rows)
    if not np.all(np.isfinite(features)):
        raise EvaluationError(f"{recording.name}: the feature path produced non-finite values")
    return FeatureSeries(
        name=recording.name,
        window_ends=np.array(window_ends),
        feature_names=engine.feature_names,
        features=features,
    )


def _required(row: dict[str, str], key: str) -> str:
    value = row.get(key)
    if value is None or not value.strip():
        raise ValueError(f"missing {key}")
    return value.strip()
