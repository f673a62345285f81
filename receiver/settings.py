"""What one receiver instance needs to run, from the command line."""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from appliance.net.broker import BrokerAddress
from appliance.net.broker import parse_broker_url as parse_address
from appliance.uplink.schema import MAX_PART_BYTES, SchemaError, check_name, check_prefix
from receiver.drift.settings import DriftSettings, drift_settings
from receiver.errors import SettingsError
from receiver.web.settings import HttpSettings, http_settings
from receiver.webhooks.settings import WebhookSettings, webhook_settings

DEFAULT_PREFIX = "appliance"
DEFAULT_GROUP = "receivers"
PASSWORD_ENV = "APPLIANCE_RECEIVER_PASSWORD"
MAX_PASSWORD_FILE_BYTES = 4096


def parse_broker_url(url: str) -> BrokerAddress:
    """`mqtt[s]://[user[:password]@]host[:port]`; user and password may be %-escaped. The
    error names --broker and never shows the password."""
    try:
        return parse_address(url)
    except ValueError as exc:
        raise SettingsError(f"--broker {exc}") from None


def with_password(
    broker: BrokerAddress, password_file: Path | None, environ: Mapping[str, str]
) -> BrokerAddress:
    """The broker address with its password from `password_file` (first line) or, failing
    that, from $APPLIANCE_RECEIVER_PASSWORD, so that it never shows in `ps`. A password in the
    URL still works; given twice (URL and file) it is refused rather than guessed."""
    if password_file is not None:
        if broker.password is not None:
            raise SettingsError("the broker password is in --broker and in --password-file: "
                                "keep --password-file (the URL shows in ps)")  # fmt: skip
        password: str | None = read_password_file(password_file)
    else:
        password = broker.password or environ.get(PASSWORD_ENV) or None
    if password is not None and not broker.username:
        raise SettingsError(
            f"a broker password (--password-file, ${PASSWORD_ENV}) needs a user name in --broker:"
            " mqtts://USER@host"
        )
    return replace(broker, password=password)


def read_password_file(path: Path) -> str:
    """The file's first line (without its line ending); never echoes the content."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PASSWORD_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise SettingsError(f"--password-file {str(path)!r}: cannot read it ({exc})") from None
    if len(data) > MAX_PASSWORD_FILE_BYTES:
        raise SettingsError(f"--password-file {str(path)!r}: longer than "
                            f"{MAX_PASSWORD_FILE_BYTES} bytes; not a password file")  # fmt: skip
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise SettingsError(f"--password-file {str(path)!r}: not UTF-8 text") from None
    if not lines or not lines[0]:
        raise SettingsError(f"--password-file {str(path)!r}: the first line is empty")
    return lines[0]


def read_config(path: Path | None) -> tuple[DriftSettings, WebhookSettings]:
    """The [drift] and [webhooks] sections of a --config TOML file (defaults without one)."""
    if path is None:
        return DriftSettings(), WebhookSettings()
    where = f"--config {str(path)!r}"
    try:
        with path.open("rb") as file:
            config = tomllib.load(file)
    except OSError as exc:
        raise SettingsError(f"{where}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{where}: not valid TOML ({exc})") from None
    unknown = sorted(set(config) - {"drift", "webhooks", "http"})
    if unknown:
        raise SettingsError(f"{where}: unknown section(s) {', '.join(unknown)}")
    return drift_settings(config, where), webhook_settings(config, where)


def read_http_config(path: Path | None) -> HttpSettings | None:
    """The [http] section of a --config TOML file (the fleet page), None without one."""
    if path is None:
        return None
    with path.open("rb") as file:  # read_config has read it and said what is wrong with it
        return http_settings(tomllib.load(file), f"--config {str(path)!r}")


def default_client_id() -> str:
    """Unique per process; not stable across restarts (see ReceiverSettings.client_id)."""
    return f"appliance-receiver-{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class ReceiverSettings:
    broker: BrokerAddress
    db_url: str
    ca_path: Path | None = None
    prefix: str = DEFAULT_PREFIX
    group: str = DEFAULT_GROUP
    client_id: str | None = None
    """A stable id gives a persistent session: messages routed to this instance while it is down
    wait for it at the broker. Without one the instance uses a per-process id and a clean
    session, because mosquitto keeps routing a share of the traffic to every persistent member of
    the group, including one that never comes back."""
    stats_interval_s: float = 60.0
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 5.0
    """A few receivers retrying every few seconds cost the broker nothing; waiting longer only
    keeps the gateways' parts from being taken (a restarted mosquitto has forgotten the shared
    subscription until a receiver subscribes again)."""
    db_retry_max_s: float = 30.0
    max_payload_bytes: int = MAX_PART_BYTES
    """Larger messages are refused unread (a gateway's max_message_bytes must stay below)."""
    drift: DriftSettings = field(default_factory=DriftSettings)
    """[drift] of --config: the periodic drift analysis (docs/DRIFT.md)."""
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    """[webhooks] of --config: where drift findings and gateway alerts are POSTed."""
    http: HttpSettings | None = None
    """[http] of --config or --http: where the fleet page listens (receiver/web/); none: off."""

    def __post_init__(self) -> None:
        try:
            check_prefix(self.prefix)
            check_name(self.group, "group")
            if self.client_id is not None:
                check_name(self.client_id, "client id")
        except SchemaError as exc:
            raise SettingsError(str(exc)) from exc
        if self.ca_path is not None and not self.ca_path.is_file():
            raise SettingsError(f"CA file {self.ca_path} does not exist")
        if self.ca_path is not None and not self.broker.tls:
            raise SettingsError("--ca given but the broker URL is mqtt://; use mqtts://")
        if self.max_payload_bytes < 1024:
            raise SettingsError(
                f"max payload bytes must be at least 1024, not {self.max_payload_bytes}"
            )

    @property
    def persistent_session(self) -> bool:
        return self.client_id is not None

    @property
    def effective_client_id(self) -> str:
        return self.client_id or default_client_id()
