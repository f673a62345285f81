"""One exception root for the uplink package."""

from __future__ import annotations

from appliance.errors import ApplianceError


class UplinkError(ApplianceError):
    """Root of every error the uplink (schema and publisher) raises on purpose."""


class SchemaError(UplinkError):
    """A topic, name or payload does not follow appliance/uplink/PROTOCOL.md.

    The message names the field and where it was found; `reason` is a short stable code
    (e.g. "bad_json", "gateway_mismatch") that receivers use as a counter key.
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason
