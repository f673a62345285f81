"""GET /api/history and /api/history/<asset>: an asset's score against its threshold and its main
features over 1 h, 24 h or 7 d from the store, downsampled on the gateway (store/history_query.py),
with alarm episodes and alerts. Also the sources the chart routes read (ChartSources).

Query: `range` (1h, 24h or 7d; 1h by default), `features` (comma-separated names; by default the
features the newest alarm in the range names, then RMS per vibration channel and the mean of each
slow channel), `buckets` (10 to 500; 500 by default), `end` (Unix seconds; now by default).
Answers for "now" are shared between clients for a few seconds (SharedAnswers): 100 open pages
read the store once.
A wrong asset is a 404, any wrong parameter a 400, each naming what it got and what it takes.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from appliance.config.assets import AssetConfig
from appliance.errors import StoreError
from appliance.features.spectra import Spectra
from appliance.store.history_query import MAX_BUCKETS, AssetHistory, Buckets, HistoryQuery
from appliance.web.limits import GUARD

log = structlog.get_logger(__name__)

RANGES_S = {"1h": 3600.0, "24h": 86_400.0, "7d": 7 * 86_400.0}
SHARED_FOR_S = {"1h": 5.0, "24h": 60.0, "7d": 300.0}
"""How long one answer to "the last <range>" serves every client (a point is 7 s, 3 min, 20 min)."""
DEFAULT_RANGE = "1h"
MIN_BUCKETS = 10
MAX_FEATURES = 6
"""Feature charts per answer: those asked for, or the alarm's (CONTRIBUTORS_SHOWN) then the
defaults (DEFAULT_FEATURES) up to this many."""
DEFAULT_FEATURES = 5
CONTRIBUTORS_SHOWN = 2
UNITLESS_FEATURES = ("crest_factor", "excess_kurtosis")


@dataclass(frozen=True)
class ChartSources:
    """What the history and spectrum routes read: the store's history, the feature stage's
    spectra, the configured assets and the feature names each asset's engine emits."""

    history: HistoryQuery
    spectra: Spectra
    assets: Mapping[str, AssetConfig]
    feature_names: Mapping[str, tuple[str, ...]]
    zone: tzinfo = UTC
    """The gateway's zone: the page shows times in it (the data is Unix seconds)."""


CHARTS: web.AppKey[ChartSources] = web.AppKey("charts", ChartSources)


def refused(reason: str, status: type[web.HTTPError] = web.HTTPBadRequest) -> web.HTTPError:
    """The exception to raise for a request refused for what it asked: its JSON body is
    {"error": reason}, as for every refusal of this server."""
    return status(text=json.dumps({"error": reason}), content_type="application/json")


def add_routes(app: web.Application, sources: ChartSources) -> None:
    app[CHARTS] = sources
    app[SHARED] = SharedAnswers()
    app.router.add_get("/api/history", _index)
    app.router.add_get("/api/history/{asset}", counted(_asset_history))


def counted(handler: Handler) -> Handler:
    """`handler` with its refusals counted with the server's and logged in one line."""

    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPClientError as refusal:
            request.app[GUARD].stats.refused_requests += 1
            log.warning(
                "request_refused", path=request.path, peer=request.remote,
                status=refusal.status_code, reason=refusal.text,
            )  # fmt: skip
            raise

    return answer


def asset_config(sources: ChartSources, name: str) -> AssetConfig:
    """The asset's config; a 404 naming the known assets otherwise."""
    asset = sources.assets.get(name)
    if asset is None:
        known = ", ".join(sorted(sources.assets)) or "none"
        raise refused(f"no asset {name[:64]!r} on this gateway (assets: {known})", web.HTTPNotFound)
    return asset


def feature_unit(name: str, asset: AssetConfig) -> str:
    """The unit of a feature from its channel's configured unit ("" for a ratio)."""
    channel, _, feature = name.partition(".")
    unit = next((c.unit for c in asset.channels if c.name == channel), "")
    if feature in UNITLESS_FEATURES:
        return ""
    if feature == "dominant_freq_hz":
        return "Hz"
    if feature == "spectral_energy" or feature.startswith("band_"):
        return f"{unit}²"
    if feature == "slope":
        return f"{unit}/s"
    return unit


def default_features(asset: AssetConfig) -> list[str]:
    """RMS of each vibration channel, then the mean of each slow channel."""
    rms = [f"{c.name}.rms" for c in asset.channels if c.is_vibration]
    means = [f"{c.name}.mean" for c in asset.channels if not c.is_vibration]
    return (rms + means)[:DEFAULT_FEATURES]


async def _index(request: web.Request) -> web.Response:
    sources = request.app[CHARTS]
    assets = [
        {
            "name": name,
            "default_features": default_features(asset),
            "features": list(sources.feature_names.get(name, ())),
            "units": {c.name: c.unit for c in asset.channels},
        }
        for name, asset in sources.assets.items()
    ]
    body = {"ranges": list(RANGES_S), **zone_fields(sources.zone, time.time()), "assets": assets}
    return web.json_response(body)


async def _asset_history(request: web.Request) -> web.Response:
    sources = request.app[CHARTS]
    asset = asset_config(sources, request.match_info["asset"])
    query = request.query
    range_name = query.get("range", DEFAULT_RANGE)
    if range_name not in RANGES_S:
        raise refused(f"range: {range_name[:16]!r} is not one of {', '.join(RANGES_S)}")
    end = _number_parameter(query, "end", math.nan)
    count = int(_number_parameter(query, "buckets", MAX_BUCKETS, MIN_BUCKETS, MAX_BUCKETS))
    named = _requested_features(query.get("features"), asset, sources)

    async def answer() -> bytes:
        until = time.time() if math.isnan(end) else end
        buckets = Buckets(until - RANGES_S[range_name], until, count)
        features = named if named is not None else default_features(asset)
        contributors = 0 if named is not None else CONTRIBUTORS_SHOWN
        found = await sources.history.asset_history(
            asset.name, buckets, features, contributors, at_most=MAX_FEATURES
        )
        return json.dumps(history_body(found, asset, range_name, sources.zone)).encode()

    try:
        if not math.isnan(end):  # a fixed range: asked once, not shared
            body = await answer()
        else:
            key = (asset.name, range_name, count, None if named is None else tuple(named))
            body = await request.app[SHARED].get(key, SHARED_FOR_S[range_name], answer)
    except StoreError as exc:
        return web.json_response({"error": f"history not readable: {exc}"}, status=503)
    return web.Response(body=body, content_type="application/json")


class SharedAnswers:
    """The newest answers to "the last hour/day/week", shared by every client asking the same
    within SHARED_FOR_S (100 open pages cost one store read per period, not 100); clients asking
    while it is read wait for the same read. A failed read is not kept. Answers are kept encoded
    (a few hundred KB at most each), at most `max_entries`, the oldest dropped first."""

    def __init__(self, max_entries: int = 16) -> None:
        self.max_entries = max_entries
        self._answers: dict[Hashable, tuple[float, asyncio.Task[bytes]]] = {}

    async def get(
        self, key: Hashable, fresh_s: float, read: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        now = time.monotonic()
        found = self._answers.get(key)
        if found is None or now - found[0] > fresh_s or _failed(found[1]):
            task = asyncio.ensure_future(read())
            task.add_done_callback(_retrieve)
            self._answers.pop(key, None)
            self._answers[key] = found = (now, task)
            while len(self._answers) > self.max_entries:
                del self._answers[next(iter(self._answers))]  # the oldest
        return await asyncio.shield(found[1])  # a client going away does not stop the read


def _failed(task: asyncio.Task[Any]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


SHARED: web.AppKey[SharedAnswers] = web.AppKey("shared_history", SharedAnswers)


def _number_parameter(
    query: Mapping[str, str],
    key: str,
    default: float,
    low: float = -math.inf,
    high: float = math.inf,
) -> float:
    text = query.get(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high):
        bounds = f" from {low:g} to {high:g}" if math.isfinite(low) else ""
        raise refused(f"{key}: {text[:32]!r} is not a number{bounds}")
    return value


def _requested_features(
    text: str | None, asset: AssetConfig, sources: ChartSources
) -> list[str] | None:
    """The names asked for, each checked against the asset's features; None if none were."""
    if text is None or not text.strip():
        return None
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if len(names) > MAX_FEATURES:
        raise refused(f"features: {len(names)} named, at most {MAX_FEATURES} per request")
    known = set(sources.feature_names.get(asset.name, ()))
    unknown = [name for name in names if name not in known]
    if unknown:
        raise refused(
            f"features: {unknown[0][:64]!r} is not a feature of {asset.name!r} "
            f"(e.g. {', '.join(default_features(asset))})"
        )
    return names


def zone_fields(zone: tzinfo, t: float) -> dict[str, Any]:
    """The zone as the browser needs it: an IANA name when there is one (else its abbreviation),
    the abbreviation to label axes with, and its UTC offset at `t` (used when the browser does
    not know the name)."""
    local = datetime.fromtimestamp(t, zone)
    label = local.tzname() or "UTC"
    offset = local.utcoffset()
    return {
        "timezone": getattr(zone, "key", None) or label,
        "zone_label": label,
        "utc_offset_s": offset.total_seconds() if offset is not None else 0.0,
    }


def history_body(
    found: AssetHistory, asset: AssetConfig, range_name: str, zone: tzinfo
) -> dict[str, Any]:
    buckets = found.buckets
    return {
        "asset": found.asset,
        "range": range_name,
        "start": buckets.start,
        "end": buckets.end,
        "bucket_s": buckets.width,
        **zone_fields(zone, buckets.end),
        "score": {"unit": "", **asdict(found.score)},
        "features": [
            {"name": name, "unit": feature_unit(name, asset), **asdict(series)}
            for name, series in found.features.items()
        ],
        "features_sampled": found.sampled,
        "contributors": list(found.contributors),
        "episodes": [asdict(episode) for episode in found.episodes],
        "alerts": [
            {
                "t": alert.t,
                "severity": alert.severity,
                "kind": alert.kind,
                "channel": alert.channel,
                "message": alert.message,
            }
            for alert in found.alerts
        ],
        "alerts_left_off": found.alerts_left_off,
    }
