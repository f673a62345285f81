"""The [uplink] table: the broker, its credentials and TLS, and the store-and-forward limits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from appliance.config.fields import PathText, PositiveFloat, Strict
from appliance.net.broker import BrokerAddress
from appliance.net.broker import parse_broker_url as parse_address


def parse_broker_url(url: str) -> BrokerAddress:
    """`mqtt://host[:1883]` or `mqtts://host[:8883]`; ValueError says what is wrong.

    Credentials in the URL are refused: a config file keeps them in username and password_file,
    out of logs (the demo's --broker, which takes them, parses with appliance.net.broker)."""
    address = parse_address(url)
    if address.username or address.password:
        raise ValueError(
            "credentials do not belong in the URL: use username and password_file (or password)"
        )
    return address


TopicPrefix = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", max_length=128)]


class UplinkConfig(Strict):
    """Store-and-forward to an MQTT broker (appliance/uplink/PROTOCOL.md)."""

    broker: str
    """mqtts://host:port (TLS; port 8883 by default) or mqtt://host:port (plain; 1883)."""
    username: str | None = None
    password: str | None = None
    password_file: PathText | None = None
    """A file holding the password (one line); keeps it out of the config file."""
    ca_file: PathText | None = None
    """CA certificate(s) that signed the broker's certificate; default: the system's CAs."""
    client_cert: PathText | None = None
    """Client certificate (PEM) for brokers that authenticate by certificate."""
    client_key: PathText | None = None
    """Its private key, unless client_cert holds it too."""
    allow_insecure: bool = False
    """Allow plain mqtt:// to a host other than this one (data and password in clear)."""
    topic_prefix: TopicPrefix = "appliance"
    ack: Literal["receiver", "broker"] = "receiver"
    """receiver: rows count as delivered when our receiver confirms it committed them;
    broker: as soon as the broker acknowledges (PUBACK), which is weaker (see PROTOCOL.md)."""
    max_records_per_message: Annotated[int, Field(ge=1, le=10_000)] = 500
    max_message_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = 256 * 1024
    """A range is cut short to stay under this size (a single larger record still goes)."""
    replay_records_per_s: PositiveFloat = 1000.0
    """Backlog replay rate after an outage; live records are sent as they come."""
    format: Literal["binary", "json"] = "binary"
    """Wire format of the data messages: binary (msgpack, deflated, feature values as float32;
    about 1/6 of JSON's bytes) or json (readable, for debugging). The receiver reads both."""
    keepalive_s: Annotated[int, Field(ge=5, le=65_535)] = 10
    """MQTT keepalive: a silent link gets a ping after this long and is given up when nothing
    comes back for as long again (a half-open link is noticed within twice this)."""
    ack_timeout_s: Annotated[float, Field(ge=1.0)] = 120.0
    """ack = "receiver": unacknowledged records are sent again after this long without
    progress (doubling while nothing moves)."""
    stall_timeout_s: Annotated[float, Field(ge=1.0, le=3600.0)] = 20.0
    """End the connection (and reconnect) when messages are in flight and no PUBACK came for
    this long: a half-open link, or one far thinner than what was put on it. Time a message
    waits for its turn is not counted."""
    live_batch_s: Annotated[float, Field(ge=0.0, le=600.0)] | None = None
    """Live records are gathered this long into one range (fewer, larger messages); a range
    holding an alert goes at once. 0: each record as soon as it is stored. Not set: 5 s in the
    full profile, 20 s in the summary profile (fewer summary parts; the ack then moves about
    every 20 s)."""
    detail: Literal["full", "summary"] = "full"
    """full: every feature vector and score goes up. summary: per-minute aggregates per asset
    (min/mean/max of each feature, max score, threshold, alarm state), every alert, and the
    windows of an alarm episode (and summary_margin_s before it) in full; the full records
    stay on the gateway (PROTOCOL.md, "Uplink profiles")."""
    summary_margin_s: Annotated[float, Field(ge=0.0, le=3600.0)] = 60.0
    """detail = "summary": the windows this long before an alarm's raise go in full too."""

    @property
    def address(self) -> BrokerAddress:
        return parse_broker_url(self.broker)

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, broker: str) -> str:
        parse_broker_url(broker)
        return broker

    @model_validator(mode="after")
    def _check(self) -> UplinkConfig:
        address = parse_broker_url(self.broker)
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        has_password = self.password is not None or self.password_file is not None
        if has_password and self.username is None:
            raise ValueError("a password needs a username")
        if self.username is not None and not has_password:
            raise ValueError(f"username {self.username!r} needs a password or password_file")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        if not address.tls:
            tls_only = [k for k in ("ca_file", "client_cert") if getattr(self, k) is not None]
            if tls_only:
                raise ValueError(f"{', '.join(tls_only)} need(s) an mqtts:// broker")
            if not address.is_loopback and not self.allow_insecure:
                raise ValueError(
                    f"plain mqtt:// to {address.host} sends data and password in clear: use "
                    "mqtts:// (or set allow_insecure = true on a network you trust)"
                )
        elif not has_password and self.client_cert is None:
            raise ValueError(
                "an mqtts:// broker needs credentials: username with password or "
                "password_file, or client_cert (and client_key)"
            )
        return self
