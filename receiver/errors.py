"""One exception root for the receiver."""

from __future__ import annotations


class ReceiverError(Exception):
    """Root of every error the receiver raises on purpose; the message says what and where."""


class SettingsError(ReceiverError):
    """A command-line value (broker URL, database URL, CA file, ...) is unusable."""


class DatabaseError(ReceiverError):
    """The database failed. `transient`: worth retrying (locked, disk full, connection lost);
    otherwise the database refused this data for good (it can never be inserted). `reason` is
    the counter key of such a refusal ("db_refused", or "implausible" for a range too far above
    the gateway's ack)."""

    def __init__(self, message: str, *, transient: bool, reason: str = "db_refused") -> None:
        super().__init__(message)
        self.transient = transient
        self.reason = reason
