"""The gateway diagnoses the emulated rig: the real app, one emulated MCU per injected fault (the
demo's `--fault` shorthands), each asset with the demo's [assets.machine] table."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from waiting import wait_until

from appliance.config import parse_config
from appliance.diagnosis import BEARING_VERDICTS
from appliance.rig import run_appliance
from appliance.rig.demo import DEMO_MACHINE, SHAFT_RPM, expand_faults
from appliance.status import StatusBoard

FAULTS = {
    "healthy": [],
    "outer_race": ["outer_race"],
    "inner_race": ["inner_race"],
    "imbalance": ["imbalance"],
    "misalignment": ["misalignment"],
}
BAR_S = 30.0
"""Issue 17: each injected fault is diagnosed as itself within 30 s of machine time."""


def rig_config(tmp_path: Path) -> Any:
    serial, assets = [], []
    for kind, faults in FAULTS.items():
        emulate = {"channels": 3, "rate_hz": 1000, "faults": expand_faults(faults)}
        serial.append({"name": f"mcu-{kind}", "emulate": emulate})
        channels = [
            {
                "name": f"accel_{axis}",
                "kind": "vibration",
                "rate_hz": 1000.0,
                "unit": "g",
                "valid_range": [-4.0, 4.0],
                "source": {"serial": f"mcu-{kind}", "channel": i},
            }
            for i, axis in enumerate("xyz")
        ]
        machine = {**DEMO_MACHINE, "diagnose_every_s": 2.0}
        assets.append(
            {"name": kind, "speed_rpm": SHAFT_RPM, "machine": machine, "channels": channels}
        )
    document = {
        "gateway": {"id": "diagnosis-rig"},
        "store": {"path": str(tmp_path / "appliance.db")},
        "serial": serial,
        "assets": assets,
    }
    return parse_config(document, "<test>")


async def test_each_injected_fault_is_diagnosed_as_itself_on_the_running_gateway(
    tmp_path: Path,
) -> None:
    config = rig_config(tmp_path)
    board = StatusBoard(config.gateway.id)
    stop = asyncio.Event()
    run = asyncio.create_task(run_appliance(config, stop=stop, board=board))
    seen: dict[str, list[tuple[float, str]]] = {kind: [] for kind in FAULTS}

    def watch() -> bool:
        for kind in FAULTS:
            status = board.assets.get(kind)
            diagnosed = status.diagnosis if status is not None else None
            if diagnosed is not None and (not seen[kind] or seen[kind][-1][0] != diagnosed.t):
                seen[kind].append((diagnosed.t, diagnosed.verdict))
        faulted = [kind for kind in FAULTS if kind != "healthy"]
        return all(seen[kind] and seen[kind][-1][1] == kind for kind in faulted)

    try:
        await wait_until(watch, "every fault diagnosed as itself", deadline_s=90.0, alive=run)
    finally:
        stop.set()
        await run
    window_s = config.features.window_s
    for kind, runs in seen.items():
        if kind == "healthy":
            continue
        start = runs[0][0] - window_s  # the first diagnosis is of the first whole window
        named = next(t for t, verdict in runs if verdict == kind)
        assert named - start <= BAR_S, f"{kind}: named after {named - start:.1f} s: {runs}"
    healthy = [verdict for _, verdict in seen["healthy"]]
    assert healthy and not set(healthy) & BEARING_VERDICTS, healthy
