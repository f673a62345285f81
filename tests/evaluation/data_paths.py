"""Where the shared evaluation data lives (read in place, never copied into the project)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def shared_directory(*parts: str) -> Path:
    directory = SHARED_DATA.joinpath(*parts)
    if not directory.is_dir():
        pytest.skip(f"data not found at {directory}")
    return directory
