"""The Home Assistant side of each uplink connection: announce every entity (retained discovery
configs), then publish each asset's state message as it changes.

It runs on the uplink's own connection (the uplink calls `serve` when it connects and cancels it
with the connection), so availability is the uplink's: online while connected, offline after a
clean stop or from the last will. A change of state or alarm is published at once; the numbers
at most every `state_every_s` per asset, and only when they changed. Everything is retained, so
Home Assistant shows the latest values after its own restart.

A broker whose ACL refuses the discovery topics drops the gateway's connection (mosquitto does,
receiver/mosquitto/README.md); after three connections in a row lost while announcing, Home
Assistant is left out until restart (logged as an error) rather than cost the data uplink its
link.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from appliance.homeassistant.entities import (
    AssetDevice,
    HomeAssistantSettings,
    discovery_messages,
)
from appliance.status import AssetStatus, StatusBoard
from appliance.status_snapshot import asset_state

if TYPE_CHECKING:
    from appliance.uplink.connection import Publish

log = structlog.get_logger(__name__)

GIVE_UP_AFTER = 3
"""Connections in a row lost while announcing before Home Assistant is left out."""
SIGNIFICANT_DIGITS = 4


@dataclass
class _Sent:
    urgent: tuple[object, ...]
    """The state and alarm last published: a change goes at once."""
    payload: bytes
    at: float


class HomeAssistant:
    """Owns what was last published per asset; `serve` is the uplink's on-connect hook."""

    def __init__(
        self,
        settings: HomeAssistantSettings,
        board: StatusBoard,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._board = board
        self._clock = clock
        self._sent: dict[str, _Sent] = {}
        self._lost_announcing = 0
        self.announcements = 0
        """Complete announcements (every discovery config acknowledged by the broker)."""
        self.state_messages = 0

    @property
    def given_up(self) -> bool:
        return self._lost_announcing >= GIVE_UP_AFTER

    async def serve(self, publish: Publish) -> None:
        """Announce, then publish states until cancelled (the connection ended)."""
        if self.given_up:
            return
        await self._announce(publish)
        self._sent.clear()  # a new connection: every state goes again
        every_s = self.settings.state_every_s
        while True:
            await self.publish_states(publish)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every_s):  # no_data needs no board change
                    await self._board.wait_changed()

    async def _announce(self, publish: Publish) -> None:
        try:
            for topic, payload in discovery_messages(self.settings):
                await publish(topic, payload, retain=True)
        except BaseException:
            self._lost_while_announcing()
            raise
        self._lost_announcing = 0
        self.announcements += 1
        log.info(
            "homeassistant_announced",
            prefix=self.settings.discovery_prefix,
            assets=[a.name for a in self.settings.assets],
        )

    def _lost_while_announcing(self) -> None:
        self._lost_announcing += 1
        if self.given_up:
            log.error(
                "homeassistant_given_up",
                reason=f"the connection ended {GIVE_UP_AFTER} times in a row while announcing "
                f"to Home Assistant: does the broker's ACL let {self.settings.gateway} write "
                f"{self.settings.discovery_prefix}/+/{self.settings.gateway}/+/config? "
                "(mosquitto drops a client that publishes where it may not); Home Assistant "
                "is left out until restart, the uplink goes on",
            )

    async def publish_states(self, publish: Publish) -> None:
        """Each asset's state message if it is due (changed state or alarm, or changed numbers
        and state_every_s since the last one)."""
        now = self._clock()
        for device in self.settings.assets:
            status = self._board.assets.get(device.name)
            if status is None:
                continue
            values = state_values(device, status, now)
            urgent = (values["state"], values["alarm"])
            payload = json.dumps(values, separators=(",", ":")).encode()
            if not self._due(device.name, urgent, payload, now):
                continue
            await publish(self.settings.state_topic(device.name), payload, retain=True)
            self._sent[device.name] = _Sent(urgent, payload, now)
            self.state_messages += 1

    def _due(self, asset: str, urgent: tuple[object, ...], payload: bytes, now: float) -> bool:
        sent = self._sent.get(asset)
        if sent is None or sent.urgent != urgent:
            return True
        return sent.payload != payload and now - sent.at >= self.settings.state_every_s


def state_values(device: AssetDevice, status: AssetStatus, now: float) -> dict[str, object]:
    """The asset's state message: every entity's value by key (None: not known yet)."""
    state = asset_state(status, now)
    score = status.latest_score
    features: Mapping[str, float] = status.latest.as_dict() if status.latest is not None else {}
    values: dict[str, object] = {
        "state": state.condition,
        "reason": state.reason,
        "alarm": "ON" if status.alarm is not None else "OFF",
        "score": _rounded(score.error) if score is not None else None,
        "threshold": _rounded(score.threshold) if score is not None else None,
    }
    for entity in device.entities:
        if entity.key not in values:
            values[entity.key] = _rounded(features.get(entity.key))
    return values


def _rounded(value: float | None) -> float | None:
    """SIGNIFICANT_DIGITS digits (JSON has no NaN: None, shown as unknown)."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
