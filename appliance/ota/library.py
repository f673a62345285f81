"""Accepted bundles on the gateway's disk, and which one each asset uses.

    <directory>/<asset>/<bundle id>/   manifest.json, model.tflite, signature.ed25519
    <directory>/<asset>/slots.json     {"history": [ids, oldest first], "rolled_back": [ids]}
    <directory>/.staging/              archives being checked (emptied at start)

The newest id in `history` is the active bundle; an empty history means the asset scores as its
config says. A rollback moves the newest id to `rolled_back`, so the one before it (or the
configured model) takes over. Writes are atomic (temporary file, rename)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from appliance.errors import BundleError

log = structlog.get_logger(__name__)

SLOTS_FILE = "slots.json"
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


class BundleLibrary:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging = root / ".staging"

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir()

    def new_staging_dir(self) -> Path:
        return self.staging / uuid.uuid4().hex

    def bundle_dir(self, asset: str, bundle_id: str) -> Path:
        return self.root / asset / bundle_id

    def slots(self, asset: str) -> Slots:
        path = self.root / asset / SLOTS_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return Slots(
                [str(i) for i in raw["history"]], [str(i) for i in raw.get("rolled_back", [])]
            )
        except FileNotFoundError:
            return Slots()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Unreadable: the asset falls back to its configured model, loudly.
            log.error("model_slots_unreadable", asset=asset, path=str(path), reason=str(exc))
            return Slots()

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
        wanted = set(slots.history) | set(slots.rolled_back)
        for path in (self.root / asset).iterdir():
            if path.is_dir() and path.name not in wanted:
                shutil.rmtree(path, ignore_errors=True)
        return slots
