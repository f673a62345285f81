"""Reading the config file and turning validation errors into lines that name the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from appliance.config.gateway import ApplianceConfig
from appliance.config.toml_nesting import MAX_NESTING, too_deep
from appliance.errors import ConfigError
from appliance.net.broker import shown_url

SECRET_KEYS = frozenset({"pin", "password", "token"})
"""Keys whose bad value is never repeated in an error message."""


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
    if (nested := too_deep(text)) is not None:
        line, key = nested
        raise ConfigError(
            f"{path}: line {line}: {key}: arrays or inline tables nested more than "
            f"{MAX_NESTING} levels deep"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # too_deep missed a way of nesting: still one line
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    return parse_config(data, str(path))


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
            message += f" (got {shown_url(error['input'])})"
        lines.append(f"  {where}: {message}" if where else f"  {message}")
    if len(lines) == 2:
        return f"{origin}: {lines[1].strip()}"
    return "\n".join(lines)


def _format_location(loc: tuple[int | str, ...]) -> str:
    """('assets', 0, 'channels', 1, 'source', 'SerialSource', 'channel') -> assets[0]...channel."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"serial", "i2c"} and out.endswith(".source"):
            continue  # the union tag pydantic inserts; the key itself follows
        else:
            key = part if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", part) else shown_url(part)
            out += f".{key}" if out else key
    return out
