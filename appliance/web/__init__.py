"""The status page: an aiohttp app in the appliance's process that reads the status board."""

from appliance.web.server import serve_status

__all__ = ["serve_status"]
