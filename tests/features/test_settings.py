"""Settings and channel validation: a bad configuration is refused with the key it concerns."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.errors import ConfigError
from appliance.features import AssetFeatures, ChannelSpec, FeatureSettings, feature_names


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"window_s": 0.0}, "window_s"),
        ({"stride_s": -1.0}, "stride_s"),
        ({"slow_window_s": float("nan")}, "slow_window_s"),
        ({"nperseg": 1}, "nperseg"),
        ({"noverlap": 256}, "noverlap"),
        ({"bands_hz": ((200.0, 100.0),)}, "bands_hz"),
        ({"welch_window": "no-such-window"}, "welch_window"),
        ({"detrend": "quadratic"}, "detrend"),
        ({"scaling": "loud"}, "scaling"),
    ],
)
def test_invalid_settings_name_the_key(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        FeatureSettings(**changes)


@pytest.mark.parametrize(
    ("channels", "settings", "message"),
    [
        ([], FeatureSettings(), "at least one channel"),
        ([ChannelSpec("x", 1000.0, True)] * 2, FeatureSettings(), "duplicate"),
        ([ChannelSpec("accel.x", 1000.0, True)], FeatureSettings(), "'.'"),
        ([ChannelSpec("x", 0.0, True)], FeatureSettings(), "rate"),
        ([ChannelSpec("x", 40.0, True)], FeatureSettings(), "nperseg"),
        ([ChannelSpec("x", 1000.0, True)], FeatureSettings(bands_hz=((0.0, 600.0),)), "Nyquist"),
    ],
)
def test_invalid_channels_are_refused(
    channels: list[ChannelSpec], settings: FeatureSettings, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        AssetFeatures("m", channels, settings)


def test_feature_names_can_be_listed_without_an_engine() -> None:
    channels = [ChannelSpec("accel_x", 12000.0, True), ChannelSpec("bearing_temp", 1.0, False)]

    names = feature_names(channels, FeatureSettings())

    assert names == AssetFeatures("m", channels, FeatureSettings()).feature_names
    assert len(names) == 13 + 5
    assert "bearing_temp.slope" in names
