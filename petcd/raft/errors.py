"""Typed errors raised by the Raft core and by storage implementations."""

from __future__ import annotations


class RaftError(Exception):
    """Base class of every error raised by :mod:`petcd.raft`."""


class ConfigError(RaftError, ValueError):
    """A :class:`~petcd.raft.Config` is invalid."""


class ProposalDroppedError(RaftError):
    """A proposal was dropped (leader transfer in progress, forwarding disabled, too large, removed)."""


class NoLeaderError(ProposalDroppedError):
    """A proposal was dropped because this node knows no leader to forward it to."""


class StepLocalMsgError(RaftError):
    """A message type that only the node itself may generate arrived through ``step``."""


class ReadyNotAdvancedError(RaftError, RuntimeError):
    """``ready()`` was called again before ``advance()`` of the previous Ready (or a foreign Ready)."""


class StorageError(RaftError):
    """Base class of errors raised by :class:`~petcd.raft.Storage` implementations."""


class CompactedError(StorageError):
    """The requested index is older than the storage's first index (it was compacted away)."""


class UnavailableError(StorageError):
    """The requested index is newer than the storage's last index."""


class SnapshotOutOfDateError(StorageError):
    """The snapshot is older than (or as old as) the one already held."""


class SnapshotTemporarilyUnavailableError(StorageError):
    """The storage cannot produce a snapshot right now; raft retries later."""
