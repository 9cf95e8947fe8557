"""The tail of the log (and possibly an incoming snapshot) not yet persisted by the application.

``entries[i]`` has index ``offset + i``. ``offset`` may be smaller than the storage's last index
+ 1: a new leader can overwrite a suffix the application already persisted, in which case the
application's next ``append`` replaces that suffix in stable storage too.
"""

from __future__ import annotations

from petcd.proto.raftpb import raft_pb2 as raftpb


class Unstable:
    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: int) -> None:
        self.snapshot: raftpb.Snapshot | None = None
        self.entries: list[raftpb.Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.metadata.index == i:
                return self.snapshot.metadata.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        if not self.entries:  # i == snapshot index == offset - 1 handled above; unreachable
            return None
        return self.entries[i - self.offset].term

    def stable_to(self, i: int, t: int) -> None:
        """Entries up to ``i`` (with term ``t``) were persisted; forget them."""
        gt = self.maybe_term(i)
        if gt is None:
            return
        # Only if the entry is still the one that was persisted (it may have been replaced since
        # the Ready was created) and it is an unstable entry, not the snapshot.
        if gt == t and i >= self.offset:
            del self.entries[:i + 1 - self.offset]
            self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == i:
            self.snapshot = None

    def restore(self, snap: raftpb.Snapshot) -> None:
        self.offset = snap.metadata.index + 1
        self.entries = []
        self.snapshot = snap

    def truncate_and_append(self, ents: list[raftpb.Entry]) -> None:
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            # Replace everything unstable; the application will overwrite stable storage from
            # ``after`` on when it persists these.
            self.offset = after
            self.entries = list(ents)
        else:
            self.entries = self.entries[:after - self.offset] + ents

    def slice(self, lo: int, hi: int) -> list[raftpb.Entry]:
        if lo > hi or lo < self.offset or hi > self.offset + len(self.entries):
            raise ValueError(f"invalid unstable slice [{lo}, {hi}) (offset {self.offset}, "
                             f"len {len(self.entries)})")
        return self.entries[lo - self.offset:hi - self.offset]
