"""Install a release beside the running one, offline, then begin its trial.

Steps (each named to `on_step` as it ends; a power cut at any point leaves the running release
linked and whole, docs/IMAGE.md "Appliance updates over the air"):

1. staged: the archive checked (bundle.py) and its wheels written and synced to wheels/.incoming/;
   every wheel of the manifest is there or already in the pool with the signed hash.
2. built: the wheels joined the pool, releases/<version>/ made as a venv and the pinned wheels
   installed into it (pip --no-index --require-hashes), everything synced to disk, then
   release-manifest.json written (durably): only now is the release complete.
3. trial_recorded, switched: trial.begin (the state file, then the `current` link).
The running process then exits so that systemd starts the new release (`RESTART_EXIT`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.detect.bundle import sha256_hex
from appliance.errors import BundleError
from appliance.ota.release import trial
from appliance.ota.release.bundle import ReleaseManifest, read_manifest, stage_release
from appliance.ota.release.slots import (
    CONFIRMED,
    CURRENT,
    INCOMING,
    RELEASE_MANIFEST,
    ReleaseRoot,
    fsync_dir,
    write_durably,
)

RESTART_EXIT = 75
"""The exit status of an appliance that switched releases: systemd starts it again
(Restart=on-failure, RestartForceExitStatus=75)."""
PIP_TIMEOUT_S = 900.0


@dataclass
class Installer:
    root: ReleaseRoot
    keys: Sequence[Ed25519PublicKey]
    max_starts: int
    keep: int = 3
    with_pip: bool = True
    """Give each venv its own pip (the next update runs it). Tests leave it out: ensurepip
    takes seconds."""
    python: str = field(default_factory=lambda: sys.executable)
    on_step: Callable[[str], None] = lambda step: None

    def install(self, data: bytes, source: str) -> str:
        """Call with the root locked. BundleError (refused) naming what is wrong."""
        state = self.root.load()
        if state.trial is not None:
            raise BundleError(
                f"release {state.trial.version} is on trial: wait for its outcome or roll it back"
            )
        incoming = self.root.wheels / INCOMING
        shutil.rmtree(incoming, ignore_errors=True)
        incoming.mkdir(parents=True)
        try:
            manifest, carried = stage_release(data, self.keys, incoming)
            version = manifest.version
            if version in (self.root.linked(CURRENT), self.root.linked(CONFIRMED)):
                raise BundleError(f"release {version} is already installed and running")
            self._check_pool(manifest, carried)
            self.on_step("staged")
            for path in carried:
                os.replace(path, self.root.wheels / path.name)
            fsync_dir(self.root.wheels)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        self._prune(manifest)
        self._build(manifest)
        self.on_step("built")
        trial.begin(self.root, version, source, self.max_starts, self.on_step)
        return f"release {version} installed; restarting into it for its trial"

    def _check_pool(self, manifest: ReleaseManifest, carried: list[Path]) -> None:
        """A carried wheel replaces the pool's file of its name unless an installed release pins
        other bytes under that name; a file there that no release pins is what an interrupted
        install left (a power cut can leave it empty)."""
        names = {p.name for p in carried}
        installed = self._installed_wheels()
        for name, digest in manifest.wheels.items():
            pooled = self.root.wheels / name
            if name in names:
                if name in installed and installed[name][1] != digest:
                    raise BundleError(f"release: {name} differs from the wheel of that name "
                                      f"release {installed[name][0]} runs")  # fmt: skip
            elif not pooled.is_file():
                raise BundleError(f"release: {name} is neither in the bundle nor on this gateway")
            elif sha256_hex(pooled.read_bytes()) != digest:
                raise BundleError(f"release: {name} on this gateway does not match its sha256")

    def _build(self, manifest: ReleaseManifest) -> None:
        target = self.root.release_dir(manifest.version)
        shutil.rmtree(target, ignore_errors=True)  # a failed or interrupted build of it
        self.root.releases.mkdir(parents=True, exist_ok=True)
        requirements = self.root.wheels / f"{INCOMING}-{manifest.version}.txt"
        requirements.write_text(manifest.requirements(), encoding="utf-8")
        try:
            venv = [self.python, "-m", "venv", *([] if self.with_pip else ["--without-pip"])]
            _run([*venv, str(target)], "making the venv")
            _run([self.python, "-m", "pip", "--python", str(target / "bin" / "python"),
                  "install", "--quiet", "--disable-pip-version-check", "--no-cache-dir",
                  "--no-index", "--no-deps", "--require-hashes", "--only-binary=:all:",
                  "--find-links", str(self.root.wheels), "-r", str(requirements)],
                 "installing the wheels")  # fmt: skip
        except BundleError:
            shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            requirements.unlink(missing_ok=True)
        if not (target / "bin" / "appliance").is_file():
            shutil.rmtree(target, ignore_errors=True)
            raise BundleError(f"release {manifest.version}: its venv has no bin/appliance")
        os.sync()  # pip's files are written but not synced; the manifest must come after them
        write_durably(target / RELEASE_MANIFEST, manifest.to_json())
        fsync_dir(self.root.releases)

    def _prune(self, incoming: ReleaseManifest) -> None:
        """Old releases beyond `keep` (never the linked ones nor the rollback target), then the
        pool's wheels neither a kept release nor the incoming one names."""
        state = self.root.load()
        pinned = {self.root.linked(CURRENT), self.root.linked(CONFIRMED), state.previous}
        versions = [v for v in self.root.versions() if v != incoming.version]
        for version in versions[: max(0, len(versions) - self.keep + 1)]:
            if version not in pinned:
                shutil.rmtree(self.root.release_dir(version), ignore_errors=True)
        needed = set(incoming.wheels) | set(self._installed_wheels())
        for wheel in self.root.wheels.glob("*.whl"):
            if wheel.name not in needed:
                wheel.unlink()

    def _installed_wheels(self) -> dict[str, tuple[str, str]]:
        """Wheel name -> (a release that pins it, its sha256), over the complete releases."""
        pinned = {}
        for version in self.root.versions():
            path = self.root.release_dir(version) / RELEASE_MANIFEST
            for name, digest in read_manifest(path.read_bytes()).wheels.items():
                pinned[name] = (version, digest)
        return pinned


def _run(command: list[str], what: str) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
        raise BundleError(f"release: {what} failed: {' / '.join(tail)[:300]}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BundleError(f"release: {what} failed: {exc}") from None
