"""Typed gateway configuration, loaded from one TOML file and validated before anything runs.

Every table refuses unknown keys, values are type-checked strictly (a string is never silently
turned into a number) and cross-field rules (window vs Welch segment, duplicate names, sources that
point nowhere) are checked at load time. Errors name the offending key, e.g.
``assets[0].channels[1].rate_hz: Input should be greater than 0``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from appliance.errors import ConfigError

MAX_NESTING = 32
"""Arrays and inline tables nested deeper than this are refused before parsing (a gateway
config needs 3 levels; tomllib would recurse until RecursionError)."""


def _path_text(path: str) -> str:
    if not path:
        raise ValueError("must not be empty")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise ValueError("must not contain control characters (NUL, newline, tab)")
    if path != path.strip():
        raise ValueError("has leading or trailing spaces")
    return path


PathText = Annotated[str, Field(max_length=4096), AfterValidator(_path_text)]
"""A file or directory name: no control characters (a NUL would fail every open), no spaces
around it."""

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
PositiveFloat = Annotated[float, Field(gt=0)]
BandEdges = Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=2, max_length=2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class GatewayConfig(_Strict):
    id: Name
    """Gateway identifier, unique per site; used in MQTT topics and SMS texts."""


class StoreConfig(_Strict):
    path: PathText = "/var/lib/appliance/appliance.db"
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    """SQLite synchronous mode under WAL: NORMAL survives process crashes; FULL also power cuts."""
    max_mb: PositiveFloat | None = 1024.0
    """Size cap; oldest routine feature records are evicted first (and counted)."""
    retention_days: PositiveFloat | None = 90.0


MAX_WINDOW_SAMPLES = 1 << 22
"""Samples in one vibration window (e.g. 40 s at 100 kHz): the rings and per-segment spectra of
every channel are sized from it, so it bounds the feature engine's memory."""
MAX_SEGMENTS_PER_WINDOW = 4096
MAX_SPECTRUM_VALUES = 1 << 23
"""Welch segments per window times frequency bins per segment: the per-segment spectra kept."""


class FeaturesConfig(_Strict):
    window_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    stride_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    nperseg: Annotated[int, Field(ge=8, le=65536)] = 256
    noverlap: Annotated[int, Field(ge=0)] = 128
    bands_hz: (
        list[Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=2, max_length=2)]]
        | None
    ) = None
    """Band-energy edges [[lo, hi], ...] in Hz; default: bands scaled to each channel's Nyquist."""
    slow_window_s: Annotated[float, Field(gt=0, le=86400)] = 60.0

    @model_validator(mode="after")
    def _check_segments(self) -> FeaturesConfig:
        if self.noverlap >= self.nperseg:
            raise ValueError(
                f"noverlap ({self.noverlap}) must be smaller than nperseg ({self.nperseg})"
            )
        if self.stride_s > self.window_s:
            raise ValueError(
                f"stride_s ({self.stride_s}) must not exceed window_s ({self.window_s})"
            )
        for i, (lo, hi) in enumerate(self.bands_hz or []):
            if lo >= hi:
                raise ValueError(f"bands_hz[{i}]: lower edge {lo} must be below upper edge {hi}")
        return self


class McuEmulation(_Strict):
    """Run an emulated microcontroller on a pseudo-terminal instead of opening real hardware."""

    channels: Annotated[int, Field(ge=1, le=32)] = 4
    rate_hz: Annotated[int, Field(gt=0, le=100_000)] = 1000
    faults: list[str] = []


class SerialConfig(_Strict):
    name: Name
    port: str = ""
    """Device path; prefer /dev/serial/by-id/... so it survives re-enumeration."""
    baudrate: Annotated[int, Field(gt=0)] = 921600
    emulate: McuEmulation | None = None

    @field_validator("port")
    @classmethod
    def _absolute_device_path(cls, port: str) -> str:
        if port:
            _path_text(port)
            if not port.startswith("/"):
                raise ValueError("must be an absolute device path (/dev/serial/by-id/...)")
        return port

    @model_validator(mode="after")
    def _port_or_emulation(self) -> SerialConfig:
        if not self.port and self.emulate is None:
            raise ValueError("port is required (or an [serial.emulate] table for a simulated MCU)")
        return self


class I2cConfig(_Strict):
    name: Name
    bus: int | str
    """Linux bus number (/dev/i2c-N), or "emulated" for the built-in emulated bus."""
    poll_s: Annotated[float, Field(ge=0.05, le=3600)] = 1.0

    @field_validator("bus")
    @classmethod
    def _bus_number_or_emulated(cls, bus: int | str) -> int | str:
        if (isinstance(bus, int) and bus >= 0) or bus == "emulated":
            return bus
        raise ValueError('must be a bus number >= 0 (/dev/i2c-N) or "emulated"')


class SerialSource(_Strict):
    serial: Name
    channel: Annotated[int, Field(ge=0, le=255)]
    """Channel id in the MCU's frames (see firmware_bridge/PROTOCOL.md)."""


I2cSensor = Literal["tmp117", "ina219"]
I2cQuantity = Literal["temperature", "bus_voltage", "shunt_voltage", "current", "power"]
SENSOR_QUANTITIES: dict[str, set[str]] = {
    "tmp117": {"temperature"},
    "ina219": {"bus_voltage", "shunt_voltage", "current", "power"},
}


class I2cSource(_Strict):
    i2c: Name
    sensor: I2cSensor
    address: Annotated[int, Field(ge=0x03, le=0x77)]
    quantity: I2cQuantity
    shunt_ohms: PositiveFloat = 0.1
    """INA219 only: shunt resistor value."""
    max_current_a: PositiveFloat = 3.2
    """INA219 only: the current range used to compute its calibration register."""

    @model_validator(mode="after")
    def _quantity_fits_sensor(self) -> I2cSource:
        if self.quantity not in SENSOR_QUANTITIES[self.sensor]:
            allowed = ", ".join(sorted(SENSOR_QUANTITIES[self.sensor]))
            raise ValueError(
                f"quantity {self.quantity!r} is not measured by {self.sensor} ({allowed})"
            )
        return self


def _source_kind(value: Any) -> str | None:
    if isinstance(value, SerialSource | I2cSource):
        return "serial" if isinstance(value, SerialSource) else "i2c"
    if isinstance(value, dict):
        return "serial" if "serial" in value else "i2c" if "i2c" in value else None
    return None


Source = Annotated[
    Annotated[SerialSource, Tag("serial")] | Annotated[I2cSource, Tag("i2c")],
    Discriminator(
        _source_kind,
        custom_error_type="source_kind",
        custom_error_message="source needs either a 'serial' key (MCU channel) or an 'i2c' key",
    ),
]

ChannelKind = Literal["vibration", "temperature", "current", "voltage", "power", "pressure", "flow"]


class ChannelConfig(_Strict):
    name: Name
    kind: ChannelKind
    rate_hz: Annotated[float, Field(gt=0, le=1_000_000)]
    unit: Annotated[str, Field(min_length=1, max_length=16)]
    valid_range: Annotated[list[float], Field(min_length=2, max_length=2)]
    """[min, max] physically possible values; readings outside mean a broken sensor."""
    source: Source

    @property
    def is_vibration(self) -> bool:
        return self.kind == "vibration"

    @model_validator(mode="after")
    def _check(self) -> ChannelConfig:
        lo, hi = self.valid_range
        if lo >= hi:
            raise ValueError(f"valid_range: min {lo} must be below max {hi}")
        if self.is_vibration and not isinstance(self.source, SerialSource):
            raise ValueError("a vibration channel must come from a serial (MCU) source")
        return self


class ModelConfig(_Strict):
    """How the asset's windows are scored (docs/DETECTION.md)."""

    bundle: PathText | None = None
    """Directory of the asset's model bundle (manifest.json + model.tflite). Without one the
    asset commissions: it learns normal on the gateway for `commission_hours`, then scores."""
    commission_hours: PositiveFloat = 24.0
    commission_min_windows: Annotated[int, Field(ge=20)] = 600
    """Commissioning goes on past its period until it has seen this many windows."""
    rule: Literal["adaptive", "fixed"] = "adaptive"
    k: PositiveFloat = 6.5
    """Adaptive rule: threshold = centre + k * spread of recent non-alarmed errors."""
    statistic: Literal["mean_std", "median_mad"] = "mean_std"
    backend: Literal["ai-edge-litert", "tflite-runtime"] = "ai-edge-litert"


class AssetConfig(_Strict):
    name: Name
    description: str = ""
    channels: Annotated[list[ChannelConfig], Field(min_length=1)]
    model: ModelConfig = ModelConfig()
    """Without a bundle the asset commissions itself (see ModelConfig.bundle)."""


@dataclass(frozen=True)
class BrokerAddress:
    tls: bool
    host: str
    port: int

    @property
    def url(self) -> str:
        """The address as a URL without credentials (safe to log and show)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_broker_url(url: str, *, allow_credentials: bool = False) -> BrokerAddress:
    """`mqtt://host[:1883]` or `mqtts://host[:8883]`; ValueError says what is wrong.

    Credentials in the URL are refused unless `allow_credentials` (the demo's --broker takes
    them; a config file keeps them in username/password_file, out of logs)."""
    shown = _shown(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{shown} is not a broker URL: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"{shown}: the scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"{shown}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{shown}: a broker URL has no path, query or fragment")
    if (parts.username or parts.password) and not allow_credentials:
        raise ValueError(
            "credentials do not belong in the URL: use username and password_file (or password)"
        )
    tls = parts.scheme == "mqtts"
    return BrokerAddress(tls, parts.hostname, port or (8883 if tls else 1883))


TopicPrefix = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", max_length=128)]


class UplinkConfig(_Strict):
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
    keepalive_s: Annotated[int, Field(ge=5, le=65_535)] = 60
    ack_timeout_s: Annotated[float, Field(ge=1.0)] = 120.0
    """ack = "receiver": unacknowledged records are sent again after this long without
    progress (doubling while nothing moves)."""

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


def _e164(number: str) -> str:
    if not re.fullmatch(r"\+[1-9][0-9]{6,14}", number):
        raise ValueError(
            "must be an international number in E.164 form: +, country code and number, "
            "7-15 digits, no spaces (e.g. +491701234567)"
        )
    return number


def _sim_pin(pin: str) -> str:
    if not re.fullmatch(r"[0-9]{4,8}", pin):
        raise ValueError("a SIM PIN is 4 to 8 digits")
    return pin


E164 = Annotated[str, AfterValidator(_e164)]
SimPin = Annotated[str, AfterValidator(_sim_pin)]
AlertFamily = Literal[
    "anomaly", "systemic", "impossible_value", "flatline", "spike", "dropout", "drift"
]
"""What an alert is about: its kind without _raised/_escalated/_cleared."""
AlarmEvent = Literal["raised", "escalated", "cleared"]
UNSTABLE_PORTS = ("/dev/ttyUSB", "/dev/ttyACM")
SECRET_KEYS = frozenset({"pin", "password", "token"})
"""Keys whose bad value is never repeated in an error message."""


class SmsConfig(_Strict):
    """Critical alerts by SMS through a GSM modem (appliance/sms/: policy.py, sender.py)."""

    port: PathText | None = None
    """The modem's AT port by a stable name: /dev/serial/by-id/... or the udev rule's
    /dev/appliance/modem (image/udev/). /dev/ttyUSBn and /dev/ttyACMn are refused: their
    numbers change when USB re-enumerates."""
    emulate: bool = False
    """Run an emulated SIM800 on a pseudo-terminal instead (the demo; no SMS leaves)."""
    baudrate: Annotated[int, Field(gt=0)] = 115200
    pin: SimPin | None = None
    pin_file: PathText | None = None
    """A file holding the SIM PIN (one line); keeps it out of the config file."""
    recipients: Annotated[list[E164], Field(min_length=1, max_length=20)]
    severities: Annotated[list[Literal["warning", "critical"]], Field(min_length=1)] = ["critical"]
    """Raised/escalated alerts of these severities go by SMS; a cleared alert goes when its
    alarm's raise or escalation went."""
    events: Annotated[list[AlarmEvent], Field(min_length=1)] = ["raised", "escalated", "cleared"]
    kinds: Annotated[list[AlertFamily], Field(min_length=1)] | None = None
    """Alert families that may go by SMS; default: all."""
    max_per_hour: Annotated[int, Field(ge=1, le=60)] = 6
    """Per recipient, in any 60 minutes; what is held back is summarised in the next SMS."""
    max_per_day: Annotated[int, Field(ge=1, le=500)] = 30
    """Per recipient, in any 24 hours."""
    give_up_after_s: Annotated[float, Field(ge=60, le=7 * 86400)] = 6 * 3600.0
    """A message not sent by then is given up: status page, log, and an sms_given_up alert
    over the uplink."""
    retry_initial_s: Annotated[float, Field(ge=1, le=3600)] = 30.0
    """Backoff after a failed send, doubling per attempt up to retry_max_s."""
    retry_max_s: Annotated[float, Field(ge=1, le=86400)] = 900.0
    max_copies: Annotated[int, Field(ge=1, le=10)] = 2
    """A message that may have reached its recipient this many times without the modem
    confirming it (no answer after it went out) is given up, visibly, rather than resent."""
    timezone: str = "UTC"
    """IANA zone for the local time in the text, e.g. "Europe/Berlin"."""
    power_cycle_gpio: Annotated[int, Field(ge=0, le=1023)] | None = None
    """GPIO line (offset on power_cycle_gpio_chip) that cuts the modem's power while active
    (appliance/sms/gpio.py); pulsed after power_cycle_after consecutive failures."""
    power_cycle_gpio_chip: Annotated[str, Field(pattern=r"^gpiochip[0-9]{1,3}$")] = "gpiochip0"
    power_cycle_active_low: bool = False
    power_cycle_off_s: Annotated[float, Field(ge=0.1, le=60)] = 3.0
    power_cycle_after: Annotated[int, Field(ge=1, le=100)] = 5

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        unknown = "unknown time zone (give an IANA name, e.g. Europe/Berlin)"
        if zone not in available_timezones():
            raise ValueError(unknown)
        try:
            ZoneInfo(zone)
        except (OSError, ValueError):  # a damaged tzdata file
            raise ValueError(unknown) from None
        return zone

    @model_validator(mode="after")
    def _check(self) -> SmsConfig:
        if (self.port is None) == (not self.emulate):
            raise ValueError("give the modem's port, or emulate = true (not both)")
        if self.port is not None:
            if not self.port.startswith("/"):
                raise ValueError(f"port {self.port!r} must be an absolute device path")
            if self.port.startswith(UNSTABLE_PORTS):
                raise ValueError(
                    f"port {self.port!r} can change name when USB re-enumerates: use "
                    "/dev/serial/by-id/... or /dev/appliance/modem (image/udev/)"
                )
        if self.pin is not None and self.pin_file is not None:
            raise ValueError("give pin or pin_file, not both")
        _refuse_duplicates("recipients", self.recipients)
        if self.max_per_hour > self.max_per_day:
            raise ValueError(
                f"max_per_hour ({self.max_per_hour}) exceeds max_per_day ({self.max_per_day})"
            )
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError(
                f"retry_max_s ({self.retry_max_s}) is below retry_initial_s "
                f"({self.retry_initial_s})"
            )
        if self.give_up_after_s <= self.retry_initial_s:
            raise ValueError(
                f"give_up_after_s ({self.give_up_after_s}) leaves no room for a retry "
                f"(retry_initial_s {self.retry_initial_s})"
            )
        if self.emulate and self.power_cycle_gpio is not None:
            raise ValueError("power_cycle_gpio switches real hardware: not with emulate = true")
        return self


HOST_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = rf"(?=.{{1,253}}$){HOST_LABEL}(\.{HOST_LABEL})*"
TOKEN_PATTERN = r"^[!-~]{16,512}$"
TOKEN_RULE = "a token is 16 to 512 visible ASCII characters (no spaces)"


def _token(token: str) -> str:
    if not re.fullmatch(TOKEN_PATTERN, token):
        raise ValueError(TOKEN_RULE)
    return token


class HttpConfig(_Strict):
    """The status page (appliance/web). Read-only without a token: actions that change state
    (acknowledging an alert) need `Authorization: Bearer <token>` and are disabled without one."""

    host: str = "127.0.0.1"
    """Address to bind; 0.0.0.0 serves the plant LAN."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    """0 picks a free port (tests)."""
    token: Annotated[str, AfterValidator(_token)] | None = None
    token_file: PathText | None = None
    """A file holding the token (first line), instead of putting it in the config."""
    max_connections: Annotated[int, Field(ge=2, le=10_000)] = 64
    """Open connections at most (a browser tab holds one for /events and a few more). At the
    cap a new connection closes the longest-idle one (no request in progress), or gets a 503
    when every connection is busy; keeps a flood of clients from using up file descriptors."""
    idle_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 15.0
    """A connection is closed when no complete request head has arrived this long after it
    opened or after its last response (idle keep-alive and slow headers alike)."""
    body_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """A request body (a model bundle is the largest) must arrive in full within this."""

    @field_validator("host")
    @classmethod
    def _address_or_name(cls, host: str) -> str:
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(host)
            return host
        if not re.fullmatch(HOST_NAME, host):
            raise ValueError("must be an IP address (0.0.0.0: every interface) or a host name")
        return host

    @model_validator(mode="after")
    def _one_token(self) -> HttpConfig:
        if self.token is not None and self.token_file is not None:
            raise ValueError("give token or token_file, not both")
        return self

    def read_token(self) -> str | None:
        """The token, or None (state-changing endpoints disabled); ConfigError if unreadable."""
        if self.token_file is None:
            return self.token
        token = read_text_file("http.token_file", self.token_file).strip()
        if not re.fullmatch(TOKEN_PATTERN, token):
            raise ConfigError(f"http.token_file: {self.token_file}: {TOKEN_RULE}")
        return token


def read_text_file(key: str, path: str) -> str:
    """A small UTF-8 file a config key names; ConfigError naming the key if it cannot be read."""
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_SECRET_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{key}: cannot read {path}: {reason}") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"{key}: {path} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: {path} is not UTF-8 text") from None


MAX_SECRET_FILE_BYTES = 64 * 1024
"""Token, password, PIN and key files hold one line; anything bigger is the wrong file."""


class ModelsConfig(_Strict):
    """Over-the-air model bundles (docs/MODELS.md): signed bundles arrive through the inbox
    directory, the uplink's MQTT command topic or the status page, are checked and canaried,
    then swapped in between two windows."""

    public_keys: list[Annotated[str, Field(min_length=40, max_length=64)]] = []
    """Ed25519 public keys (base64, from `appliance model keygen`) whose signatures are
    accepted. Several keys allow a key rotation."""
    public_key_files: list[PathText] = []
    """Files holding one such key each, instead of (or besides) public_keys."""
    directory: PathText | None = None
    """Where accepted bundles and the active/previous choice are kept; default: `ota-models`
    beside the store's database. Not the directory of configured bundles: it is pruned."""
    inbox: PathText | None = None
    """Watched directory: a bundle archive (.tar) dropped here is installed; default:
    `model-inbox` beside the store's database. Write it under another name (or a name starting
    with ".") and rename it in when complete."""
    inbox_poll_s: Annotated[float, Field(gt=0, le=3600)] = 2.0
    canary_windows: Annotated[int, Field(ge=1)] = 600
    """Newest stored windows (not scored anomalous) the new model must score before it swaps."""
    canary_min_windows: Annotated[int, Field(ge=1)] = 60
    """Fewer stored windows than this: refused (no evidence the model fits the asset)."""
    canary_max_alarm_fraction: Annotated[float, Field(ge=0, le=1)] = 0.02
    """Refused if more than this fraction of canary windows exceeds the model's threshold."""
    probation_s: Annotated[float, Field(ge=0)] = 3600.0
    """After a swap, the new model is rolled back automatically if, within this time, ..."""
    probation_min_windows: Annotated[int, Field(ge=1)] = 60
    probation_max_alarm_fraction: Annotated[float, Field(ge=0, le=1)] = 0.2
    """... more than this fraction of its (at least probation_min_windows) windows alarm."""
    keep_bundles: Annotated[int, Field(ge=2, le=100)] = 5
    """Bundles kept per asset (the active one and those before it, for rollback)."""

    @model_validator(mode="after")
    def _needs_a_key(self) -> ModelsConfig:
        if not self.public_keys and not self.public_key_files:
            raise ValueError(
                "needs public_keys or public_key_files: an unsigned bundle is never installed"
            )
        if self.canary_min_windows > self.canary_windows:
            raise ValueError("canary_min_windows must not exceed canary_windows")
        return self


class ApplianceConfig(_Strict):
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

    @model_validator(mode="after")
    def _cross_checks(self) -> ApplianceConfig:
        _refuse_duplicates("serial", [s.name for s in self.serial])
        _refuse_duplicates("i2c", [b.name for b in self.i2c])
        _refuse_duplicates("assets", [a.name for a in self.assets])
        for i, asset in enumerate(self.assets):
            _refuse_duplicates(f"assets[{i}].channels", [c.name for c in asset.channels])
            for j, channel in enumerate(asset.channels):
                self._check_channel(f"assets[{i}].channels[{j}]", channel)
        serial_ids = [
            (c.source.serial, c.source.channel)
            for a in self.assets
            for c in a.channels
            if isinstance(c.source, SerialSource)
        ]
        _refuse_duplicates("serial channel source", [f"{s}:{ch}" for s, ch in serial_ids])
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


def _refuse_duplicates(where: str, names: list[str]) -> None:
    repeated = sorted(n for n, count in Counter(names).items() if count > 1)
    if repeated:
        raise ValueError(f"{where}: duplicate name(s) {', '.join(map(repr, repeated))}")


def parse_config(data: dict[str, Any], origin: str = "<config>") -> ApplianceConfig:
    """Validate an already-parsed TOML document; raise ConfigError naming each bad key."""
    try:
        return ApplianceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(origin, exc)) from None
    except RecursionError:
        raise ConfigError(f"{origin}: values nested too deeply") from None


def load_config(path: Path) -> ApplianceConfig:
    """Read, parse and validate the file; ConfigError (never another exception) otherwise."""
    try:
        raw = path.read_bytes()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"{path}: cannot read config: {reason}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the "
            "file as UTF-8"
        ) from None
    if (too_deep := _too_deep(text)) is not None:
        line, key = too_deep
        raise ConfigError(
            f"{path}: line {line}: {key}: arrays or inline tables nested more than "
            f"{MAX_NESTING} levels deep"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # _too_deep missed a way of nesting: still one line
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    return parse_config(data, str(path))


def _too_deep(text: str) -> tuple[int, str] | None:
    """(line, key) where arrays/inline tables first nest deeper than MAX_NESTING, else None.

    A scan of brackets outside strings and comments; tomllib itself recurses per level."""
    depth, line, key, table, i = 0, 1, "", "", 0
    while i < len(text):
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "#":
            i = _line_end(text, i) - 1
        elif c in "\"'":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else c
            end = _string_end(text, i + len(quote), quote)
            line += text.count("\n", i, end)
            i = end - 1
        elif c in "[{":
            if depth == 0:
                statement = text[text.rfind("\n", 0, i) + 1 : i]
                if "=" not in statement:  # a [table] or [[array]] header
                    table = text[i : _line_end(text, i)].strip("[] \t")
                key = ".".join(filter(None, (table, statement.split("=")[0].strip())))
            depth += 1
            if depth > MAX_NESTING:
                return line, key or "(top level)"
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return None


def _line_end(text: str, start: int) -> int:
    end = text.find("\n", start)
    return len(text) if end < 0 else end


def _string_end(text: str, start: int, quote: str) -> int:
    """Index just past the string that opened with `quote` before `start` (or the text's end)."""
    i = start
    while i < len(text):
        if text[i] == "\\" and quote[0] == '"':
            i += 2
            continue
        if text.startswith(quote, i):
            return i + len(quote)
        if text[i] == "\n" and len(quote) == 1:
            return i  # an unterminated one-line string: tomllib reports it
        i += 1
    return len(text)


def _describe(origin: str, exc: ValidationError) -> str:
    """One line `origin: key.path: message` for one problem; a header and a line each for more."""
    lines = [f"{origin}: {exc.error_count()} problem(s)"]
    for error in exc.errors(include_url=False):
        where = _format_location(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (not part of the configuration schema)"
        elif (
            "input" in error
            and error["type"] not in {"missing"}
            and not isinstance(error["input"], dict | list)
            and not SECRET_KEYS.intersection(map(str, error["loc"]))
        ):
            message += f" (got {_shown(error['input'])})"
        lines.append(f"  {where}: {message}" if where else f"  {message}")
    if len(lines) == 2:
        return f"{origin}: {lines[1].strip()}"
    return "\n".join(lines)


def _shown(value: Any) -> str:
    """A refused value as the error shows it: short, and without URL credentials."""
    text = repr(value)
    text = re.sub(r"://[^/@\s]*@", "://***@", text)
    return text if len(text) <= 80 else text[:77] + "..."


def _format_location(loc: tuple[int | str, ...]) -> str:
    """('assets', 0, 'channels', 1, 'source', 'SerialSource', 'channel') -> assets[0]...channel."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"serial", "i2c"} and out.endswith(".source"):
            continue  # the union tag pydantic inserts; the key itself follows
        else:
            key = part if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", part) else _shown(part)
            out += f".{key}" if out else key
    return out
