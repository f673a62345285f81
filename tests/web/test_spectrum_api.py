"""GET /api/spectrum on the running demo rig after a few windows: the latest Welch PSD of a
vibration channel with its frequency axis, units, the feature bands, the healthy baseline learnt
from windows scored normal (kept across a restart), and the shaft harmonics when the asset's
speed_rpm is configured; and each window's spectrum computed once for any number of clients."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from waiting import running_page
from web_helpers import DEADLINE_S

from appliance.config import HttpConfig
from appliance.features.from_config import build_feature_engines
from appliance.features.spectra import BASELINE_STATE, ChannelSpectrum, Spectra
from appliance.rig.demo import SHAFT_RPM, demo_config


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_spectrum_of_the_running_rig(tmp_path: Path) -> None:
    config = demo_config(tmp_path, [])
    # The emulated machine turns at its asset's configured speed (rig/attach.py), which the
    # demo's models were trained at; compressor-2 without a speed keeps the emulator's own.
    speeds = {"pump-1": SHAFT_RPM, "compressor-2": None}
    assets = [a.model_copy(update={"speed_rpm": speeds[a.name]}) for a in config.assets]
    config = config.model_copy(update={"http": HttpConfig(port=0), "assets": assets})
    async with running_page(config) as (url, board), aiohttp.ClientSession() as http:
        status_of = board.assets
        scored = board.wait_for(lambda: all(status_of[a.name].scores >= 4 for a in config.assets))
        await asyncio.wait_for(scored, DEADLINE_S)

        status, body = await get(http, url + "api/spectrum/pump-1/accel_x")
        assert status == 200, body
        bins = config.features.nperseg // 2 + 1
        assert len(body["freqs_hz"]) == len(body["psd"]) == bins
        assert body["freqs_hz"][0] == 0.0 and body["freqs_hz"][-1] == 500.0
        assert all(v >= 0 for v in body["psd"]) and max(body["psd"]) > 0
        assert body["unit"] == "g" and body["psd_unit"] == "g²/Hz"
        assert body["bands_hz"] == [[0, 100], [100, 200], [200, 300], [300, 400], [400, 500]]
        shaft_hz = SHAFT_RPM / 60  # 29.6 Hz: 16 harmonics to Nyquist
        assert body["harmonics_hz"] == pytest.approx([shaft_hz * k for k in range(1, 17)])
        # Windows scored normal before this one were folded into the baseline.
        assert body["baseline_windows"] >= 1 and len(body["baseline"]) == bins
        assert body["window_end"] > 0

        status, body = await get(http, url + "api/spectrum/compressor-2/accel_z")
        assert status == 200 and body["speed_rpm"] is None and body["harmonics_hz"] == []

        status, index = await get(http, url + "api/spectrum")
        assert {a["name"]: a["channels"] for a in index["assets"]} == {
            "pump-1": ["accel_x", "accel_y", "accel_z"],
            "compressor-2": ["accel_x", "accel_y", "accel_z"],
        }
        learnt = body["baseline_windows"]

    # Stopped: the baselines were saved with the detector states, and come back at start.
    async with running_page(config) as (url, board), aiohttp.ClientSession() as http:
        compressor = board.assets["compressor-2"]
        await asyncio.wait_for(board.wait_for(lambda: compressor.vectors >= 1), DEADLINE_S)
        status, body = await get(http, url + "api/spectrum/compressor-2/accel_z")
        assert status == 200 and body["baseline_windows"] >= learnt >= 1


def test_a_saved_baseline_that_does_not_fit_is_dropped(tmp_path: Path) -> None:
    spectra = Spectra(build_feature_engines(demo_config(tmp_path, [])))
    good = {"windows": 700, "mean": [1e-6] * 129}
    states: dict[tuple[str, str], dict[str, object]] = {
        ("pump-1", BASELINE_STATE): {
            "channels": {
                "accel_x": good,
                "accel_y": {"windows": 3, "mean": [1e-6] * 65},  # saved with another nperseg
                "accel_z": {"windows": 3, "mean": "?"},
            }
        },
        ("pump-1", "threshold"): {"value": 1.0},
    }
    assert spectra.restore(states) == ["pump-1/accel_y", "pump-1/accel_z"]
    assert spectra.to_states() == {("pump-1", BASELINE_STATE): {"channels": {"accel_x": good}}}


async def test_each_window_is_computed_once_for_every_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 clients asking at once, in rounds over several windows: each channel's spectrum is
    computed once per window (and baseline update), identical bytes for every client."""
    computed: Counter[tuple[str, str]] = Counter()
    compute = Spectra.latest

    def counting(spectra: Spectra, asset: str, channel: str) -> ChannelSpectrum | None:
        computed[asset, channel] += 1
        return compute(spectra, asset, channel)

    monkeypatch.setattr(Spectra, "latest", counting)
    config = demo_config(tmp_path, []).model_copy(update={"http": HttpConfig(port=0)})
    answers: dict[tuple[float, int], set[bytes]] = {}
    async with running_page(config) as (url, board), aiohttp.ClientSession() as http:
        pump = board.assets["pump-1"]
        await asyncio.wait_for(board.wait_for(lambda: pump.vectors >= 1), DEADLINE_S)

        async def ask() -> None:
            async with http.get(url + "api/spectrum/pump-1/accel_x") as response:
                assert response.status == 200
                raw = await response.read()
            body = json.loads(raw)
            answers.setdefault((body["window_end"], body["baseline_windows"]), set()).add(raw)

        while len({window_end for window_end, _ in answers}) < 3:
            await asyncio.gather(*(ask() for _ in range(30)))
    assert computed["pump-1", "accel_x"] == len(answers), f"{len(answers)} windows/baselines"
    assert all(len(bodies) == 1 for bodies in answers.values()), "one answer per window"
