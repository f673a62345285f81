"""What the uplink task needs to know, built from the [uplink] config (files read and checked here).

The delays are fields so tests can shrink them; the config exposes only what an integrator tunes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from appliance import __version__
from appliance.config import BrokerAddress, UplinkConfig, read_text_file
from appliance.errors import ConfigError
from appliance.uplink.schema import WireFormat

AckMode = Literal["receiver", "broker"]
Detail = Literal["full", "summary"]
LIVE_BATCH_S: dict[Detail, float] = {"full": 5.0, "summary": 20.0}
"""live_batch_s by profile when not set: a summary range of 20 s costs one small summary part
where 5 s cost four (its alerts still go at once; the ack moves every ~20 s)."""


@dataclass(frozen=True)
class UplinkSettings:
    gateway: str
    broker: BrokerAddress
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    prefix: str = "appliance"
    ack: AckMode = "receiver"
    max_records_per_message: int = 500
    max_message_bytes: int = 256 * 1024
    replay_records_per_s: float = 1000.0
    wire_format: WireFormat = "binary"
    """How parts are written: "binary" (compact) or "json" (readable, for debugging)."""
    detail: Detail = "full"
    """The uplink profile: "full" (every record) or "summary" (PROTOCOL.md, "Uplink profiles")."""
    summary_margin_s: float = 60.0
    """detail = "summary": windows this long before an alarm's raise go in full too."""
    keepalive_s: int = 10
    """MQTT keepalive: a link silent this long gets a PINGREQ, and is given up when nothing
    comes back for as long again (a half-open link with nothing to send)."""
    ack_timeout_s: float = 120.0
    """ack = "receiver": resend the unacknowledged records after this long without progress."""
    ack_timeout_max_s: float = 3600.0
    """The timeout doubles after each resend that brought no progress, up to this."""
    first_ack_wait_s: float = 2.0
    """ack = "receiver": how long a new connection waits for the retained ack before sending."""
    max_in_flight: int = 32
    """Publishes awaiting their PUBACK at once, at most (NOTES.md: 1 at a time ~720 msg/s); the
    window follows the link's measured rate below this (flow.py)."""
    min_range_bytes: int = 4096
    """The smallest range budget: where a connection starts, and the floor on a thin link."""
    target_ack_s: float = 4.0
    """The window holds about this long of the link's measured rate (a live part handed over
    behind it is acknowledged within about this)."""
    live_batch_s: float | None = None
    """Live records are gathered this long into one range (an alert goes at once); None: the
    profile's default (LIVE_BATCH_S), see live_batch."""
    stall_timeout_s: float = 20.0
    """End the connection when messages are in flight and no PUBACK came for this long."""
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    stable_after_s: float = 30.0
    """A connection that lasted this long resets the reconnect backoff (so does one that
    delivered data)."""
    poll_s: float = 5.0
    """Look for new records this often even without a wake-up from the store writer."""
    status_every_s: float = 2.0
    """Refresh backlog size and age on the status board this often."""
    connect_timeout_s: float = 15.0
    fetch_max_records: int = 200_000
    """A fetch on demand of more records than this is refused (one asset-day of 1 s windows
    with their scores is 172,800; about 20 MB in the binary format)."""
    version: str = __version__

    def __post_init__(self) -> None:
        if self.max_records_per_message < 1 or self.max_in_flight < 1:
            raise ValueError("max_records_per_message and max_in_flight must be at least 1")
        if not (self.stall_timeout_s > 0 and self.live_batch >= 0):
            raise ValueError("stall_timeout_s must be positive and live_batch_s not negative")
        if not self.replay_records_per_s > 0:
            raise ValueError("replay_records_per_s must be positive")

    @property
    def live_batch(self) -> float:
        """live_batch_s, or the profile's default when it is not set."""
        return LIVE_BATCH_S[self.detail] if self.live_batch_s is None else self.live_batch_s


def uplink_settings(gateway: str, config: UplinkConfig) -> UplinkSettings:
    """Settings from the validated [uplink] table; ConfigError if a file it names is unusable."""
    password = config.password
    if config.password_file is not None:
        password = read_password(config.password_file)
    return UplinkSettings(
        gateway=gateway,
        broker=config.address,
        username=config.username,
        password=password,
        ca_file=readable_file("ca_file", config.ca_file),
        client_cert=readable_file("client_cert", config.client_cert),
        client_key=readable_file("client_key", config.client_key),
        prefix=config.topic_prefix,
        ack=config.ack,
        max_records_per_message=config.max_records_per_message,
        max_message_bytes=config.max_message_bytes,
        replay_records_per_s=config.replay_records_per_s,
        wire_format=config.format,
        keepalive_s=config.keepalive_s,
        ack_timeout_s=config.ack_timeout_s,
        stall_timeout_s=config.stall_timeout_s,
        live_batch_s=config.live_batch_s,
        detail=config.detail,
        summary_margin_s=config.summary_margin_s,
    )


def read_password(path: str) -> str:
    password = read_text_file("uplink.password_file", path).rstrip("\r\n")
    if not password or "\n" in password:
        raise ConfigError(f"uplink.password_file: {path} must hold the password on one line")
    return password


def readable_file(key: str, path: str | None) -> Path | None:
    if path is None:
        return None
    try:
        readable = os.access(path, os.R_OK) and Path(path).is_file()
    except (OSError, ValueError):  # a NUL or an over-long name
        readable = False
    if not readable:
        raise ConfigError(f"uplink.{key}: {path!r} is not a readable file")
    return Path(path)
