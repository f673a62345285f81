"""Time zones in the config: an IANA name checked at load, and the system's own zone for when
none is given."""

from __future__ import annotations

import os
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, available_timezones

from pydantic import AfterValidator

LOCALTIME = Path("/etc/localtime")
UNKNOWN_ZONE = "unknown time zone (give an IANA name, e.g. Europe/Berlin)"


def known_zone(zone: str) -> str:
    """`zone` if it names an IANA zone this system can load; ValueError otherwise."""
    if zone not in available_timezones():
        raise ValueError(UNKNOWN_ZONE)
    try:
        ZoneInfo(zone)
    except (OSError, ValueError):  # a damaged tzdata file
        raise ValueError(UNKNOWN_ZONE) from None
    return zone


ZoneName = Annotated[str, AfterValidator(known_zone)]
"""An IANA time zone name, e.g. "Europe/Berlin"."""


def system_zone(localtime: Path = LOCALTIME) -> tzinfo:
    """The system's zone: $TZ when it names a zone, else /etc/localtime (with its daylight
    saving rules), else UTC."""
    name = os.environ.get("TZ", "").removeprefix(":")
    if name in available_timezones():
        return ZoneInfo(name)
    try:
        with localtime.open("rb") as file:
            return ZoneInfo.from_file(file, key=_zone_key(localtime))
    except (OSError, ValueError):
        return UTC


def _zone_key(localtime: Path) -> str:
    """ "Europe/Berlin" when /etc/localtime links into a zoneinfo tree, else "localtime"."""
    target = str(localtime.resolve())
    _, found, key = target.partition("/zoneinfo/")
    return key if found and key else "localtime"
