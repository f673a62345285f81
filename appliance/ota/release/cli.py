"""`appliance release ...`: appliance updates over the air from the command line.

On the workstation that builds releases: `pack` (a wheel directory into a signed release
archive; the key is made with `appliance model keygen`, kept apart from the model key). On
the gateway: `status` and `rollback` (straight on the release root; the service then restarts
into the release switched to). Releases reach gateways like model bundles: the release inbox,
`install_release` on the MQTT command topic, or the page's /api/release.

Exit codes: 0 done, 1 refused (the reason is printed), 2 error."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

from appliance.errors import BundleError
from appliance.ota.cli.answers import EXIT_OK, EXIT_REFUSED
from appliance.ota.cli.bundle_files import write_atomically
from appliance.ota.release import trial
from appliance.ota.release.bundle import pack_release, pinned_hashes, read_manifest
from appliance.ota.release.slots import CONFIRMED, CURRENT, ReleaseRoot
from appliance.ota.signing import load_private_key, public_key_text

DEFAULT_ROOT = Path("/opt/appliance")


def add_release_commands(commands: Any) -> None:
    release = commands.add_parser(
        "release",
        help="appliance updates over the air: pack, status, rollback",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = release.add_subparsers(required=True, metavar="ACTION")
    pack = actions.add_parser(
        "pack",
        help="a wheel directory into a signed release archive",
        description="Every *.whl in WHEEL_DIR (exactly one edge_appliance-*.whl, whose version is "
        "the release's) is named with its sha256 in the signed manifest; with --since, the "
        "wheels a gateway already has are left out of the archive.",
    )
    pack.add_argument("wheel_dir", type=Path, metavar="WHEEL_DIR", help="the release's wheels")
    pack.add_argument(
        "--key", type=Path, required=True, metavar="PRIVATE.pem", help="the release signing key"
    )
    pack.add_argument("--out", type=Path, required=True, metavar="OUT.tar", help="the archive")
    pack.add_argument(
        "--requirements",
        type=Path,
        metavar="requirements-arm64.txt",
        help="refuse any wheel (but the appliance's) whose sha256 it does not pin",
    )
    pack.add_argument(
        "--since",
        type=Path,
        metavar="MANIFEST.json",
        help="the manifest of the release the gateways run (written beside each archive as "
        "OUT.tar.manifest.json, and kept in releases/<version>/release-manifest.json)",
    )
    pack.set_defaults(handler=_pack)
    for name, handler, text in [
        ("status", _status, "the releases, the trial and the failed releases"),
        ("rollback", _rollback, "back to the release before (ends a trial)"),
    ]:
        action = actions.add_parser(name, help=f"on the gateway: {text}")
        action.add_argument(
            "--root", type=Path, default=DEFAULT_ROOT, help="(default: %(default)s)"
        )
        if name == "rollback":
            action.add_argument(
                "--reason",
                default="rollback requested with appliance release",
                help="recorded with the release left (default: %(default)s)",
            )
            action.add_argument(
                "--restart", action="store_true", help="then systemctl restart appliance"
            )
        action.set_defaults(handler=handler)


def _pack(args: argparse.Namespace) -> int:
    key = load_private_key(args.key)
    pinned = None
    if args.requirements is not None:
        pinned = pinned_hashes(_read(args.requirements))
    since = read_manifest(_read(args.since).encode()) if args.since is not None else None
    manifest, data = pack_release(args.wheel_dir, key, pinned, since)
    write_atomically(args.out, data)
    write_atomically(
        args.out.with_name(args.out.name + ".manifest.json"), manifest.to_json().encode()
    )
    carried = len(manifest.wheels) - (len(set(since.wheels) & set(manifest.wheels)) if since else 0)
    print(f"release {manifest.version}: {args.out} ({len(data)} bytes)")
    print(f"  wheels:    {len(manifest.wheels)} named, about {carried} carried")
    print(f"  signed by: {public_key_text(key.public_key())} (listed in [release] public_keys?)")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    root = ReleaseRoot(args.root)
    state = root.load()
    print(f"current:   {root.linked(CURRENT)}")
    print(f"confirmed: {root.linked(CONFIRMED)}")
    print(f"previous:  {state.previous}")
    print(f"installed: {', '.join(root.versions()) or '-'}")
    if state.trial is not None:
        t = state.trial
        print(f"on trial:  {t.version} (start {t.starts} of {t.max_starts}, from {t.previous})")
    for failed in state.failed:
        print(f"failed:    {failed['version']}: {failed['reason']}")
    print(json.dumps({"installs": state.installs, "rollbacks": state.rollbacks,
                      "automatic_rollbacks": state.automatic_rollbacks}))  # fmt: skip
    return EXIT_OK


def _rollback(args: argparse.Namespace) -> int:
    root = ReleaseRoot(args.root)
    try:
        with root.locked():
            print(trial.roll_back(root, args.reason))
    except trial.NoRollback as exc:
        print(f"refused: {exc}")
        return EXIT_REFUSED
    if args.restart:
        subprocess.run(["systemctl", "restart", "appliance.service"], check=False)
    else:
        print("the running appliance keeps its code until it restarts: "
              "sudo systemctl restart appliance")  # fmt: skip
    return EXIT_OK


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot read: {exc}") from None
