"""The read-only view of stable storage raft needs, and an in-memory reference implementation.

Raft only *reads* stable storage; the application writes to it while handling a Ready
(``append``, ``set_hard_state``, ``apply_snapshot``) and compacts it (``create_snapshot``,
``compact``). Indexes follow the usual convention: the storage holds a snapshot at index ``s``
(possibly 0) and entries ``s+1 .. last_index()``; ``first_index()`` is ``s+1`` and ``term(s)``
still answers with the snapshot's term so the entry before the first one can be matched.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from petcd.proto.raftpb import raft_pb2 as raftpb

from .errors import CompactedError, SnapshotOutOfDateError, UnavailableError
from .types import limit_size


@runtime_checkable
class Storage(Protocol):
    def initial_state(self) -> tuple[raftpb.HardState, raftpb.ConfState]:
        """The persisted hard state and the configuration of the newest snapshot/applied state."""
        ...

    def entries(self, lo: int, hi: int, max_size: int) -> list[raftpb.Entry]:
        """Entries in [lo, hi), at most ``max_size`` bytes but at least one if any exist.

        Raises CompactedError if ``lo`` is at or before the snapshot index, UnavailableError if
        ``hi`` is past ``last_index() + 1``.
        """
        ...

    def term(self, i: int) -> int:
        """Term of entry ``i``; valid for snapshot index .. last_index()."""
        ...

    def last_index(self) -> int: ...

    def first_index(self) -> int: ...

    def snapshot(self) -> raftpb.Snapshot:
        """The newest snapshot (SnapshotTemporarilyUnavailableError if it is being built)."""
        ...


class MemoryStorage:
    """Storage kept in memory. ``_ents[0]`` is a dummy entry carrying the snapshot's index/term.

    Writers hold a lock and either only extend ``_ents`` at the end or replace it with a new
    list, so a reader that binds ``self._ents`` once sees a consistent log without taking the
    lock (the application may write from a thread other than the one driving raft).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hard_state = raftpb.HardState()
        self._snapshot = raftpb.Snapshot()
        self._ents: list[raftpb.Entry] = [raftpb.Entry()]

    # -- the Storage protocol -------------------------------------------------
    def initial_state(self) -> tuple[raftpb.HardState, raftpb.ConfState]:
        with self._lock:
            hs = raftpb.HardState()
            hs.CopyFrom(self._hard_state)
            cs = raftpb.ConfState()
            cs.CopyFrom(self._snapshot.metadata.conf_state)
            return hs, cs

    def entries(self, lo: int, hi: int, max_size: int) -> list[raftpb.Entry]:
        ents = self._ents
        offset = ents[0].index
        if lo <= offset:
            raise CompactedError(f"requested index {lo} is compacted (snapshot at {offset})")
        last = offset + len(ents) - 1
        if hi > last + 1:
            raise UnavailableError(f"entries [{lo}, {hi}) out of bound, last index is {last}")
        if len(ents) == 1:
            return []
        return limit_size(ents[lo - offset:hi - offset], max_size)

    def term(self, i: int) -> int:
        ents = self._ents
        offset = ents[0].index
        if i < offset:
            raise CompactedError(f"requested index {i} is compacted (snapshot at {offset})")
        if i - offset >= len(ents):
            raise UnavailableError(f"requested index {i} is unavailable")
        return ents[i - offset].term

    def last_index(self) -> int:
        ents = self._ents
        return ents[0].index + len(ents) - 1

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def snapshot(self) -> raftpb.Snapshot:
        return self._snapshot

    # -- writes by the application --------------------------------------------
    def set_hard_state(self, hs: raftpb.HardState) -> None:
        with self._lock:
            self._hard_state = raftpb.HardState()
            self._hard_state.CopyFrom(hs)

    def hard_state(self) -> raftpb.HardState:
        with self._lock:
            return self._hard_state

    def apply_snapshot(self, snap: raftpb.Snapshot) -> None:
        """Replace the whole contents with ``snap`` (entries after it are dropped too)."""
        with self._lock:
            if self._snapshot.metadata.index >= snap.metadata.index:
                raise SnapshotOutOfDateError(
                    f"snapshot at {snap.metadata.index} is not newer than {self._snapshot.metadata.index}")
            self._snapshot = raftpb.Snapshot()
            self._snapshot.CopyFrom(snap)
            self._ents = [raftpb.Entry(index=snap.metadata.index, term=snap.metadata.term)]

    def create_snapshot(self, i: int, cs: raftpb.ConfState | None, data: bytes) -> raftpb.Snapshot:
        """Record a snapshot of the applied state at index ``i`` (entries are kept until compact)."""
        with self._lock:
            if i <= self._snapshot.metadata.index:
                raise SnapshotOutOfDateError(f"snapshot at {i} is not newer than {self._snapshot.metadata.index}")
            offset = self._ents[0].index
            last = offset + len(self._ents) - 1
            if i > last:
                raise ValueError(f"snapshot index {i} is out of bound (last index {last})")
            snap = raftpb.Snapshot(data=data)
            snap.metadata.index = i
            snap.metadata.term = self._ents[i - offset].term
            if cs is not None:
                snap.metadata.conf_state.CopyFrom(cs)
            self._snapshot = snap
            return snap

    def compact(self, compact_index: int) -> None:
        """Discard entries before ``compact_index``; it becomes the dummy entry's index."""
        with self._lock:
            offset = self._ents[0].index
            if compact_index <= offset:
                raise CompactedError(f"index {compact_index} is already compacted (at {offset})")
            last = offset + len(self._ents) - 1
            if compact_index > last:
                raise ValueError(f"compact index {compact_index} is out of bound (last index {last})")
            i = compact_index - offset
            dummy = raftpb.Entry(index=self._ents[i].index, term=self._ents[i].term)
            self._ents = [dummy, *self._ents[i + 1:]]

    def append(self, entries: Sequence[raftpb.Entry]) -> None:
        """Append ``entries``, replacing any conflicting suffix; compacted prefixes are skipped."""
        if not entries:
            return
        with self._lock:
            first = self._ents[0].index + 1
            last = entries[0].index + len(entries) - 1
            if last < first:
                return  # everything is already covered by the snapshot
            if first > entries[0].index:
                entries = entries[first - entries[0].index:]
            offset = entries[0].index - self._ents[0].index
            if offset > len(self._ents):
                raise ValueError(
                    f"missing log entry [last: {self._ents[0].index + len(self._ents) - 1}, "
                    f"append at: {entries[0].index}]")
            if offset == len(self._ents):
                # The common case, in place: copying the whole log on every append would make
                # appends O(log length). Readers see the old or the new length, both consistent.
                self._ents.extend(entries)
            else:
                # Replacing a suffix: build a new list so no reader sees it half-truncated.
                self._ents = [*self._ents[:offset], *entries]
