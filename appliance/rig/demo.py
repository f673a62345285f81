"""The demo rig: two assets on emulated MCUs and an emulated I2C bus, no hardware, no config file.

pump-1 runs healthy; compressor-2 carries the faults given on the command line, so the summary
shows one machine drifting away from the other. Critical alerts go by SMS through an emulated
modem, and the summary shows the SMS that would have been sent.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from appliance.config import ApplianceConfig, parse_config
from appliance.net.broker import parse_broker_url
from appliance.ota.signing import generate_key

# Shorthands for `appliance demo --fault NAME`; NAME=VALUE passes through to the emulator.
FAULT_SHORTHANDS = {
    "imbalance": "imbalance=0.05",  # 1x amplitude grows 5 % of its base per second
    "bearing": "outer_race=0.1",  # was tones at BPFO; now strikes as a real defect gives
    "outer_race": "outer_race=0.1",  # strikes at BPFO ringing a 380 Hz resonance (g)
    "inner_race": "inner_race=0.1",  # strikes at BPFI, modulated at shaft speed
    "ball": "ball=0.1",  # strikes at 2 x BSF, modulated at the cage speed
    "misalignment": "misalignment=0.2",  # 2x radial, 1x axial (g)
    "spikes": "spikes=0.5",  # shocks per second
    "flatline": "flatline=0",  # channel 0 sticks (from flatline_at, for flatline_for seconds)
    "drops": "drop=0.02",  # probability that a frame is lost
    "garbage": "garbage=0.02",  # probability of line noise before a frame
    "unplug": "unplug=20",  # USB unplugged every 20 s, for unplug_for seconds
    "reset": "reset=30",  # MCU reboots every 30 s
}


def expand_faults(faults: list[str]) -> list[str]:
    return [FAULT_SHORTHANDS.get(fault, fault) for fault in faults]


def _accel(name: str, serial: str, channel: int) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "vibration",
        "rate_hz": 1000.0,
        "unit": "g",
        "valid_range": [-2.0, 2.0],
        "source": {"serial": serial, "channel": channel},
    }


def _i2c(name: str, kind: str, unit: str, valid: list[float], **source: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "rate_hz": 1.0,
        "unit": unit,
        "valid_range": valid,
        "source": {"i2c": "bus1", **source},
    }


def _bearing_temperature(address: int) -> dict[str, Any]:
    return _i2c(
        "bearing_temp",
        "temperature",
        "degC",
        [-40.0, 125.0],
        sensor="tmp117",
        address=address,
        quantity="temperature",
    )


DEFAULT_BUNDLES = Path(__file__).resolve().parents[2] / "models" / "default"
"""Bundles trained on the emulated rig's healthy data (models/make_demo_bundles.py)."""


def _model(asset: str) -> dict[str, Any]:
    bundle = DEFAULT_BUNDLES / asset
    return {"model": {"bundle": str(bundle)}} if bundle.is_dir() else {}


def demo_uplink(broker_url: str, ca_file: Path | None = None) -> dict[str, Any]:
    """The [uplink] table for `appliance demo --broker mqtt[s]://user:pass@host:port`: the
    credentials come out of the URL into username/password (never logged)."""
    address = parse_broker_url(broker_url)
    table: dict[str, Any] = {"broker": address.url}
    if address.username is not None:
        table["username"] = address.username
        table["password"] = address.password or ""
    if ca_file is not None:
        table["ca_file"] = str(ca_file)
    return table


DEMO_SMS: dict[str, Any] = {"emulate": True, "recipients": ["+15555550100"]}
"""Critical alerts go to an emulated SIM800 (a fictional number): the summary shows each SMS
that would have been sent."""


SHAFT_RPM = 1776.0
"""The emulated machines' shaft speed (29.6 Hz, rig/mcu/signal.py): the page marks its harmonics."""
DEMO_MACHINE: dict[str, Any] = {
    "group": 2,
    "foundation": "rigid",
    "orientation": {"accel_x": "horizontal", "accel_y": "vertical", "accel_z": "axial"},
    "bearings": [
        {
            "name": "drive-end",  # an SKF 6205, the catalogue's defect orders
            "orders": {"bpfi": 5.4152, "bpfo": 3.5848, "bsf": 2.357, "ftf": 0.39828},
        }
    ],
}
"""Both machines' [assets.machine]: the emulated MCU rings its bearing defects at these orders
(rig/attach.py passes them), and the diagnosis looks for them."""
DEMO_SIGNING_KEY = "model-signing.key"
DEMO_STORE = "appliance.db"
HTTP_TOKEN_FILE = "http-token"
DEMO_STATE = (
    *(DEMO_STORE + suffix for suffix in ("", "-wal", "-shm", "-journal")),
    "ota-models",  # installed bundles (ota/settings.py's default next to the store)
    "model-inbox",  # bundles dropped in for install (idem)
    HTTP_TOKEN_FILE,
)
"""What `appliance demo --reset` deletes in the data directory: the store (readings, alerts,
acknowledgements, detector and SMS state), the models installed over the air, the inbox and the
page's token. The signing key pair stays, so bundles signed with it still install."""


def write_http_token(data_dir: Path) -> tuple[str, Path]:
    """A new token for the status page's actions, in `<data dir>/http-token` (mode 0600), so it
    can be read back after it scrolled away."""
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    path = data_dir / HTTP_TOKEN_FILE
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(token + "\n")
    return token, path


def demo_state(data_dir: Path) -> list[Path]:
    """The demo state present in `data_dir` (DEMO_STATE), for --reset to delete. ValueError
    when the directory holds some of those names but is not a demo's (no signing key the demo
    made), so a mistyped --data-dir never loses files."""
    present = [data_dir / name for name in DEMO_STATE if (data_dir / name).exists()]
    marker = data_dir / (DEMO_SIGNING_KEY + ".pub")
    if present and not marker.is_file():
        raise ValueError(f"{data_dir} has no {marker.name}: not a demo data directory")
    return present


def delete_demo_state(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def demo_models(data_dir: Path) -> dict[str, Any]:
    """The [models] table for the demo: bundles signed with a key the demo makes on first run
    (`<data dir>/model-signing.key`, its public half beside it) are accepted over the air."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key = data_dir / DEMO_SIGNING_KEY
    if not key.exists():
        generate_key(key)
    return {"public_key_files": [str(key) + ".pub"], "canary_min_windows": 30}


def demo_config(
    data_dir: Path,
    faults: list[str],
    uplink: dict[str, Any] | None = None,
    *,
    sms: bool = True,
    models: bool = False,
) -> ApplianceConfig:
    document: dict[str, Any] = {
        "gateway": {"id": "demo-gw"},
        "store": {"path": str(data_dir / DEMO_STORE), "max_mb": 256.0},
        "serial": [
            {"name": "mcu0", "emulate": {"channels": 3, "rate_hz": 1000}},
            {
                "name": "mcu1",
                "emulate": {"channels": 3, "rate_hz": 1000, "faults": expand_faults(faults)},
            },
        ],
        "i2c": [{"name": "bus1", "bus": "emulated", "poll_s": 1.0}],
        "assets": [
            {
                "name": "pump-1",
                "description": "healthy cooling-water pump",
                "speed_rpm": SHAFT_RPM,
                "machine": DEMO_MACHINE,
                **_model("pump-1"),
                "channels": [
                    *(_accel(f"accel_{axis}", "mcu0", i) for i, axis in enumerate("xyz")),
                    _bearing_temperature(0x48),
                    _i2c(
                        "motor_current",
                        "current",
                        "A",
                        [0.0, 3.2],
                        sensor="ina219",
                        address=0x40,
                        quantity="current",
                    ),
                ],
            },
            {
                "name": "compressor-2",
                "description": "air compressor (faults are injected here)",
                "speed_rpm": SHAFT_RPM,
                "machine": DEMO_MACHINE,
                **_model("compressor-2"),
                "channels": [
                    *(_accel(f"accel_{axis}", "mcu1", i) for i, axis in enumerate("xyz")),
                    _bearing_temperature(0x49),
                    _i2c(
                        "supply_voltage",
                        "voltage",
                        "V",
                        [0.0, 26.0],
                        sensor="ina219",
                        address=0x41,
                        quantity="bus_voltage",
                    ),
                ],
            },
        ],
    }
    if uplink is not None:
        document["uplink"] = uplink
    if sms:
        document["sms"] = DEMO_SMS
    if models:
        document["models"] = demo_models(data_dir)
    return parse_config(document, "<demo>")


MCU_CHANNELS = 16
"""Channels per emulated MCU in a wide rig (more do not fit the firmware's frame payload)."""


def wide_demo_document(data_dir: Path, vibration_channels: int = 64) -> dict[str, Any]:
    """The demo's pump-1 alone with more vibration channels, on emulated 16-channel MCUs (tests
    and benches under load). Its first three channels are the demo's, so the demo bundle's
    features are all still there."""
    document = demo_config(data_dir, [], sms=False).model_dump(exclude_none=True)
    pump = next(a for a in document["assets"] if a["name"] == "pump-1")
    document["assets"] = [pump]
    mcu = document["serial"][0]
    mcu["emulate"]["channels"] = MCU_CHANNELS
    count = -(-vibration_channels // MCU_CHANNELS)
    document["serial"] = [{**mcu, "name": f"mcu{i}"} for i in range(count)]
    accel = pump["channels"][0]
    for n in range(3, vibration_channels):
        m, c = divmod(n, MCU_CHANNELS)
        source = {"serial": f"mcu{m}", "channel": c}
        pump["channels"].append({**accel, "name": f"mcu{m}_ch{c}", "source": source})
    return document
