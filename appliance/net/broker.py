"""Broker URLs, `mqtt[s]://[user[:password]@]host[:port]`, parsed once for the gateway's config,
the demo, the model CLI and the receiver."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerAddress:
    tls: bool
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The address as a URL without credentials (safe to log and show)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    def redacted(self) -> str:
        """The URL with the user name but never the password, for logs."""
        user = f"{self.username}:***@" if self.username else ""
        return self.url.replace("://", f"://{user}", 1)

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_broker_url(url: str) -> BrokerAddress:
    """The address in `url`; ValueError says what is wrong, never showing a password. User and
    password may be %-escaped."""
    shown = shown_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{shown} is not a broker URL: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"{shown}: a broker URL must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"{shown}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{shown}: a broker URL has no path, query or fragment")
    return BrokerAddress(
        tls=parts.scheme == "mqtts",
        host=parts.hostname,
        port=port or DEFAULT_PORTS[parts.scheme],
        username=None if parts.username is None else unquote(parts.username),
        password=None if parts.password is None else unquote(parts.password),
    )


def shown_url(value: object) -> str:
    """A value as an error message shows it: short, and without URL credentials."""
    text = re.sub(r"://[^/@\s]*@", "://***@", repr(value))
    return text if len(text) <= 80 else text[:77] + "..."
