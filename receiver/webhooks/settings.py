"""The `[webhooks]` section of the receiver's config file (docs/DRIFT.md, "Webhooks"): where
drift findings and, optionally, gateway alerts are POSTed, per fleet or per gateway."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from receiver.errors import SettingsError

SEVERITY_RANK = {"warning": 1, "critical": 2}
MAX_SECRET_FILE_BYTES = 4096
SECTION = "webhooks"


@dataclass(frozen=True)
class Route:
    url: str
    secret: bytes = field(repr=False)
    """HMAC-SHA256 key of the X-Appliance-Signature header (from secret_file or secret_env)."""
    gateways: tuple[str, ...] = ("*",)
    """Globs on the gateway id; the default is the whole fleet."""
    findings: bool = True
    """Drift findings (opened, notably updated, closed)."""
    alerts: str | None = None
    """Gateway alerts of at least this severity ("warning" or "critical"); None: none."""

    def matches(self, gateway: str) -> bool:
        return any(fnmatch.fnmatchcase(gateway, pattern) for pattern in self.gateways)

    def wants(self, event: Mapping[str, Any]) -> bool:
        """Whether this route receives the event (a drift finding or a gateway alert)."""
        if not self.matches(str(event.get("gateway", ""))):
            return False
        if event.get("type") == "drift_finding":
            return self.findings
        if event.get("type") == "gateway_alert" and self.alerts is not None:
            rank = SEVERITY_RANK.get(str(event.get("severity")), 0)
            return rank >= SEVERITY_RANK[self.alerts]
        return False


@dataclass(frozen=True)
class WebhookSettings:
    routes: tuple[Route, ...] = ()
    queue_size: int = 1000
    """Events waiting per route at most; beyond, new ones are dropped and counted."""
    max_attempts: int = 8
    """POSTs of one event before it is counted as a dead letter."""
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 300.0
    timeout_s: float = 10.0

    @property
    def wants_alerts(self) -> bool:
        return any(route.alerts is not None for route in self.routes)


def webhook_settings(config: Mapping[str, Any], where: str) -> WebhookSettings:
    """The section from a parsed TOML file (`where` names it in errors); none: no webhooks."""
    section = config.get(SECTION, {})
    if not isinstance(section, Mapping):
        raise SettingsError(f"{where}: [{SECTION}] must be a table")
    known = {"routes", "queue_size", "max_attempts", "initial_backoff_s", "max_backoff_s",
             "timeout_s"}  # fmt: skip
    refuse_unknown(section, known, f"{where} [{SECTION}]")
    routes = section.get("routes", [])
    if not isinstance(routes, list):
        raise SettingsError(f"{where}: [[{SECTION}.routes]] must be an array of tables")
    settings = WebhookSettings(
        routes=tuple(route(item, f"{where} [[{SECTION}.routes]] #{i + 1}")
                     for i, item in enumerate(routes)),
        queue_size=positive(section, "queue_size", 1000, where),
        max_attempts=positive(section, "max_attempts", 8, where),
        initial_backoff_s=positive(section, "initial_backoff_s", 1.0, where),
        max_backoff_s=positive(section, "max_backoff_s", 300.0, where),
        timeout_s=positive(section, "timeout_s", 10.0, where),
    )  # fmt: skip
    return settings


def route(item: Any, where: str) -> Route:
    if not isinstance(item, Mapping):
        raise SettingsError(f"{where}: must be a table")
    refuse_unknown(item, {"url", "gateways", "findings", "alerts", "secret_file", "secret_env"},
                   where)  # fmt: skip
    url = item.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise SettingsError(f"{where}: url must be an http:// or https:// URL, not {url!r}")
    gateways = item.get("gateways", ["*"])
    if isinstance(gateways, str):
        gateways = [gateways]
    if not gateways or not all(isinstance(g, str) and g for g in gateways):
        raise SettingsError(f"{where}: gateways must be a list of globs on the gateway id")
    alerts = item.get("alerts", "none")
    if alerts not in ("none", *SEVERITY_RANK):
        raise SettingsError(f"{where}: alerts must be none, warning or critical, not {alerts!r}")
    findings = item.get("findings", True)
    if not isinstance(findings, bool):
        raise SettingsError(f"{where}: findings must be true or false")
    return Route(url, secret(item, where), tuple(gateways), findings,
                 None if alerts == "none" else alerts)  # fmt: skip


def secret(item: Mapping[str, Any], where: str) -> bytes:
    """The signing key: the first line of secret_file, or $secret_env; one of them is needed
    (the receiving end must be able to trust what it gets)."""
    if "secret_file" in item:
        path = Path(str(item["secret_file"]))
        try:
            data = path.read_bytes()[: MAX_SECRET_FILE_BYTES + 1]
        except OSError as exc:
            raise SettingsError(f"{where}: secret_file {str(path)!r}: {exc.strerror}") from None
        lines = data.splitlines()
        if len(data) > MAX_SECRET_FILE_BYTES or not lines or not lines[0]:
            raise SettingsError(f"{where}: secret_file {str(path)!r}: the first line must hold "
                                "the secret (at most 4 KiB)")  # fmt: skip
        return lines[0]
    name = item.get("secret_env")
    value = os.environ.get(str(name)) if name else None
    if not value:
        unset = f" ({name} is not set)" if name else ""
        raise SettingsError(f"{where}: a secret is needed: secret_file, or secret_env naming a "
                            f"set environment variable{unset}")  # fmt: skip
    return value.encode("utf-8")


def positive(section: Mapping[str, Any], key: str, default: Any, where: str) -> Any:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise SettingsError(f"{where}: [{SECTION}] {key} must be a number > 0, not {value!r}")
    return type(default)(value)


def refuse_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise SettingsError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")  # fmt: skip
