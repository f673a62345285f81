"""[http] of the receiver's --config (or --http HOST:PORT): where the fleet page listens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from receiver.errors import SettingsError

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class HttpSettings:
    host: str = DEFAULT_HOST
    """The address the fleet page listens on: 127.0.0.1 by default; 0.0.0.0 for every
    interface (put a TLS proxy in front: the page is read-only, but it names every gateway)."""
    port: int = 8080
    """The TCP port (0: any free port, for tests)."""


def parse_listen(text: str, where: str) -> HttpSettings:
    """`HOST:PORT` (`[::1]:8080` for IPv6) or `:PORT` for 127.0.0.1."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise SettingsError(f"{where}: {text!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    host = host.strip("[]") or DEFAULT_HOST
    return HttpSettings(host=host, port=int(port_text))


def http_settings(config: dict[str, Any], where: str) -> HttpSettings | None:
    """The [http] table of a --config file: `listen = "HOST:PORT"`; None without one."""
    table = config.get("http")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise SettingsError(f"{where}: [http] must be a table")
    unknown = sorted(set(table) - {"listen"})
    if unknown:
        raise SettingsError(f"{where}: [http]: unknown key(s) {', '.join(unknown)}")
    listen = table.get("listen")
    if not isinstance(listen, str):
        raise SettingsError(f'{where}: [http] listen must be "HOST:PORT", not {listen!r}')
    return parse_listen(listen, f"{where}: [http] listen")
