"""Builders the composition root (appliance.app) uses: the model and release managers, the
uplink with its command handler and retained-status extras, sensor health and the alert
router, each from the config."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from appliance.config import ApplianceConfig
from appliance.detect.health import AssetHealth
from appliance.detect.routing import AlertRouter
from appliance.detect.rules import ChannelSpec as RuleChannel
from appliance.features import AssetFeatures
from appliance.homeassistant import HomeAssistant
from appliance.ota.manager import ModelManager, ota_settings
from appliance.ota.release.manager import ReleaseManager, release_settings
from appliance.status import StatusBoard
from appliance.store import Delivery, Store
from appliance.uplink.commands import RELEASE_ACTIONS, Command, CommandHandler, RefusedCommand
from appliance.uplink.publisher import Uplink
from appliance.uplink.settings import UplinkSettings, uplink_settings


def open_releases(
    config: ApplianceConfig, board: StatusBoard, stop: asyncio.Event
) -> ReleaseManager | None:
    """The release manager (None without a [release] table), its status on the board."""
    if config.release is None:
        return None
    settings = release_settings(config.release, Path(config.store.path))
    manager = ReleaseManager(settings, board, stop)
    manager.open()
    board.release = manager.status
    return manager


@contextlib.asynccontextmanager
async def open_models(
    config: ApplianceConfig, store: Store, board: StatusBoard, engines: dict[str, AssetFeatures]
) -> AsyncIterator[ModelManager | None]:
    """The model manager with its library taken (None without a [models] table)."""
    if config.models is None:
        yield None
        return
    settings = ota_settings(config.models, Path(config.store.path))
    names = {asset: engine.feature_names for asset, engine in engines.items()}
    manager = ModelManager(settings, config, store.history, store.detector_states, board, names)
    manager.open()
    try:
        yield manager
    finally:
        manager.close()


def build_uplink(
    settings: UplinkSettings,
    delivery: Delivery,
    new_data: asyncio.Event,
    models: ModelManager | None,
    home: HomeAssistant | None = None,
    releases: ReleaseManager | None = None,
) -> Uplink:
    """The uplink; with a model manager it also takes model commands and publishes the active
    models in its retained status, with a release manager release commands and the release;
    with Home Assistant it announces to it on each connection."""
    on_connected = home.serve if home is not None else None
    if models is None and releases is None:
        return Uplink(settings, delivery, new_data=new_data, on_connected=on_connected)
    uplink = Uplink(
        settings,
        delivery,
        new_data=new_data,
        commands=command_handler(models, releases),
        extra_status=lambda: extra_status(models, releases),
        on_connected=on_connected,
    )
    if models is not None:
        models.on_change = uplink.status_changed
    return uplink


def extra_status(models: ModelManager | None, releases: ReleaseManager | None) -> dict[str, Any]:
    """What the retained online status adds: the active models, the release."""
    extra: dict[str, Any] = {}
    if models is not None:
        extra["models"] = dict(models.status.active)
    if releases is not None:
        status = releases.status
        trial = status.trial["version"] if status.trial is not None else None
        failed = [f["version"] for f in status.failed]
        extra["release"] = {"running": status.release, "confirmed": status.confirmed,
                            "trial": trial, "failed": failed}  # fmt: skip
    return extra


def command_handler(models: ModelManager | None, releases: ReleaseManager | None) -> CommandHandler:
    """Release commands to the release manager, the others to the model manager; a command
    for a manager this gateway does not have is refused."""

    async def handle(command: Command | RefusedCommand) -> dict[str, Any]:
        if isinstance(command, Command) and command.action in RELEASE_ACTIONS:
            if releases is None:
                return {"accepted": False, "message": "no [release] table: this gateway "
                        "takes no appliance updates over the air"}  # fmt: skip
            return await releases.handle_command(command)
        if isinstance(command, RefusedCommand) and models is None:
            return {"accepted": False, "message": command.reason}
        if models is None:
            return {"accepted": False, "message": "no [models] table: this gateway takes "
                    "no model commands"}  # fmt: skip
        return await models.handle_command(command)

    return handle


def build_uplink_settings(config: ApplianceConfig) -> UplinkSettings | None:
    """None without an [uplink] table; ConfigError if a file it names cannot be read."""
    if config.uplink is None:
        return None
    return uplink_settings(config.gateway.id, config.uplink)


def build_health(config: ApplianceConfig) -> dict[str, AssetHealth]:
    """Sensor-health checks per asset: vibration channels over the feature window, slow channels
    over the slow window (they also get CUSUM drift)."""
    f = config.features
    return {
        asset.name: AssetHealth(
            asset.name,
            {
                c.name: (
                    RuleChannel(c.name, c.unit, c.rate_hz, (c.valid_range[0], c.valid_range[1])),
                    f.window_s if c.is_vibration else f.slow_window_s,
                    not c.is_vibration,
                )
                for c in asset.channels
            },
        )
        for asset in config.assets
    }


def build_router(config: ApplianceConfig) -> AlertRouter:
    channels = [f"{a.name}/{c.name}" for a in config.assets for c in a.channels]
    return AlertRouter(config.gateway.id, channels, [a.name for a in config.assets])
