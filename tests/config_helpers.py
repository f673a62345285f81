"""The smallest runnable gateway config as TOML text, for tests that check or run a config file."""

from __future__ import annotations

from pathlib import Path


def minimal_config(
    tmp_path: Path, extra: str = "", *, store: str | None = None, emulate: str = ""
) -> str:
    """One emulated MCU, one vibration channel, the store in tmp_path. `store` replaces the store
    path's TOML value, `emulate` adds lines (each ending in a newline) to [serial.emulate], `extra`
    is appended."""
    store_path = store if store is not None else f'"{tmp_path / "store.db"}"'
    return f"""
[gateway]
id = "gw-1"

[store]
path = {store_path}

[[serial]]
name = "mcu0"
[serial.emulate]
channels = 1
{emulate}
[[assets]]
name = "pump"
[[assets.channels]]
name = "accel"
kind = "vibration"
rate_hz = 1000
unit = "g"
valid_range = [-16, 16]
source = {{ serial = "mcu0", channel = 0 }}
{extra}
"""
