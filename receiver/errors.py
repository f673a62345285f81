"""One exception root for the receiver."""

from __future__ import annotations


class ReceiverError(Exception):
    """Root of every error the receiver raises on purpose; the message says what and where."""


class SettingsError(ReceiverError):
    """A command-line value (broker URL, database URL, CA file, ...) is unusable."""


class DatabaseError(ReceiverError):
    """The database failed. `transient`: worth retrying (locked, disk full, connection lost);
    otherwise the database refused this data for good (it can never be inserted)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient
