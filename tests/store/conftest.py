"""Fixtures for the store tests: real SQLite files in tmp dirs."""

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest

from appliance.records import Alert, FeatureVector, Score, Severity
from appliance.store import Store, StoreSettings

# 64 channels x 15 features, as on the real rig: one vector's values (7.7 KB) span several pages.
CHANNELS = 64
FEATURES_PER_CHANNEL = 15

VectorFactory = Callable[..., FeatureVector]
ScoreFactory = Callable[..., Score]
AlertFactory = Callable[..., Alert]


def feature_names(channels: int, features_per_channel: int) -> tuple[str, ...]:
    return tuple(
        f"ch{c:02d}_f{k:02d}" for c in range(channels) for k in range(features_per_channel)
    )


@pytest.fixture
def make_vector() -> VectorFactory:
    """Deterministic vectors: the values depend only on (asset, window_end, size)."""

    def make(
        window_end: float,
        asset: str = "pump-1",
        channels: int = CHANNELS,
        features_per_channel: int = FEATURES_PER_CHANNEL,
    ) -> FeatureVector:
        names = feature_names(channels, features_per_channel)
        seed = [int(window_end * 1000) % 2**32, len(asset), len(names)]
        values = np.random.default_rng(seed).normal(size=len(names))
        return FeatureVector(asset=asset, window_end=window_end, names=names, values=values)

    return make


@pytest.fixture
def make_score() -> ScoreFactory:
    def make(
        t: float,
        asset: str = "pump-1",
        anomalous: bool = False,
        threshold: float = 2.5,
        contributors: tuple[str, ...] = (),
    ) -> Score:
        return Score(
            asset=asset,
            t=t,
            model_id="ae-v3@sha256:0f1e",
            error=1.0 + t / 1000.0,
            threshold=threshold,
            anomalous=anomalous,
            contributors=contributors,
        )

    return make


@pytest.fixture
def make_alert() -> AlertFactory:
    def make(
        t: float,
        asset: str = "pump-1",
        severity: Severity = "critical",
        kind: str = "anomaly_raised",
        channel: str | None = None,
    ) -> Alert:
        message = f"{asset}: {kind} at t={t}" + (f" on {channel}" if channel else "")
        return Alert(asset, t, severity, kind, message, channel)

    return make


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "store.db"


@pytest.fixture
async def store(store_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(StoreSettings(store_path)) as opened:
        yield opened
