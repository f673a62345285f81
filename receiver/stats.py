"""Per-instance counters, logged periodically (receiver_stats) and read by tests."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ReceiverStats:
    """Cumulative since the instance started."""

    messages: int = 0
    """Data messages taken from the broker (valid or not)."""
    parts_committed: int = 0
    records_inserted: int = 0
    duplicates_ignored: int = 0
    """Records that were already in the database (a re-sent or redelivered part)."""
    rejected: Counter[str] = field(default_factory=Counter)
    """Payloads dropped, by reason (SchemaError.reason, or db_refused)."""
    acks_published: int = 0
    db_retries: int = 0
    """Transactions that failed transiently and were tried again."""
    connects: int = 0
    disconnects: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "parts_committed": self.parts_committed,
            "records_inserted": self.records_inserted,
            "duplicates_ignored": self.duplicates_ignored,
            "rejected": dict(self.rejected),
            "acks_published": self.acks_published,
            "db_retries": self.db_retries,
            "connects": self.connects,
            "disconnects": self.disconnects,
        }
