"""RaftLog: the log as raft sees it, stable storage followed by the unstable tail.

Invariants: ``applied <= committed <= last_index()``; every index in ``first_index()-1 ..
last_index()`` has a known term. ``committed`` only grows; entries at or below it never change.
"""

from __future__ import annotations

from petcd.proto.raftpb import raft_pb2 as raftpb

from .errors import CompactedError, UnavailableError
from .storage import Storage
from .types import NO_LIMIT, limit_size
from .unstable import Unstable


class RaftLog:
    def __init__(self, storage: Storage, max_next_ents_size: int = NO_LIMIT) -> None:
        self.storage = storage
        self.max_next_ents_size = max_next_ents_size
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # Everything up to the snapshot is committed and applied by definition.
        self.committed = first - 1
        self.applied = first - 1

    def __repr__(self) -> str:
        return (f"RaftLog(committed={self.committed}, applied={self.applied}, "
                f"unstable.offset={self.unstable.offset}, len(unstable)={len(self.unstable.entries)})")

    # -- appending --------------------------------------------------------------
    def maybe_append(self, index: int, log_term: int, committed: int,
                     ents: list[raftpb.Entry]) -> int | None:
        """AppendEntries on a follower: returns the last index of the new entries, or None if the
        log does not contain ``(index, log_term)``."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise AssertionError(f"entry {ci} conflicts with committed entry (committed {self.committed})")
            self.append(ents[ci - index - 1:])
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, ents: list[raftpb.Entry]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise AssertionError(f"after({after}) is out of range [committed({self.committed})]")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: list[raftpb.Entry]) -> int:
        """Index of the first entry whose term differs from ours (or that is new); 0 if none."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index <= ``index`` whose term is <= ``term`` (fast log backtracking)."""
        last = self.last_index()
        if index > last:
            return index
        while True:
            try:
                t = self.term(index)
            except (CompactedError, UnavailableError):
                return index
            if t <= term:
                return index
            index -= 1

    # -- reading ----------------------------------------------------------------
    def unstable_entries(self) -> list[raftpb.Entry]:
        return list(self.unstable.entries)

    def next_ents(self) -> list[raftpb.Entry]:
        """Committed entries not yet applied (size-limited by max_next_ents_size)."""
        off = max(self.applied + 1, self.first_index())
        if self.committed + 1 > off:
            return self.slice(off, self.committed + 1, self.max_next_ents_size)
        return []

    def has_next_ents(self) -> bool:
        return self.committed + 1 > max(self.applied + 1, self.first_index())

    def has_pending_snapshot(self) -> bool:
        return self.unstable.snapshot is not None and self.unstable.snapshot.metadata.index != 0

    def snapshot(self) -> raftpb.Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        u = self.unstable
        if u.entries:  # the common case, inlined (several calls per proposal)
            return u.offset + len(u.entries) - 1
        i = u.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def last_term(self) -> int:
        return self.term(self.last_index())

    def term(self, i: int) -> int:
        """Term of entry ``i``; 0 outside [first_index()-1, last_index()]. Storage errors (a
        concurrent compaction) propagate."""
        if i < self.first_index() - 1 or i > self.last_index():
            return 0
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        return self.storage.term(i)

    def term_or_zero(self, i: int) -> int:
        try:
            return self.term(i)
        except CompactedError:
            return 0

    def entries(self, i: int, max_size: int) -> list[raftpb.Entry]:
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_size)

    def all_entries(self) -> list[raftpb.Entry]:
        while True:
            try:
                return self.entries(self.first_index(), NO_LIMIT)
            except CompactedError:
                continue  # storage compacted concurrently; retry from the new first index

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """Is a log ending at (lasti, term) at least as up to date as ours (Raft §5.4.1)?"""
        lt = self.last_term()
        return term > lt or (term == lt and lasti >= self.last_index())

    def match_term(self, i: int, term: int) -> bool:
        try:
            return self.term(i) == term
        except (CompactedError, UnavailableError):
            return False

    def slice(self, lo: int, hi: int, max_size: int) -> list[raftpb.Entry]:
        """Entries [lo, hi); CompactedError if lo is before the first index."""
        if lo > hi:
            raise ValueError(f"invalid slice {lo} > {hi}")
        fi = self.first_index()
        if lo < fi:
            raise CompactedError(f"index {lo} is compacted (first index {fi})")
        if hi > self.last_index() + 1:
            raise ValueError(f"slice [{lo}, {hi}) out of bound [{fi}, {self.last_index()}]")
        if lo == hi:
            return []
        ents: list[raftpb.Entry] = []
        uoff = self.unstable.offset
        if lo < uoff:
            stored = self.storage.entries(lo, min(hi, uoff), max_size)
            # A short read means the size limit was hit; do not add unstable entries after it.
            if len(stored) < min(hi, uoff) - lo:
                return stored
            ents = stored
        if hi > uoff:
            uns = self.unstable.slice(max(lo, uoff), hi)
            ents = ents + uns if ents else uns
        return limit_size(ents, max_size)

    # -- state changes ----------------------------------------------------------
    def commit_to(self, tocommit: int) -> None:
        if self.committed < tocommit:
            if self.last_index() < tocommit:
                raise AssertionError(
                    f"tocommit({tocommit}) is out of range [last index({self.last_index()})]; "
                    "the log was probably corrupted, truncated, or lost")
            self.committed = tocommit

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if self.committed < i or i < self.applied:
            raise AssertionError(f"applied({i}) is out of range [prev applied({self.applied}), "
                                 f"committed({self.committed})]")
        self.applied = i

    def stable_to(self, i: int, t: int) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    def maybe_commit(self, max_index: int, term: int) -> bool:
        # Only entries of the current term are committed by counting replicas (Raft §5.4.2).
        if max_index > self.committed and self.term_or_zero(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def restore(self, snap: raftpb.Snapshot) -> None:
        self.committed = snap.metadata.index
        self.unstable.restore(snap)
