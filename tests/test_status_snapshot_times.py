"""The zone the status page shows times in: [gateway] timezone (an IANA name, checked when the
config loads), else the system's own zone; the page's JSON says which it used."""

from __future__ import annotations

import copy
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from appliance.config import parse_config
from appliance.config.zones import system_zone
from appliance.errors import ConfigError
from appliance.status import StatusBoard
from appliance.web.snapshot import WebState

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gateway.toml"
ZONEINFO = Path("/usr/share/zoneinfo")
T0 = 1_700_000_000.0


def example(**gateway: Any) -> dict[str, Any]:
    document = tomllib.loads(EXAMPLE.read_text())
    changed = copy.deepcopy(document)
    changed["gateway"].update(gateway)
    return changed


def test_the_configured_zone_is_used() -> None:
    config = parse_config(example(timezone="Europe/Berlin"))
    assert config.gateway.zone() == ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("zone", ["Europe/Bonn", "CET+1", "zone.tab", "../etc/passwd", ""])
def test_an_unknown_zone_is_refused_naming_the_key(zone: str) -> None:
    with pytest.raises(ConfigError, match=r"site.toml: gateway.timezone: unknown time zone"):
        parse_config(example(timezone=zone), "site.toml")


def test_a_zone_must_be_a_string() -> None:
    with pytest.raises(ConfigError, match=r"gateway.timezone"):
        parse_config(example(timezone=1), "site.toml")


def test_without_a_zone_the_systems_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/Chicago")
    config = parse_config(example())
    assert config.gateway.timezone is None
    assert config.gateway.zone() == ZoneInfo("America/Chicago")


@pytest.mark.skipif(not ZONEINFO.is_dir(), reason="needs the system's tzdata")
def test_system_zone_from_the_localtime_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TZ", raising=False)
    link = tmp_path / "localtime"
    link.symlink_to(ZONEINFO / "Asia" / "Tokyo")
    zone = system_zone(link)
    assert getattr(zone, "key", None) == "Asia/Tokyo"
    assert datetime.fromtimestamp(T0, zone).strftime("%H:%M %Z") == "07:13 JST"
    assert system_zone(tmp_path / "missing") is UTC


def test_the_page_json_carries_the_zone_and_times_in_it(tmp_path: Path) -> None:
    board = StatusBoard("gw-1", started_utc=T0 - 60, zone=ZoneInfo("Europe/Berlin"))
    state = WebState(board, tmp_path, token_set=False, clock=lambda: T0)
    page = state.snapshot()
    assert page["now_text"] == "2023-11-14 23:13:20 CET"
    assert page["timezone"] == {"name": "Europe/Berlin", "utc_offset_s": 3600.0}
    assert page["uptime_text"] == "1 min"
