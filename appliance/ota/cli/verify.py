"""`appliance model verify`: every check a gateway makes before its canary, run on a bundle on
the workstation, each printed OK or with the reason."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.config import load_config
from appliance.detect.bundle import ModelBundle, load_bundle
from appliance.detect.runtime import DEFAULT_BACKEND, open_runtime
from appliance.errors import BundleError, ConfigError
from appliance.features.from_config import build_feature_engines
from appliance.ota.cli.answers import EXIT_OK, EXIT_REFUSED
from appliance.ota.cli.bundle_files import archive_bytes, describe_bundle, unpacked
from appliance.ota.settings import models_settings
from appliance.ota.signing import parse_public_key, public_key_text, verify_signature
from appliance.ota.vetting import check_asset, check_features, without_staging_path

T = TypeVar("T")


def add_verify(actions: Any) -> None:
    verify = actions.add_parser(
        "verify",
        help="run a gateway's checks on a bundle (exit 0 ok, 1 refused)",
        description="The checks a gateway makes before its canary: archive, signature, "
        "manifest and model sha256, runtime load; with --config also the asset and the "
        "feature names that gateway produces. Each is printed OK or with the reason.",
    )
    verify.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle directory or .tar")
    verify.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="KEY_OR_FILE",
        help="a trusted public key (base64) or a file holding one, e.g. from keygen (repeatable)",
    )
    verify.add_argument(
        "--config",
        type=Path,
        metavar="gateway.toml",
        help="check against this gateway: its assets, their features, its [models] keys",
    )
    verify.set_defaults(handler=_verify)


@dataclass(frozen=True)
class GatewayView:
    """What a gateway's config asks of a bundle, computed without its hardware."""

    name: str
    keys: tuple[Ed25519PublicKey, ...]
    feature_names: dict[str, tuple[str, ...]]
    backends: dict[str, str]


def gateway_view(path: Path) -> GatewayView:
    config = load_config(path)
    engines = build_feature_engines(config)
    return GatewayView(
        config.gateway.id,
        models_settings(config, path).keys,
        {asset: engine.feature_names for asset, engine in engines.items()},
        {asset.name: asset.model.backend for asset in config.assets},
    )


def public_keys(values: Sequence[str]) -> list[Ed25519PublicKey]:
    keys = []
    for value in values:
        path = Path(value)
        try:
            text = path.read_text(encoding="utf-8") if path.is_file() else value
        except (OSError, UnicodeDecodeError) as exc:
            raise BundleError(f"--public-key {value}: cannot read: {exc}") from None
        keys.append(parse_public_key(text, f"--public-key {value}"))
    return keys


def _verify(args: argparse.Namespace) -> int:
    gateway = None if args.config is None else gateway_view(args.config)
    keys = public_keys(args.public_key) + list(gateway.keys if gateway else ())
    if not keys:
        raise ConfigError("verify: give --public-key (repeatable) or --config with [models]")
    data = archive_bytes(args.bundle)
    print(f"verify {args.bundle}" + (f" for gateway {gateway.name}" if gateway else ""))
    checks = Checks()
    with contextlib.ExitStack() as stack:
        directory = checks.run("archive", lambda: stack.enter_context(unpacked(data)), _files)
        if directory is not None:
            checks.directory = directory
            verify_bundle(checks, directory, keys, gateway)
    if checks.failed:
        print(f"refused: {', '.join(checks.failed)} failed")
        return EXIT_REFUSED
    print("OK: a gateway would accept it up to its canary (which needs its stored windows)")
    return EXIT_OK


def verify_bundle(
    checks: Checks, directory: Path, keys: Sequence[Ed25519PublicKey], gateway: GatewayView | None
) -> None:
    """The signature, then the bundle and what depends on it: every check that can run."""
    checks.run("signature", lambda: verify_signature(directory, keys), lambda i: _signer(keys[i]))
    bundle = checks.run("bundle", lambda: load_bundle(directory), describe_bundle)
    if bundle is None:
        return
    asset = checks.run("asset", lambda: asset_of(bundle, gateway), _for_gateway(gateway))
    if asset is not None and gateway is not None:
        check = partial(check_features, bundle, asset, gateway.feature_names[asset])
        checks.run("features", check, lambda _: f"{asset} produces every feature the model takes")
    backend = gateway.backends.get(asset or "", DEFAULT_BACKEND) if gateway else DEFAULT_BACKEND
    loaded = f"{backend} builds the interpreter and runs a batch"
    checks.run("runtime", lambda: open_runtime(bundle, backend), lambda _: loaded)


def asset_of(bundle: ModelBundle, gateway: GatewayView | None) -> str:
    """The asset the bundle names (a gateway refuses a bundle that names none); with a
    gateway, one of its assets."""
    asset = bundle.manifest.asset
    return check_asset(bundle, gateway.feature_names if gateway else {asset or "": ()})


def _for_gateway(gateway: GatewayView | None) -> Callable[[str], str]:
    if gateway is None:
        return lambda asset: f"{asset} (give --config to check it against a gateway)"
    return lambda asset: f"{asset} is an asset of gateway {gateway.name}"


def _signer(key: Ed25519PublicKey) -> str:
    return f"signed by {public_key_text(key)}"


def _files(directory: Path) -> str:
    return ", ".join(sorted(path.name for path in directory.iterdir()))


class Checks:
    """Runs named checks, printing each as OK with what it found, or FAILED with the reason."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.directory: Path | None = None
        """Where the archive was unpacked: left out of the reasons (it means nothing)."""

    def run(self, name: str, check: Callable[[], T], describe: Callable[[T], str]) -> T | None:
        try:
            found = check()
        except BundleError as exc:
            self.failed.append(name)
            where = self.directory
            reason = str(exc) if where is None else without_staging_path(exc, where)
            print(f"  {name:<10} FAILED  {reason}")
            return None
        print(f"  {name:<10} OK      {describe(found)}")
        return found
