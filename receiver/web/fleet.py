"""The fleet view as values: a gateway's row (state, lag, models, alarms), the worst-first order,
the search and the page, and the weekly trend of a finding's features. No I/O here."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_PER_PAGE = 500
DEFAULT_PER_PAGE = 100
DAY_S = 86400


@dataclass(frozen=True)
class FleetQuery:
    """What the fleet API was asked: a search (substring of the id), a page, its size."""

    search: str = ""
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE


def gateway_row(row: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The API's view of one summary row (receiver/web/queries.py)."""
    fields = row.get("fields") or {}
    models = fields.get("models") if isinstance(fields, dict) else None
    newest = row.get("newest_t")
    return {
        "gateway": row["gateway"],
        "state": row.get("state") or "unknown",
        "state_at": row.get("state_at"),
        "version": fields.get("version") if isinstance(fields, dict) else None,
        "last_seen": row.get("last_seen"),
        "newest_t": newest,
        "lag_s": None if newest is None else round(now - float(newest), 1),
        "acked_seq": row.get("acked_seq"),
        "holes": int(row.get("holes") or 0),
        "missing_seqs": int(row.get("missing_seqs") or 0),
        "incomplete_ranges": int(row.get("incomplete_ranges") or 0),
        "refused_parts": int(row.get("refused_parts") or 0),
        "dead_letters": int(row.get("dead_letters") or 0),
        "models": models_of(models),
        "alarm_assets": list(row.get("alarm_assets") or []),
        "open_findings": int(row.get("open_findings") or 0),
    }


def models_of(models: object) -> dict[str, str]:
    """The status' `models` (asset -> model id), keeping only text values."""
    if not isinstance(models, dict):
        return {}
    return {str(asset): model for asset, model in models.items() if isinstance(model, str)}


def worst_first(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Sort key: a machine in alarm first, then offline, then findings, holes and lag."""
    in_alarm = bool(row["alarm_assets"])
    offline = row["state"] == "offline"
    lag = row["lag_s"] if row["lag_s"] is not None else float("inf")
    return (-(in_alarm + offline), not in_alarm, not offline, -row["open_findings"],
            -row["holes"], -lag, row["gateway"])  # fmt: skip


def fleet_page(rows: Sequence[dict[str, Any]], query: FleetQuery, now: float) -> dict[str, Any]:
    """The fleet API's answer: totals over the whole fleet, then one page of the matching
    gateways, worst first."""
    ordered = sorted(rows, key=worst_first)
    needle = query.search.lower()
    matching = [row for row in ordered if needle in row["gateway"].lower()]
    pages = max(1, -(-len(matching) // query.per_page))
    start = (query.page - 1) * query.per_page
    return {
        "now": now,
        "totals": totals(ordered),
        "search": query.search,
        "matching": len(matching),
        "page": query.page,
        "pages": pages,
        "per_page": query.per_page,
        "gateways": matching[start : start + query.per_page],
    }


def totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    return {
        "gateways": len(rows),
        "online": sum(row["state"] == "online" for row in rows),
        "offline": sum(row["state"] == "offline" for row in rows),
        "unknown": sum(row["state"] == "unknown" for row in rows),
        "in_alarm": sum(bool(row["alarm_assets"]) for row in rows),
        "assets_in_alarm": sum(len(row["alarm_assets"]) for row in rows),
        "open_findings": sum(row["open_findings"] for row in rows),
        "with_holes": sum(row["holes"] > 0 for row in rows),
    }


def weekly_medians(
    daily: Sequence[Mapping[str, Any]], names: Sequence[str], first_day: int
) -> dict[str, list[dict[str, Any]]]:
    """Per feature of `names`, one point per week since `first_day`: the median of the days'
    medians (weeks without data are left out, not drawn as zero)."""
    weeks: dict[str, dict[int, list[float]]] = {name: {} for name in names}
    for row in daily:
        if row["name"] in weeks and row["median"] is not None:
            week = (int(row["day"]) - first_day) // 7
            weeks[row["name"]].setdefault(week, []).append(float(row["median"]))
    return {
        name: [
            {"week_start": (first_day + 7 * week) * DAY_S, "median": statistics.median(values),
             "days": len(values)}
            for week, values in sorted(by_week.items())
        ]
        for name, by_week in weeks.items()
    }  # fmt: skip
