"""An asset's latest diagnosis as JSON: on its card in /api/status (`diagnosis_json`), and its
envelope spectrum with the defect frequencies to mark at GET /api/envelope/<asset> (index:
GET /api/envelope). appliance/diagnosis/live.py makes a diagnosis per window while the asset is
raised and at a low rate otherwise; each answer is built once per diagnosis, by the first client
asking, and served to every other one."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from appliance.diagnosis.lines import Line
from appliance.diagnosis.live import Diagnosed
from appliance.status import StatusBoard
from appliance.web.history import refused

BOARD: web.AppKey[StatusBoard] = web.AppKey("envelope_board", StatusBoard)
ANSWERS: web.AppKey[dict[str, tuple[float, bytes]]] = web.AppKey("envelope_answers", dict)


def add_routes(app: web.Application, board: StatusBoard) -> None:
    app[BOARD] = board
    app[ANSWERS] = {}
    app.router.add_get("/api/envelope", _index)
    app.router.add_get("/api/envelope/{asset}", _envelope)


def diagnosis_json(diagnosed: Diagnosed | None) -> dict[str, Any] | None:
    """The card's part: the verdict in words, its confidence and evidence, and per diagnosed
    channel its own verdict, velocity RMS (10-1000 Hz, mm/s) and ISO 20816-3 zone."""
    if diagnosed is None:
        return None
    diagnosis, finding = diagnosed.diagnosis, diagnosed.diagnosis.finding
    return {
        "t": diagnosed.t,
        "verdict": finding.verdict,
        "words": diagnosed.text,
        "confidence": finding.confidence,
        "confidence_text": f"{finding.confidence:.0%}".replace("%", " %"),
        "bearing": finding.bearing or None,
        "channel": diagnosis.channel,
        "raised": diagnosed.raised,
        "shaft_hz": finding.shaft_hz,
        "velocity_mm_s": diagnosis.velocity_mm_s,
        "zone": diagnosis.zone,
        "evidence": lines_json(finding.evidence),
        "channels": {
            name: {
                "verdict": channel.verdict,
                "confidence": channel.confidence,
                "velocity_mm_s": channel.velocity_mm_s,
                "velocity_text": f"{channel.velocity_mm_s:.1f} mm/s",
                "zone": channel.zone,
            }
            for name, channel in diagnosis.channels.items()
        },
    }


def lines_json(lines: Iterable[Line]) -> list[dict[str, Any]]:
    return [
        {
            "name": line.name,
            "expected_hz": line.expected_hz,
            "found_hz": line.found_hz,
            "db_above_floor": _finite(line.db_above_floor),
        }
        for line in lines
    ]


def envelope_json(diagnosed: Diagnosed) -> dict[str, Any]:
    envelope, finding = diagnosed.envelope, diagnosed.diagnosis.finding
    return {
        "asset": diagnosed.asset,
        "t": diagnosed.t,
        "channel": diagnosed.diagnosis.channel,
        "verdict": finding.verdict,
        "words": diagnosed.text,
        "band_hz": [envelope.band.low_hz, envelope.band.high_hz],
        "shaft_hz": finding.shaft_hz,
        "freqs_hz": [float(f) for f in envelope.freqs],
        "magnitude": [_finite(float(v)) for v in envelope.magnitude],
        "marks": [
            {"name": m.name, "bearing": m.bearing, "hz": m.hz, "harmonic": m.harmonic}
            for m in diagnosed.marks
        ],
        "evidence": lines_json(finding.evidence),
    }


async def _index(request: web.Request) -> web.Response:
    board = request.app[BOARD]
    diagnosed = [name for name, status in board.assets.items() if status.diagnosis is not None]
    return web.json_response({"assets": diagnosed})


async def _envelope(request: web.Request) -> web.Response:
    board, name = request.app[BOARD], request.match_info["asset"]
    status = board.assets.get(name)
    if status is None:
        known = ", ".join(board.assets) or "none"
        raise refused(f"no asset named {name[:64]!r} (assets: {known})", web.HTTPNotFound)
    diagnosed = status.diagnosis
    if diagnosed is None:
        reason = "no diagnosis yet (no [assets.machine] table, or no whole window yet)"
        return web.json_response({"asset": name, "freqs_hz": None, "reason": reason})
    answers = request.app[ANSWERS]
    kept = answers.get(name)
    if kept is None or kept[0] != diagnosed.t:
        kept = (diagnosed.t, json.dumps(envelope_json(diagnosed)).encode())
        answers[name] = kept
    return web.Response(body=kept[1], content_type="application/json")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
