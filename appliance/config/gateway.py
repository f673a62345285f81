"""The whole file: [gateway], [store] and every other table, with the checks across tables."""

from __future__ import annotations

from datetime import tzinfo
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator

from appliance.config.assets import AssetConfig
from appliance.config.capture import ChannelConfig, I2cConfig, I2cSource, SerialConfig, SerialSource
from appliance.config.features import (
    MAX_SEGMENTS_PER_WINDOW,
    MAX_SPECTRUM_VALUES,
    MAX_WINDOW_SAMPLES,
    FeaturesConfig,
)
from appliance.config.fields import Name, PathText, PositiveFloat, Strict, refuse_duplicates
from appliance.config.homeassistant import HomeAssistantConfig
from appliance.config.http import HttpConfig
from appliance.config.ota import ModelsConfig
from appliance.config.release import ReleaseConfig
from appliance.config.sms import SmsConfig
from appliance.config.uplink import UplinkConfig
from appliance.config.zones import ZoneName, system_zone


class GatewayConfig(Strict):
    id: Name
    """Gateway identifier, unique per site; used in MQTT topics and SMS texts."""
    timezone: ZoneName | None = None
    """IANA zone the status page shows times in, e.g. "Europe/Berlin"; default: the system's."""

    def zone(self) -> tzinfo:
        """The configured zone, else the system's (read when called)."""
        return ZoneInfo(self.timezone) if self.timezone is not None else system_zone()


class StoreConfig(Strict):
    path: PathText = "/var/lib/appliance/appliance.db"
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    """SQLite synchronous mode under WAL: NORMAL survives process crashes; FULL also power cuts."""
    max_mb: PositiveFloat | None = 1024.0
    """Size cap; oldest routine feature records are evicted first (and counted)."""
    retention_days: PositiveFloat | None = 90.0


class ApplianceConfig(Strict):
    gateway: GatewayConfig
    store: StoreConfig = StoreConfig()
    features: FeaturesConfig = FeaturesConfig()
    serial: list[SerialConfig] = []
    i2c: list[I2cConfig] = []
    assets: Annotated[list[AssetConfig], Field(min_length=1)]
    uplink: UplinkConfig | None = None
    """Without an [uplink] table everything stays on the gateway."""
    sms: SmsConfig | None = None
    """Without an [sms] table no SMS is sent."""
    http: HttpConfig | None = None
    """Without an [http] table no status page is served."""
    models: ModelsConfig | None = None
    """Without a [models] table bundles do not arrive over the air (configured ones still
    score)."""
    release: ReleaseConfig | None = None
    """Without a [release] table the appliance's own code is not updated over the air."""
    homeassistant: HomeAssistantConfig | None = None
    """Without a [homeassistant] table nothing is announced to Home Assistant."""

    @model_validator(mode="after")
    def _cross_checks(self) -> ApplianceConfig:
        refuse_duplicates("serial", [s.name for s in self.serial])
        refuse_duplicates("i2c", [b.name for b in self.i2c])
        refuse_duplicates("assets", [a.name for a in self.assets])
        for i, asset in enumerate(self.assets):
            refuse_duplicates(f"assets[{i}].channels", [c.name for c in asset.channels])
            for j, channel in enumerate(asset.channels):
                self._check_channel(f"assets[{i}].channels[{j}]", channel)
        serial_ids = [
            (c.source.serial, c.source.channel)
            for a in self.assets
            for c in a.channels
            if isinstance(c.source, SerialSource)
        ]
        refuse_duplicates("serial channel source", [f"{s}:{ch}" for s, ch in serial_ids])
        if self.homeassistant is not None:
            names = [a.name for a in self.assets]
            self.homeassistant.check_against(names, has_uplink=self.uplink is not None)
        return self

    def _check_channel(self, where: str, channel: ChannelConfig) -> None:
        source = channel.source
        if isinstance(source, SerialSource) and source.serial not in {s.name for s in self.serial}:
            raise ValueError(f"{where}.source.serial: no [[serial]] device named {source.serial!r}")
        if isinstance(source, I2cSource) and source.i2c not in {b.name for b in self.i2c}:
            raise ValueError(f"{where}.source.i2c: no [[i2c]] bus named {source.i2c!r}")
        if not channel.is_vibration and self.features.slow_window_s * channel.rate_hz > (
            MAX_WINDOW_SAMPLES
        ):
            raise ValueError(
                f"features.slow_window_s: {self.features.slow_window_s} s at {where}.rate_hz "
                f"{channel.rate_hz:g} Hz is more than {MAX_WINDOW_SAMPLES} samples"
            )
        if channel.is_vibration:
            window_samples = self.features.window_s * channel.rate_hz
            if window_samples < self.features.nperseg:
                raise ValueError(
                    f"features.window_s: {self.features.window_s} s at {where}.rate_hz "
                    f"{channel.rate_hz} Hz gives {window_samples:g} samples, shorter than one "
                    f"Welch segment (features.nperseg = {self.features.nperseg})"
                )
            self._check_window_size(where, channel, window_samples)

    def _check_window_size(self, where: str, channel: ChannelConfig, samples: float) -> None:
        hop = self.features.nperseg - self.features.noverlap
        if samples > MAX_WINDOW_SAMPLES:
            raise ValueError(
                f"features.window_s: {self.features.window_s} s at {where}.rate_hz "
                f"{channel.rate_hz:g} Hz is {samples:g} samples, more than {MAX_WINDOW_SAMPLES}"
            )
        segments = samples / hop
        if segments * (self.features.nperseg // 2 + 1) > MAX_SPECTRUM_VALUES:
            raise ValueError(
                f"features.nperseg: {self.features.nperseg} with {segments:g} segments per "
                f"window at {where}.rate_hz {channel.rate_hz:g} Hz keeps more than "
                f"{MAX_SPECTRUM_VALUES} spectrum values per channel"
            )
        if segments > MAX_SEGMENTS_PER_WINDOW:
            raise ValueError(
                f"features.window_s: {self.features.window_s} s at {where}.rate_hz "
                f"{channel.rate_hz:g} Hz holds {samples / hop:g} Welch segments (nperseg - "
                f"noverlap = {hop}), more than {MAX_SEGMENTS_PER_WINDOW}"
            )

    def asset(self, name: str) -> AssetConfig:
        return next(a for a in self.assets if a.name == name)
