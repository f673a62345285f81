"""Fixtures for the firmware_bridge tests: the committed vectors, split by kind."""

from __future__ import annotations

import pytest

from firmware_bridge.vectors import Vector, is_error, load_vectors


@pytest.fixture(scope="session")
def vectors() -> list[Vector]:
    return load_vectors()


@pytest.fixture(scope="session")
def good_vectors(vectors: list[Vector]) -> list[Vector]:
    return [v for v in vectors if not is_error(v)]
