"""What the store is opened with: its file, synchronous level and limits, checked on building."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.config import StoreConfig
from appliance.errors import StoreError
from appliance.store.database import SYNCHRONOUS_MODES

DAY_S = 86_400


@dataclass(frozen=True)
class StoreSettings:
    path: Path
    synchronous: str = "NORMAL"
    max_bytes: int | None = None
    retention_s: float | None = None
    retain_undelivered: bool = False
    """True when an uplink delivers the outbox: retention then evicts delivered rows only."""

    def __post_init__(self) -> None:
        if self.synchronous not in SYNCHRONOUS_MODES:
            raise StoreError(
                f"store {self.path}: synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, "
                f"not {self.synchronous!r}"
            )
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise StoreError(f"store {self.path}: max_bytes must be positive, not {self.max_bytes}")
        if self.retention_s is not None and not self.retention_s > 0:
            raise StoreError(
                f"store {self.path}: retention_s must be positive, not {self.retention_s}"
            )


def store_settings(config: StoreConfig, *, with_uplink: bool) -> StoreSettings:
    """The [store] table's settings; with an uplink, undelivered rows leave by size only (they
    wait for delivery however old they are: store.py)."""
    return StoreSettings(
        path=Path(config.path),
        synchronous=config.synchronous,
        max_bytes=int(config.max_mb * 1e6) if config.max_mb else None,
        retention_s=config.retention_days * DAY_S if config.retention_days else None,
        retain_undelivered=with_uplink,
    )
