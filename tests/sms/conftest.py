"""Fixtures for the SMS tests (helpers are in sms_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def by_id(tmp_path: Path) -> Path:
    """Where the modem appears, like /dev/serial/by-id on the Pi."""
    return tmp_path / "serial" / "by-id" / "usb-SimTech_SIM7600_Modem_1234567890-if02-port0"
