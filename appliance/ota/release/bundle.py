"""A release bundle: the appliance's own code for one version, signed like a model bundle.

It travels as the same plain tar (ota/archive.py, with bigger limits) and holds
`manifest.json` {"format", "version", "wheels": {wheel file name: sha256}} naming every wheel
the release's venv is made of (the appliance wheel and its hash-pinned dependencies),
`signature.ed25519` over it, and those of the wheels the gateway does not have yet (the ones
that changed since the release it runs; the others come from its wheel pool, by the same
hashes). Nothing is written before the signature is checked, and only wheels the signed manifest
names, with the hash it names, are ever written."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.detect.bundle import MANIFEST_FILE, sha256_hex
from appliance.errors import BundleError
from appliance.ota.archive import MEMBER_NAME, ArchiveLimits, BundleArchive, pack
from appliance.ota.release.slots import VERSION, VERSION_RULE, write_synced
from appliance.ota.signing import read_signed_manifest, sign_bundle

FORMAT = "appliance-release/1"
RELEASE_LIMITS = ArchiveLimits(max_bytes=64 * 1024 * 1024, max_members=64)
MAX_MANIFEST_BYTES = 64 * 1024
MAX_WHEELS = 200
APPLIANCE_DIST = "edge_appliance"
"""The project's distribution (pyproject.toml `name`, as wheel file names spell it)."""
WHEEL_NAME = re.compile(r"([A-Za-z0-9_.]+)-([A-Za-z0-9_.+!]+)(-[A-Za-z0-9_.]+){2,3}\.whl")
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ReleaseManifest:
    version: str
    wheels: dict[str, str]
    """Every wheel of the release's venv: file name -> sha256 (hex)."""

    def to_json(self) -> str:
        body = {
            "format": FORMAT,
            "version": self.version,
            "wheels": dict(sorted(self.wheels.items())),
        }
        return json.dumps(body, indent=1) + "\n"

    def requirements(self) -> str:
        """The venv's requirements, pinned by version and hash (pip --require-hashes)."""
        lines = []
        for name, digest in sorted(self.wheels.items()):
            dist, version = _wheel_parts(name)
            lines.append(f"{dist}=={version} --hash=sha256:{digest}")
        return "\n".join(lines) + "\n"


def read_manifest(data: bytes) -> ReleaseManifest:
    """BundleError naming what is wrong with a release manifest."""
    where = f"release: {MANIFEST_FILE}"
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"{where}: not JSON ({type(exc).__name__})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise BundleError(f"{where}: not a release manifest (format {FORMAT!r} expected)")
    if set(body) != {"format", "version", "wheels"}:
        raise BundleError(f"{where}: keys must be format, version, wheels")
    version, wheels = body["version"], body["wheels"]
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise BundleError(f"{where}: version must be {VERSION_RULE}")
    if not isinstance(wheels, dict) or not 0 < len(wheels) <= MAX_WHEELS:
        raise BundleError(f"{where}: wheels must map 1-{MAX_WHEELS} wheel names to sha256")
    for name, digest in wheels.items():
        if not (WHEEL_NAME.fullmatch(name) and MEMBER_NAME.fullmatch(name) and len(name) <= 100):
            raise BundleError(f"{where}: {name[:100]!r} is not a wheel file name")
        if not isinstance(digest, str) or not SHA256.fullmatch(digest):
            raise BundleError(f"{where}: {name}: sha256 must be 64 lowercase hex digits")
    ours = [n for n in wheels if _wheel_parts(n)[0] == APPLIANCE_DIST]
    if len(ours) != 1 or _wheel_parts(ours[0])[1] != version:
        raise BundleError(
            f"{where}: needs exactly one {APPLIANCE_DIST} wheel, of version {version}"
        )
    return ReleaseManifest(version, dict(wheels))


def stage_release(
    data: bytes, keys: Sequence[Ed25519PublicKey], dest: Path
) -> tuple[ReleaseManifest, list[Path]]:
    """Check a release archive and write the wheels it carries into `dest` (which must exist):
    headers, then the signature over the manifest, then the manifest, then each wheel read with
    a byte budget and checked against its hash. BundleError at the first failure."""
    written = []
    with BundleArchive(data, RELEASE_LIMITS) as archive:
        manifest_bytes, _ = read_signed_manifest(archive, keys, MAX_MANIFEST_BYTES)
        manifest = read_manifest(manifest_bytes)
        carried = [n for n in archive.names if n not in (MANIFEST_FILE, "signature.ed25519")]
        for name in carried:
            if name not in manifest.wheels:
                raise BundleError(f"archive: {name} is not a wheel the signed manifest names")
        budget = RELEASE_LIMITS.max_bytes
        for name in carried:
            wheel = archive.read(name, budget)
            budget -= len(wheel)
            if sha256_hex(wheel) != manifest.wheels[name]:
                raise BundleError(f"release: {name}: sha256 {sha256_hex(wheel)} does not match "
                                  f"the signed manifest's {manifest.wheels[name]}")  # fmt: skip
            write_synced(dest / name, wheel)
            written.append(dest / name)
    return manifest, written


def pack_release(
    wheel_dir: Path,
    key: Ed25519PrivateKey,
    pinned: Iterable[str] | None = None,
    already_there: ReleaseManifest | None = None,
) -> tuple[ReleaseManifest, bytes]:
    """The signed release archive of every wheel in `wheel_dir`. `pinned`: the sha256 hashes of
    a requirements file, which every wheel but the appliance's must be one of;
    `already_there`: the manifest of the release the gateways run, whose unchanged wheels are
    left out."""
    wheels = {p.name: sha256_hex(p.read_bytes()) for p in sorted(wheel_dir.glob("*.whl"))}
    if not wheels:
        raise BundleError(f"{wheel_dir}: no wheels")
    ours = [n for n in wheels if _wheel_parts(n)[0] == APPLIANCE_DIST]
    if len(ours) != 1:
        raise BundleError(f"{wheel_dir}: needs exactly one {APPLIANCE_DIST}-*.whl, has {len(ours)}")
    if pinned is not None:
        allowed = set(pinned)
        loose = [n for n, h in wheels.items() if n not in ours and h not in allowed]
        if loose:
            raise BundleError(f"not pinned by the requirements' hashes: {', '.join(loose)}")
    manifest = read_manifest(
        json.dumps(
            {"format": FORMAT, "version": _wheel_parts(ours[0])[1], "wheels": wheels}
        ).encode()
    )
    old = already_there.wheels if already_there is not None else {}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp)
        (bundle / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
        sign_bundle(bundle, key)
        for name, digest in wheels.items():
            if old.get(name) != digest:
                (bundle / name).write_bytes((wheel_dir / name).read_bytes())
        data = pack(bundle)
    if len(data) > RELEASE_LIMITS.max_bytes:
        raise BundleError(
            f"the archive is {len(data)} bytes, gateways take {RELEASE_LIMITS.max_bytes}"
        )
    return manifest, data


def pinned_hashes(requirements: str) -> set[str]:
    """The sha256 hashes a requirements file pins (`--hash=sha256:...`)."""
    return set(re.findall(r"--hash=sha256:([0-9a-f]{64})", requirements))


def _wheel_parts(name: str) -> tuple[str, str]:
    """(distribution, version) of a wheel file name."""
    dist, version = name.split("-")[:2]
    return dist.lower().replace(".", "_"), version
