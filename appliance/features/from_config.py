"""The feature engines a config asks for, one per asset (shared by `run` and the OTA tools)."""

from __future__ import annotations

from appliance.config import ApplianceConfig
from appliance.features.asset import AssetFeatures
from appliance.features.settings import ChannelSpec, FeatureSettings


def build_feature_engines(config: ApplianceConfig) -> dict[str, AssetFeatures]:
    f = config.features
    settings = FeatureSettings(
        window_s=f.window_s,
        stride_s=f.stride_s,
        nperseg=f.nperseg,
        noverlap=f.noverlap,
        bands_hz=tuple((lo, hi) for lo, hi in f.bands_hz) if f.bands_hz else None,
        slow_window_s=f.slow_window_s,
    )
    return {
        asset.name: AssetFeatures(
            asset.name,
            [ChannelSpec(c.name, c.rate_hz, c.is_vibration) for c in asset.channels],
            settings,
        )
        for asset in config.assets
    }
