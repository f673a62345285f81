"""The SD-card image's committed inputs stay consistent with the project (no build, no network):
the arm64 lock pins exactly pyproject's runtime dependencies, the unit keeps its contract, the
shell scripts parse, and the smoke test's provisioned config is a valid gateway config."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from image_helpers import load_smoke, read_unit

from appliance.config import parse_config

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "image"


def _pins(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from a pip requirements file with --hash lines."""
    pins: dict[str, tuple[str, list[str]]] = {}
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *options = line.split()
        name, version = spec.split("==")
        hashes = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=")]
        pins[re.sub(r"[-_.]+", "-", name).lower()] = (version, hashes)
    return pins


def test_lock_pins_every_runtime_dependency_at_pyproject_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins(IMAGE / "requirements-arm64.txt")
    for requirement in project["dependencies"]:
        name, version = requirement.split("==")
        key = re.sub(r"[-_.]+", "-", name).lower()
        assert key in pins, (
            f"{name} missing from image/requirements-arm64.txt: run image/lock-requirements"
        )
        assert pins[key][0] == version, f"{name}: pyproject {version}, lock {pins[key][0]}: relock"
    for name, (_, hashes) in pins.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_lock_has_no_workstation_extras() -> None:
    pins = _pins(IMAGE / "requirements-arm64.txt")
    for name in ("tensorflow-cpu", "tensorflow", "matplotlib", "pytest", "psycopg"):
        assert name not in pins


def test_appliance_unit_contract() -> None:
    unit = read_unit(IMAGE / "rootfs/etc/systemd/system/appliance.service")
    assert unit["Type"] == ["notify"]
    assert unit["User"] == ["appliance"]
    assert unit["StateDirectory"] == ["appliance"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["WatchdogSec"] and unit["ExecStart"] == [
        "/opt/appliance/current/bin/appliance run --config /etc/appliance/gateway.toml"
    ]
    # releases: the start guard first, from the confirmed release; a switch restarts (75)
    assert unit["ExecStartPre"][0] == (
        "/opt/appliance/confirmed/bin/python -I -m appliance.ota.release.guard /opt/appliance"
    )
    assert unit["RestartForceExitStatus"] == ["75"]
    assert unit["ReadWritePaths"] == ["/opt/appliance"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert unit["DevicePolicy"] == ["closed"]
    assert "AF_UNIX" in unit["RestrictAddressFamilies"][0]  # sd_notify
    assert "PrivateDevices" not in unit  # would hide the serial ports and I2C buses
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "MemoryDenyWriteExecute"):
        assert unit[key] == ["yes"], key
    # room for the page's connection cap (default 64) and everything else, far above 1024
    assert int(unit["LimitNOFILE"][0]) >= 8192
    assert unit["ProtectSystem"] == ["strict"]


def test_sshd_is_key_only() -> None:
    conf = (IMAGE / "rootfs/etc/ssh/sshd_config.d/10-appliance.conf").read_text()
    for line in (
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
    ):
        assert line in conf.splitlines()


@pytest.mark.parametrize(
    "script",
    [
        "build",
        "lock-requirements",
        "compare-builds",
        "lib/appliance-layer.sh",
        "lib/assemble.sh",
        "hooks/base-essential.sh",
        "hooks/base-customize.sh",
        "rootfs/usr/local/sbin/appliance-firstboot",
    ],
)
def test_scripts_parse(script: str) -> None:
    subprocess.run(["bash", "-n", str(IMAGE / script)], check=True)


def test_smoke_config_is_a_valid_gateway_config() -> None:
    smoke = load_smoke()
    document = tomllib.loads(smoke.smoke_config("smoke-gw-test"))
    config = parse_config(document, "<smoke>")
    assert config.gateway.id == "smoke-gw-test"
    assert config.http is not None and config.http.host == "0.0.0.0"
