"""Numbers as people read them (appliance/status_snapshot/humanize.py): values with units and a
sensible precision, rates, durations, sizes, and times with date and zone."""

from __future__ import annotations

from datetime import UTC
from zoneinfo import ZoneInfo

import pytest

from appliance.status_snapshot.humanize import (
    duration,
    feature_unit,
    number,
    quantity,
    rate,
    size,
    time_text,
)

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (0.012345, "0.0123"),
        (0.5, "0.500"),
        (41.26, "41.3"),
        (-3.14159, "-3.14"),
        (1234.5, "1234"),
        (0.0000123, "1.23e-05"),
        (None, "–"),
        (float("nan"), "–"),
    ],
)
def test_number_keeps_three_significant_digits(value: float | None, text: str) -> None:
    assert number(value) == text


def test_quantity_and_feature_units() -> None:
    assert quantity(0.512, feature_unit("rms", "g")) == "0.512 g"
    assert quantity(41.26, feature_unit("mean", "degC")) == "41.3 °C"
    assert quantity(3.1, feature_unit("crest_factor", "g")) == "3.10"
    assert feature_unit("slope", "degC") == "°C/s"
    assert feature_unit("band_100_200hz", "g") == "g²"
    assert feature_unit("dominant_freq_hz", "g") == "Hz"
    assert quantity(None, "A") == "–"


@pytest.mark.parametrize(
    ("per_s", "text"),
    [
        (1.0, "1.0/s"),
        (0.97, "0.97/s"),
        (0.999, "1.0/s"),
        (9.97, "10/s"),
        (0.0, "0.0/s"),
        (998.4, "998/s"),
        (12.5, "12/s"),
        (0.05, "3.0/min"),
        (None, "–"),
    ],
)
def test_rate(per_s: float | None, text: str) -> None:
    assert rate(per_s) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "0 s"),
        (45, "45 s"),
        (179, "2 min"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
        (86400 * 3 + 3600 * 4 + 59, "3 d 4 h"),
        (None, "–"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("n_bytes", "text"),
    [(512, "512 B"), (4096, "4.1 kB"), (70_405_200_000, "70.4 GB"), (2.5e12, "2.5 TB")],
)
def test_size(n_bytes: float, text: str) -> None:
    assert size(n_bytes) == text


def test_times_have_date_zone_and_24_hours() -> None:
    assert time_text(T0, UTC) == "2023-11-14 22:13:20 UTC"
    berlin = ZoneInfo("Europe/Berlin")
    assert time_text(T0, berlin) == "2023-11-14 23:13:20 CET"
    assert time_text(T0 - 86400 * 180, berlin) == "2023-05-19 00:13:20 CEST"
    assert time_text(T0, ZoneInfo("Asia/Dubai")) == "2023-11-15 02:13:20 UTC+04:00"
    assert time_text(None, UTC) == "–"
