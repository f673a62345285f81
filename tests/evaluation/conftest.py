from __future__ import annotations

from pathlib import Path

import pytest

from .data_paths import shared_directory


@pytest.fixture
def skab_valve1() -> Path:
    return shared_directory("skab", "valve1")


@pytest.fixture
def cwru_dir() -> Path:
    return shared_directory("cwru")
