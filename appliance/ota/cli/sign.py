"""`appliance model keygen` and `appliance model sign`: the signing key pair and a signed
bundle, on the workstation that trains."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from appliance.detect.bundle import load_bundle
from appliance.errors import BundleError
from appliance.ota.archive import pack
from appliance.ota.cli.answers import EXIT_OK
from appliance.ota.cli.bundle_files import describe_bundle, write_atomically
from appliance.ota.signing import generate_key, load_private_key, public_key_text, sign_bundle


def add_keygen(actions: Any) -> None:
    keygen = actions.add_parser(
        "keygen",
        help="make a signing key pair",
        description="Write a new Ed25519 private key (PEM, mode 0600; refused if PATH exists) "
        "and its public key as PATH.pub. The private key stays on the workstation that signs; "
        "the public key goes into each gateway's [models] public_keys.",
    )
    keygen.add_argument("--out", type=Path, required=True, metavar="PATH", help="private key")
    keygen.set_defaults(handler=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    try:
        public = generate_key(args.out)
    except OSError as exc:
        raise BundleError(f"{args.out}: cannot write the key: {exc.strerror or exc}") from None
    print(f"private key: {args.out} (mode 0600; keep it here, never on a gateway)")
    print(f"public key:  {args.out}.pub")
    print(public)
    print("Gateways accept bundles signed with it once their config trusts it:")
    print(f'  [models]\n  public_keys = ["{public}"]')
    return EXIT_OK


def add_sign(actions: Any) -> None:
    sign = actions.add_parser(
        "sign",
        help="sign a bundle directory (and pack it for sending)",
        description="Check that the bundle loads (manifest, model sha256), then write "
        "signature.ed25519 into it; with --archive also write the .tar it travels in.",
    )
    sign.add_argument("bundle_dir", type=Path, metavar="BUNDLE_DIR", help="a trained bundle")
    sign.add_argument(
        "--key", type=Path, required=True, metavar="PRIVATE.pem", help="from model keygen"
    )
    sign.add_argument("--archive", type=Path, metavar="OUT.tar", help="also write the archive")
    sign.set_defaults(handler=_sign)


def _sign(args: argparse.Namespace) -> int:
    key = load_private_key(args.key)
    try:
        bundle = load_bundle(args.bundle_dir)
        if bundle.manifest.asset is None:
            raise BundleError("the manifest names no asset; gateways refuse such a bundle")
        signature = sign_bundle(args.bundle_dir, key)
    except (BundleError, OSError) as exc:
        raise BundleError(f"not signed: {exc}") from None
    print(f"signed {args.bundle_dir}: {describe_bundle(bundle)}")
    print(f"  signature:  {signature}")
    print(f"  signed by:  {public_key_text(key.public_key())} (listed in [models] public_keys?)")
    if args.archive is not None:
        data = pack(args.bundle_dir)
        write_atomically(args.archive, data)
        print(f"  archive:    {args.archive} ({len(data)} bytes)")
    return EXIT_OK
