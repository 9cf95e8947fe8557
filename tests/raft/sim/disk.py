"""A simulated disk for one node: only what the driver persisted survives a crash.

It holds the three things a real member keeps (WAL hard state, WAL entries, snapshot file). The
driver writes a whole Ready at once (`write`), or, when the node crashes while a write is in
flight, a torn prefix of it (`write_torn`): some leading entries reach the disk, the hard state
record (written last, as in a WAL) does not. `load` rebuilds a fresh MemoryStorage from it.
"""

from __future__ import annotations

from collections.abc import Sequence

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import MemoryStorage


class Disk:
    def __init__(self) -> None:
        self.hard_state = raftpb.HardState()
        self.snapshot: raftpb.Snapshot | None = None
        self.entries: list[raftpb.Entry] = []  # entries[0].index == snap_index() + 1
        self.ever_written = False

    def snap_index(self) -> int:
        return self.snapshot.metadata.index if self.snapshot is not None else 0

    def snap_term(self) -> int:
        return self.snapshot.metadata.term if self.snapshot is not None else 0

    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snap_index()

    def term(self, index: int) -> int | None:
        """Term of the entry at index; None when it is not on disk (compacted or beyond the end)."""
        si = self.snap_index()
        if index == si:
            return self.snap_term()
        if index < si or index > self.last_index():
            return None
        return self.entries[index - si - 1].term

    def entry(self, index: int) -> raftpb.Entry | None:
        si = self.snap_index()
        if index <= si or index > self.last_index():
            return None
        return self.entries[index - si - 1]

    def save_snapshot(self, snap: raftpb.Snapshot) -> None:
        """Store a snapshot received from the leader: it replaces the whole log (like MemoryStorage)."""
        self.ever_written = True
        self.snapshot = snap
        self.entries = []

    def save_local_snapshot(self, snap: raftpb.Snapshot) -> None:
        """A snapshot the node made of its own applied state: it becomes the restore point and the
        entries it covers leave the disk (the in-memory log may keep a few more for followers)."""
        self.ever_written = True
        self.snapshot = snap
        self.entries = [e for e in self.entries if e.index > snap.metadata.index]

    def set_hard_state(self, hs: raftpb.HardState) -> None:
        self.ever_written = True
        self.hard_state = raftpb.HardState(term=hs.term, vote=hs.vote, commit=hs.commit)

    def append(self, entries: Sequence[raftpb.Entry]) -> int:
        """Append, truncating any conflicting suffix; returns the first index overwritten (0 if none)."""
        if not entries:
            return 0
        self.ever_written = True
        first = entries[0].index
        si = self.snap_index()
        if first <= si:
            entries = [e for e in entries if e.index > si]
            if not entries:
                return 0
            first = entries[0].index
        if first > self.last_index() + 1:
            raise AssertionError(f"disk append leaves a gap: last {self.last_index()}, first new {first}")
        overwritten = first if first <= self.last_index() else 0
        del self.entries[first - si - 1 :]
        for e in entries:
            c = raftpb.Entry()
            c.CopyFrom(e)
            self.entries.append(c)
        return overwritten

    def load(self) -> MemoryStorage:
        st = MemoryStorage()
        if self.snapshot is not None:
            st.apply_snapshot(self.snapshot)
        st.set_hard_state(self.hard_state)
        if self.entries:
            st.append(list(self.entries))
        return st
