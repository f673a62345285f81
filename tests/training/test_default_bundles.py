"""The bundles shipped for the demo fit the demo's assets and run in the gateway runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.app import build_feature_engines
from appliance.detect.bundle import load_bundle
from appliance.detect.runtime import open_runtime, reconstruction_error
from appliance.rig.demo import DEFAULT_BUNDLES, demo_config


@pytest.mark.parametrize("asset", ["pump-1", "compressor-2"])
def test_shipped_bundle_matches_the_demo_asset_and_runs(asset: str, tmp_path: Path) -> None:
    engines = build_feature_engines(demo_config(tmp_path, []))
    bundle = load_bundle(DEFAULT_BUNDLES / asset)

    assert bundle.manifest.asset == asset
    assert bundle.manifest.feature_names == engines[asset].feature_names
    errors, _ = reconstruction_error(bundle, open_runtime(bundle), bundle.scaler_mean[None, :])
    assert np.isfinite(errors).all()
    assert errors[0] < bundle.manifest.threshold.fixed_threshold
