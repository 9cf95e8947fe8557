"""MVCC errors, carrying etcd's messages (clients match on them)."""

from __future__ import annotations


class MVCCError(Exception):
    """Base of the errors the MVCC store raises."""


class CompactedError(MVCCError):
    def __init__(self) -> None:
        super().__init__("mvcc: required revision has been compacted")


class FutureRevError(MVCCError):
    def __init__(self) -> None:
        super().__init__("mvcc: required revision is a future revision")


class RevisionNotFoundError(MVCCError):
    """The key index has no revision for the key at the requested revision (internal)."""

    def __init__(self) -> None:
        super().__init__("mvcc: revision not found")


class CorruptError(MVCCError):
    """The key index and the backend disagree."""
