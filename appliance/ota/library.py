"""Accepted bundles on the gateway's disk, and which one each asset uses.

    <directory>/<asset>/<hash>/     manifest.json, model.tflite, signature.ed25519
    <directory>/<asset>/slots.json  {"history": [ids, oldest first], "rolled_back": [ids]}
    <directory>/.staging/           archives being checked (emptied at start)
    <directory>/.lock               held by the appliance that uses the library (`take_lock`)

A bundle's directory is named by a hash of its id (`bundle_dir`), never by text a manifest
carries, so no version can point outside the library. (Libraries from before named them by
the id itself; `open` renames those.) Ids read from slots.json that are not bundle ids are
dropped, loudly.

The newest id in `history` is the active bundle; an empty history means the asset scores as its
config says. A rollback moves the newest id to `rolled_back`, so the one before it (or the
configured model) takes over. Writes are atomic (temporary file, rename)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from appliance.detect.bundle import BUNDLE_ID_PATTERN
from appliance.errors import BundleError

log = structlog.get_logger(__name__)

SLOTS_FILE = "slots.json"
LOCK_FILE = ".lock"
ROLLED_BACK_KEPT = 5


@dataclass
class Slots:
    history: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)

    @property
    def active(self) -> str | None:
        return self.history[-1] if self.history else None

    @property
    def previous(self) -> str | None:
        return self.history[-2] if len(self.history) > 1 else None

    def roll_back(self) -> str:
        """Set the active bundle aside: the one before it (or the configured model) is next."""
        bundle_id = self.history.pop()
        self.rolled_back.append(bundle_id)
        return bundle_id


class BundleLibrary:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging = root / ".staging"

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir()
        for asset_dir in self.root.iterdir():
            if asset_dir.is_dir() and not asset_dir.name.startswith("."):
                self._rename_old_layout(asset_dir.name)

    def new_staging_dir(self) -> Path:
        return self.staging / uuid.uuid4().hex

    def bundle_dir(self, asset: str, bundle_id: str) -> Path:
        return self.root / asset / dir_name(bundle_id)

    def slots(self, asset: str) -> Slots:
        path = self.root / asset / SLOTS_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            slots = Slots(_ids(raw["history"]), _ids(raw.get("rolled_back", [])))
        except FileNotFoundError:
            return Slots()
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            # Unreadable: the asset falls back to its configured model, loudly.
            log.error("model_slots_unreadable", asset=asset, path=str(path), reason=str(exc))
            return Slots()
        return slots

    def save_slots(self, asset: str, slots: Slots) -> None:
        path = self.root / asset / SLOTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"history": slots.history, "rolled_back": slots.rolled_back[-ROLLED_BACK_KEPT:]}
        temporary = path.with_name(f".{SLOTS_FILE}.tmp")
        temporary.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)

    def keep(self, staged: Path, asset: str, bundle_id: str) -> Path:
        """Move a checked bundle from staging to its place (replacing a rolled-back copy)."""
        target = self.bundle_dir(asset, bundle_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        try:
            os.replace(staged, target)
        except OSError as exc:
            raise BundleError(f"cannot keep the bundle in {target}: {exc}") from exc
        return target

    def prune(self, asset: str, slots: Slots, keep: int) -> Slots:
        """Forget all but the newest `keep` bundles of the history; delete unreferenced dirs."""
        slots.history = slots.history[-keep:]
        slots.rolled_back = slots.rolled_back[-ROLLED_BACK_KEPT:]
        wanted = {dir_name(i) for i in slots.history + slots.rolled_back}
        for path in (self.root / asset).iterdir():
            if path.is_dir() and path.name not in wanted:
                shutil.rmtree(path, ignore_errors=True)
        return slots

    def _rename_old_layout(self, asset: str) -> None:
        """Bundle directories named by their id (before hashes) get their hashed name."""
        slots = self.slots(asset)
        for bundle_id in slots.history + slots.rolled_back:
            old, new = self.root / asset / bundle_id, self.bundle_dir(asset, bundle_id)
            if old.is_dir() and not new.exists():
                try:
                    os.replace(old, new)
                except OSError as exc:
                    log.error("model_library_rename_failed", path=str(old), reason=str(exc))


def take_lock(root: Path) -> int | None:
    """The library's lock, one appliance at a time (`appliance model rollback` checks it to know
    whether one runs): the held lock file's descriptor, or None when another process holds it.
    OSError when the lock file cannot be opened."""
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def dir_name(bundle_id: str) -> str:
    """Where a bundle lives inside its asset's directory: a hash, safe whatever the id holds."""
    return hashlib.sha256(bundle_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _ids(raw: object) -> list[str]:
    """The bundle ids of a slots.json list; anything else is dropped with an error logged."""
    if not isinstance(raw, list):
        raise TypeError(f"expected a list of bundle ids, got {type(raw).__name__}")
    ids = [i for i in raw if isinstance(i, str) and BUNDLE_ID_PATTERN.fullmatch(i)]
    if len(ids) != len(raw):
        log.error("model_slots_entries_dropped", dropped=len(raw) - len(ids),
                  reason="not bundle ids (<version>-<12 hex digits>)")  # fmt: skip
    return ids
