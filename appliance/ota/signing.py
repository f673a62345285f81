"""Ed25519 signatures over a bundle's manifest.json (which pins the model by its sha256).

Keys: the private key is a PEM (PKCS#8) file that stays on the data team's workstation; the public
key is one line of base64 (32 raw bytes), short enough to paste into the gateway's config.
The signature is `signature.ed25519` in the bundle: one line of base64 (64 raw bytes).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.detect.bundle import MANIFEST_FILE, SIGNATURE_FILE
from appliance.errors import BundleError
from appliance.ota.archive import BundleArchive

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
MAX_SIGNATURE_TEXT_BYTES = 1024


def generate_key(private_path: Path) -> str:
    """Write a new private key to `private_path` (mode 0600, refused if it exists) and the
    public key beside it as `<name>.pub`; return the public key text."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BundleError(f"{private_path}: exists; refusing to overwrite a signing key") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public = public_key_text(key.public_key())
    private_path.with_name(private_path.name + ".pub").write_text(public + "\n", encoding="utf-8")
    return public


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the signing key: {exc.strerror or exc}") from exc
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path}: not an Ed25519 key ({type(key).__name__})")
    return key


def parse_public_key(text: str, where: str) -> Ed25519PublicKey:
    """One line of base64 holding 32 bytes; BundleError naming `where` otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BundleError(f"{where}: public key is not base64") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise BundleError(
            f"{where}: an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes, this one {len(raw)}"
        )
    return Ed25519PublicKey.from_public_bytes(raw)


def sign_bundle(bundle_dir: Path, key: Ed25519PrivateKey) -> Path:
    """Sign the bundle's manifest.json as it is on disk; write and return the signature file."""
    manifest = _read(bundle_dir / MANIFEST_FILE)
    signature = base64.b64encode(key.sign(manifest)).decode("ascii")
    path = bundle_dir / SIGNATURE_FILE
    path.write_text(signature + "\n", encoding="ascii")
    return path


def verify_signature(bundle_dir: Path, keys: Sequence[Ed25519PublicKey]) -> int:
    """Check signature.ed25519 against manifest.json; return the index of the key that signed
    it. BundleError says which of: unsigned, malformed signature, no configured key matches."""
    signature_path = bundle_dir / SIGNATURE_FILE
    if not signature_path.exists():
        raise BundleError(f"unsigned: the bundle has no {SIGNATURE_FILE}")
    return verify_manifest(_read(bundle_dir / MANIFEST_FILE), _read(signature_path), keys)


def verify_manifest(
    manifest: bytes, signature_text: bytes, keys: Sequence[Ed25519PublicKey]
) -> int:
    """`verify_signature` on the two files' bytes (an archive's, before anything is unpacked)."""
    if len(signature_text) > MAX_SIGNATURE_TEXT_BYTES:
        raise BundleError(f"{SIGNATURE_FILE}: {len(signature_text)} bytes, expected one line")
    try:
        signature = base64.b64decode(signature_text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BundleError(f"{SIGNATURE_FILE}: not base64") from None
    if len(signature) != SIGNATURE_BYTES:
        raise BundleError(f"{SIGNATURE_FILE}: {len(signature)} bytes, expected {SIGNATURE_BYTES}")
    for index, key in enumerate(keys):
        try:
            key.verify(signature, manifest)
        except InvalidSignature:
            continue
        return index
    raise BundleError(
        f"wrong signature: {MANIFEST_FILE} was not signed by any of the {len(keys)} configured "
        "public key(s) (signed with another key, or changed after signing)"
    )


def read_signed_manifest(
    archive: BundleArchive, keys: Sequence[Ed25519PublicKey], max_manifest_bytes: int
) -> tuple[bytes, bytes]:
    """The manifest's and the signature's bytes, read out of an archive whose headers passed
    and checked against the keys before anything else of it is read (model bundles and
    appliance releases alike). BundleError prefixed with "signature:" or "bundle:"."""
    if SIGNATURE_FILE not in archive.members:
        raise BundleError(f"signature: unsigned: the bundle has no {SIGNATURE_FILE}")
    if MANIFEST_FILE not in archive.members:
        raise BundleError(f"bundle: {MANIFEST_FILE}: missing from the archive")
    manifest = archive.read(MANIFEST_FILE, max_manifest_bytes)
    try:
        signature = archive.read(SIGNATURE_FILE, MAX_SIGNATURE_TEXT_BYTES)
        verify_manifest(manifest, signature, keys)
    except BundleError as exc:
        raise BundleError(f"signature: {exc}") from exc
    return manifest, signature


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{path.name}: missing from the bundle") from None
    except OSError as exc:
        raise BundleError(f"{path.name}: cannot read: {exc.strerror or exc}") from exc
