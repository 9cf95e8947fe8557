"""Errors raised by the WAL and the snapshotter."""

from __future__ import annotations


class WALError(Exception):
    """Any failure to read or write the write-ahead log or snapshot files."""


class WALNotFoundError(WALError):
    """The directory holds no WAL segment files."""


class CorruptWALError(WALError):
    """Bytes before the tail of the log are damaged; startup must stop rather than lose data.

    `path` and `offset` name the first bad record.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"wal: corrupt record in {path} at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class SnapshotMismatchError(WALError):
    """The snapshot given to WAL.open is not recorded in the WAL (or has another term)."""
