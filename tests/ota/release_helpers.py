"""Release tests: tiny wheels written here (a zip with dist-info: no pip wheel, no network), a
release root seeded as the image seeds it, and a subprocess that installs a release and
SIGKILLs itself at a named step (a power cut there)."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.ota.release.bundle import pack_release, read_manifest
from appliance.ota.release.install import Installer
from appliance.ota.release.slots import CONFIRMED, CURRENT, ReleaseRoot
from appliance.ota.signing import public_key_text

REPO = Path(__file__).resolve().parents[2]

GOOD = "print('appliance', VERSION)"
BROKEN = "raise SystemExit(1)"


def make_wheel(out: Path, dist: str, version: str, body: str = GOOD) -> Path:
    """A pure-Python wheel; for dist "edge_appliance" (the project's) its console script
    `appliance` runs `body` (with VERSION defined)."""
    module = f"fake_{dist}"
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n\ndef main():\n    {body}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    if dist == "edge_appliance":
        files[f"{info}/entry_points.txt"] = f"[console_scripts]\nappliance = {module}:main\n"
    record = [f"{name},sha256={_digest(text)},{len(text.encode())}" for name, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    path = out / f"{dist}-{version}-py3-none-any.whl"
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), text)
    return path


def _digest(text: str) -> str:
    raw = hashlib.sha256(text.encode()).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def release_wheels(out: Path, version: str, body: str = GOOD, lib: str = "1.0") -> Path:
    make_wheel(out, "edge_appliance", version, body)
    make_wheel(out, "helperlib", lib)
    return out


def installer(root: Path, key: Ed25519PrivateKey, max_starts: int = 2) -> Installer:
    return Installer(ReleaseRoot(root), [key.public_key()], max_starts, with_pip=False)


def seed(root: Path, key: Ed25519PrivateKey, wheels: Path) -> ReleaseRoot:
    """The first release, as the image installs it: built, linked current and confirmed."""
    manifest, _ = pack_release(wheels, key)
    releases = installer(root, key)
    releases.root.wheels.mkdir(parents=True)
    for wheel in wheels.glob("*.whl"):
        (releases.root.wheels / wheel.name).write_bytes(wheel.read_bytes())
    releases._build(read_manifest(manifest.to_json().encode()))
    releases.root.switch(CURRENT, manifest.version)
    releases.root.switch(CONFIRMED, manifest.version)
    return releases.root


def guard(root: Path) -> str:
    """One start's ExecStartPre."""
    done = subprocess.run(
        [sys.executable, "-m", "appliance.ota.release.guard", str(root)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return done.stdout


def start(root: Path) -> subprocess.CompletedProcess[str]:
    """One start of the service: the guard, then `current/bin/appliance`."""
    guard(root)
    return subprocess.run(
        [str(root / CURRENT / "bin" / "appliance")], capture_output=True, text=True, timeout=30
    )


KILLER = """
import os, signal, sys
from pathlib import Path
from appliance.ota.release.install import Installer
from appliance.ota.release.slots import ReleaseRoot
from appliance.ota.signing import parse_public_key
root, key, archive, kill_at = sys.argv[1:5]
def step(name):
    print("step", name, flush=True)
    if name == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
releases = ReleaseRoot(Path(root))
installer = Installer(releases, [parse_public_key(key, "key")], 2, with_pip=False, on_step=step)
with releases.locked():
    print(installer.install(Path(archive).read_bytes(), "test"), flush=True)
"""


def install_killed_at(root: Path, key: Ed25519PrivateKey, archive: Path, step: str) -> int:
    """Install in a subprocess that SIGKILLs itself when `step` ends; its exit status."""
    public = public_key_text(key.public_key())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", KILLER, str(root), public, str(archive), step],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    return done.returncode
