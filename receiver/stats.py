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
    fetched_parts_committed: int = 0
    """Parts of a fetch on demand (their records count in records_inserted and
    duplicates_ignored too)."""
    records_inserted: int = 0
    duplicates_ignored: int = 0
    """Records that were already in the database (a re-sent or redelivered part)."""
    rejected: Counter[str] = field(default_factory=Counter)
    """Messages refused, by reason (SchemaError.reason, db_refused, implausible, ...)."""
    dead_lettered: int = 0
    """Refused messages kept in the dead_letters table."""
    refused_parts_accounted: int = 0
    """Refused parts recorded in their range, so the gateway's ack could move past them."""
    dead_letters_dropped: int = 0
    """Older dead letters dropped to keep the table within its limits."""
    dead_letter_failures: int = 0
    """Refused messages that could not even be kept (logged as receiver_dead_letter_failed)."""
    schema_requests: int = 0
    """Parts refused for a feature schema this receiver does not know (the gateway is asked
    for its names)."""
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
            "fetched_parts_committed": self.fetched_parts_committed,
            "records_inserted": self.records_inserted,
            "duplicates_ignored": self.duplicates_ignored,
            "rejected": dict(self.rejected),
            "dead_lettered": self.dead_lettered,
            "refused_parts_accounted": self.refused_parts_accounted,
            "dead_letters_dropped": self.dead_letters_dropped,
            "dead_letter_failures": self.dead_letter_failures,
            "schema_requests": self.schema_requests,
            "acks_published": self.acks_published,
            "db_retries": self.db_retries,
            "connects": self.connects,
            "disconnects": self.disconnects,
        }
