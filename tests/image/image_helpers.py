"""Helpers for the image's file tests: unit files read as key -> values (no systemd needed), and
image/smoke (a script without .py) loaded as a module."""

from __future__ import annotations

import importlib.util
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType

SMOKE = Path(__file__).resolve().parents[2] / "image" / "smoke"


def read_unit(path: Path) -> dict[str, list[str]]:
    """Every `key=value` line of a unit file or drop-in, in order; section headers and comments
    skipped (an empty value, as in `ExecStart=`, is kept: it resets the list)."""
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def load_smoke() -> ModuleType:
    """image/smoke as a fresh module (its functions and constants, main() not run)."""
    loader = SourceFileLoader("image_smoke", str(SMOKE))
    spec = importlib.util.spec_from_loader("image_smoke", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module
