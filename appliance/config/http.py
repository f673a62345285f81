"""The [http] table: the status page's address, token and connection limits."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from appliance.config.fields import PathText, Strict
from appliance.config.files import read_text_file
from appliance.errors import ConfigError

HOST_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = rf"(?=.{{1,253}}$){HOST_LABEL}(\.{HOST_LABEL})*"
TOKEN_PATTERN = r"^[!-~]{16,512}$"
TOKEN_RULE = "a token is 16 to 512 visible ASCII characters (no spaces)"


def _token(token: str) -> str:
    if not re.fullmatch(TOKEN_PATTERN, token):
        raise ValueError(TOKEN_RULE)
    return token


class HttpConfig(Strict):
    """The status page (appliance/web). Read-only without a token: actions that change state
    (acknowledging an alert) need `Authorization: Bearer <token>` and are disabled without one."""

    host: str = "127.0.0.1"
    """Address to bind; 0.0.0.0 serves the plant LAN."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    """0 picks a free port (tests)."""
    token: Annotated[str, AfterValidator(_token)] | None = None
    token_file: PathText | None = None
    """A file holding the token (first line), instead of putting it in the config."""
    max_connections: Annotated[int, Field(ge=2, le=10_000)] = 256
    """Open connections at most (a browser tab holds about two: its /events stream and its chart
    requests; 256 serves ~100 open tabs, bench/bench_page_clients.py). At the
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
