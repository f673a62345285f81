"""One autoencoder trained on synthetic latent-factor data, shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.records import FloatArray
from appliance.training.autoencoder import TrainedAutoencoder, TrainSettings, fit_autoencoder
from appliance.training.synthetic import LatentFactorSource, window_times

TRAINING_ROWS = 2000


@pytest.fixture(scope="session")
def source() -> LatentFactorSource:
    """12 features driven by 3 latent factors plus noise."""
    return LatentFactorSource.create(seed=7, n_features=12, n_factors=3)


@pytest.fixture(scope="session")
def training_rows(source: LatentFactorSource) -> FloatArray:
    return source.normal_rows(np.random.default_rng(1), TRAINING_ROWS)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("training") / "synthetic-bundle"


@pytest.fixture(scope="session")
def trained(
    source: LatentFactorSource, training_rows: FloatArray, bundle_dir: Path
) -> TrainedAutoencoder:
    return fit_autoencoder(
        training_rows,
        source.feature_names,
        asset="synthetic-pump",
        version="test-1",
        out_dir=bundle_dir,
        window_times=window_times(TRAINING_ROWS),
        settings=TrainSettings(epochs=40, seed=0),
    )
