"""The small files a config key names (passwords, tokens, PINs, keys), read with the key named in
the error."""

from __future__ import annotations

from pathlib import Path

from appliance.errors import ConfigError

MAX_SECRET_FILE_BYTES = 64 * 1024
"""Token, password, PIN and key files hold one line; anything bigger is the wrong file."""


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
