"""MemoryStorage, the unstable tail, RaftLog and flow-control building blocks."""

from __future__ import annotations

import pytest

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import (
    CompactedError,
    Inflights,
    MemoryStorage,
    Progress,
    ProgressState,
    SnapshotOutOfDateError,
    Storage,
    UnavailableError,
)
from petcd.raft.log import RaftLog
from petcd.raft.types import NO_LIMIT, limit_size
from petcd.raft.unstable import Unstable


def ent(index: int, term: int, data: bytes = b"") -> raftpb.Entry:
    return raftpb.Entry(index=index, term=term, data=data)


def ents(*pairs: tuple[int, int]) -> list[raftpb.Entry]:
    return [ent(i, t) for i, t in pairs]


def pairs(es: list[raftpb.Entry]) -> list[tuple[int, int]]:
    return [(e.index, e.term) for e in es]


def storage_with(*p: tuple[int, int]) -> MemoryStorage:
    """A storage whose dummy entry is p[0] (as if compacted there) followed by the rest."""
    s = MemoryStorage()
    snap = raftpb.Snapshot()
    snap.metadata.index, snap.metadata.term = p[0]
    if p[0][0]:
        s.apply_snapshot(snap)
    s.append(ents(*p[1:]))
    return s


class TestMemoryStorage:
    def test_is_a_storage(self) -> None:
        assert isinstance(MemoryStorage(), Storage)

    def test_term(self) -> None:
        s = storage_with((3, 3), (4, 4), (5, 5))
        assert s.term(3) == 3 and s.term(5) == 5
        with pytest.raises(CompactedError):
            s.term(2)
        with pytest.raises(UnavailableError):
            s.term(6)

    def test_entries(self) -> None:
        s = storage_with((3, 3), (4, 4), (5, 5), (6, 6))
        with pytest.raises(CompactedError):
            s.entries(2, 6, NO_LIMIT)
        with pytest.raises(CompactedError):
            s.entries(3, 4, NO_LIMIT)
        assert pairs(s.entries(4, 5, NO_LIMIT)) == [(4, 4)]
        assert pairs(s.entries(4, 7, NO_LIMIT)) == [(4, 4), (5, 5), (6, 6)]
        with pytest.raises(UnavailableError):
            s.entries(4, 8, NO_LIMIT)
        size = ent(4, 4).ByteSize()
        # The size cap returns at least one entry.
        assert pairs(s.entries(4, 7, 0)) == [(4, 4)]
        assert pairs(s.entries(4, 7, 2 * size)) == [(4, 4), (5, 5)]
        assert pairs(s.entries(4, 7, 2 * size - 1)) == [(4, 4)]

    def test_first_last_index(self) -> None:
        s = storage_with((3, 3), (4, 4), (5, 5))
        assert (s.first_index(), s.last_index()) == (4, 5)
        s.append(ents((6, 5)))
        assert s.last_index() == 6
        s.compact(4)
        assert s.first_index() == 5

    def test_compact(self) -> None:
        s = storage_with((3, 3), (4, 4), (5, 5))
        with pytest.raises(CompactedError):
            s.compact(3)
        with pytest.raises(ValueError):
            s.compact(6)
        s.compact(4)
        assert s.term(4) == 4 and s.first_index() == 5
        with pytest.raises(CompactedError):
            s.term(3)

    def test_create_snapshot(self) -> None:
        s = storage_with((3, 3), (4, 4), (5, 5))
        cs = raftpb.ConfState(voters=[1, 2, 3])
        snap = s.create_snapshot(4, cs, b"data")
        assert (snap.metadata.index, snap.metadata.term, snap.data) == (4, 4, b"data")
        assert list(snap.metadata.conf_state.voters) == [1, 2, 3]
        assert s.snapshot().metadata.index == 4
        with pytest.raises(SnapshotOutOfDateError):
            s.create_snapshot(3, cs, b"")
        with pytest.raises(ValueError):
            s.create_snapshot(9, cs, b"")
        # Creating a snapshot does not compact.
        assert s.first_index() == 4
        _hs, ics = s.initial_state()
        assert list(ics.voters) == [1, 2, 3]

    def test_append_overwrites_and_skips_compacted(self) -> None:
        s = storage_with((3, 3), (4, 4), (5, 5))
        s.append(ents((1, 1), (2, 2), (3, 3), (4, 4), (5, 5)))
        assert pairs(s.entries(4, 6, NO_LIMIT)) == [(4, 4), (5, 5)]
        s.append(ents((4, 6), (5, 6)))
        assert pairs(s.entries(4, 6, NO_LIMIT)) == [(4, 6), (5, 6)]
        s.append(ents((6, 5)))
        assert s.last_index() == 6
        s.append(ents((5, 7)))  # truncates 6
        assert s.last_index() == 5 and s.term(5) == 7
        with pytest.raises(ValueError):
            s.append(ents((8, 7)))  # a gap

    def test_apply_snapshot(self) -> None:
        s = MemoryStorage()
        snap = raftpb.Snapshot()
        snap.metadata.index, snap.metadata.term = 4, 4
        s.apply_snapshot(snap)
        assert (s.first_index(), s.last_index(), s.term(4)) == (5, 4, 4)
        with pytest.raises(SnapshotOutOfDateError):
            s.apply_snapshot(snap)


class TestUnstable:
    def test_indexes(self) -> None:
        u = Unstable(5)
        assert u.maybe_first_index() is None and u.maybe_last_index() is None
        u.entries = ents((5, 1))
        assert u.maybe_last_index() == 5
        snap = raftpb.Snapshot()
        snap.metadata.index, snap.metadata.term = 4, 1
        u.snapshot = snap
        assert u.maybe_first_index() == 5
        assert u.maybe_term(4) == 1 and u.maybe_term(5) == 1 and u.maybe_term(6) is None

    def test_stable_to(self) -> None:
        u = Unstable(5)
        u.entries = ents((5, 1), (6, 1))
        u.stable_to(5, 2)  # wrong term: the entry was replaced since; nothing happens
        assert u.offset == 5
        u.stable_to(5, 1)
        assert u.offset == 6 and pairs(u.entries) == [(6, 1)]

    def test_truncate_and_append(self) -> None:
        u = Unstable(5)
        u.entries = ents((5, 1))
        u.truncate_and_append(ents((6, 1), (7, 1)))
        assert pairs(u.entries) == [(5, 1), (6, 1), (7, 1)]
        u.truncate_and_append(ents((6, 2)))
        assert pairs(u.entries) == [(5, 1), (6, 2)]
        u.truncate_and_append(ents((4, 3), (5, 3)))
        assert u.offset == 4 and pairs(u.entries) == [(4, 3), (5, 3)]


class TestRaftLog:
    def make(self) -> RaftLog:
        return RaftLog(storage_with((0, 0), (1, 1), (2, 2), (3, 3)))

    def test_find_conflict(self) -> None:
        lg = self.make()
        assert lg.find_conflict(ents((1, 1), (2, 2))) == 0
        assert lg.find_conflict(ents((2, 2), (3, 3), (4, 4))) == 4
        assert lg.find_conflict(ents((2, 2), (3, 4))) == 3

    def test_find_conflict_by_term(self) -> None:
        lg = RaftLog(storage_with((0, 0), (1, 1), (2, 2), (3, 2), (4, 5), (5, 5), (6, 7)))
        assert lg.find_conflict_by_term(6, 5) == 5
        assert lg.find_conflict_by_term(6, 3) == 3
        assert lg.find_conflict_by_term(6, 1) == 1
        assert lg.find_conflict_by_term(6, 0) == 0
        assert lg.find_conflict_by_term(9, 1) == 9  # beyond the log: unchanged

    def test_maybe_append(self) -> None:
        lg = self.make()
        lg.committed = 1
        assert lg.maybe_append(3, 2, 3, ents((4, 4))) is None  # (3, 2) does not match
        assert lg.maybe_append(3, 3, 9, ents()) == 3
        assert lg.committed == 3  # the leader's commit, capped at the last new entry
        lg.committed = 1
        assert lg.maybe_append(3, 3, 1, ents((4, 4))) == 4
        assert lg.committed == 1
        # A conflict after the commit index truncates our suffix.
        assert lg.maybe_append(2, 2, 3, ents((3, 5))) == 3
        assert pairs(lg.all_entries()) == [(1, 1), (2, 2), (3, 5)]
        # Already-present entries are not re-appended; the commit index follows the leader's
        # but never passes the last new entry.
        assert lg.committed == 3
        assert lg.maybe_append(1, 1, 9, ents((2, 2))) == 2
        assert lg.committed == 3  # never decreases
        assert pairs(lg.all_entries()) == [(1, 1), (2, 2), (3, 5)]

    def test_conflict_with_committed_entry_is_fatal(self) -> None:
        lg = self.make()
        lg.commit_to(3)
        with pytest.raises(AssertionError):
            lg.maybe_append(2, 2, 3, ents((3, 9)))

    def test_is_up_to_date(self) -> None:
        lg = self.make()
        assert lg.is_up_to_date(3, 3) and lg.is_up_to_date(4, 3) and lg.is_up_to_date(1, 4)
        assert not lg.is_up_to_date(2, 3) and not lg.is_up_to_date(9, 2)

    def test_next_ents_and_applied(self) -> None:
        lg = self.make()
        assert lg.next_ents() == [] and not lg.has_next_ents()
        lg.commit_to(2)
        assert pairs(lg.next_ents()) == [(1, 1), (2, 2)]
        lg.applied_to(1)
        assert pairs(lg.next_ents()) == [(2, 2)]
        with pytest.raises(AssertionError):
            lg.applied_to(3)  # beyond committed
        with pytest.raises(AssertionError):
            lg.commit_to(9)  # beyond the log

    def test_slice_spans_storage_and_unstable(self) -> None:
        lg = self.make()
        lg.append(ents((4, 4), (5, 4)))
        assert pairs(lg.slice(2, 6, NO_LIMIT)) == [(2, 2), (3, 3), (4, 4), (5, 4)]
        assert pairs(lg.slice(2, 6, 0)) == [(2, 2)]
        s = lg.slice(2, 6, 3 * ent(1, 1).ByteSize())
        assert pairs(s) == [(2, 2), (3, 3), (4, 4)]
        with pytest.raises(CompactedError):
            lg.slice(0, 2, NO_LIMIT)

    def test_maybe_commit_only_current_term(self) -> None:
        lg = self.make()
        assert not lg.maybe_commit(3, 2)
        assert lg.maybe_commit(2, 2) and lg.committed == 2

    def test_restore(self) -> None:
        lg = self.make()
        snap = raftpb.Snapshot()
        snap.metadata.index, snap.metadata.term = 10, 4
        lg.restore(snap)
        assert (lg.first_index(), lg.last_index(), lg.committed, lg.last_term()) == (11, 10, 10, 4)
        assert lg.has_pending_snapshot()
        lg.stable_snap_to(10)
        assert not lg.has_pending_snapshot()


def test_limit_size() -> None:
    es = ents((1, 1), (2, 1), (3, 1))
    one = es[0].ByteSize()
    assert len(limit_size(es, 0)) == 1
    assert len(limit_size(es, one * 2)) == 2
    assert len(limit_size(es, 10 * one)) == 3


class TestProgress:
    def test_inflights(self) -> None:
        inf = Inflights(3)
        for i in (5, 7, 9):
            inf.add(i)
        assert inf.full()
        with pytest.raises(AssertionError):
            inf.add(10)
        inf.free_le(7)
        assert len(inf) == 1 and not inf.full()
        inf.free_first_one()
        assert len(inf) == 0

    def test_probe_pauses_after_one_send(self) -> None:
        p = Progress(match=1, next=2, inflights=Inflights(4))
        assert not p.is_paused()
        p.probe_sent = True
        assert p.is_paused()
        assert p.maybe_update(2)
        assert not p.is_paused() and p.next == 3

    def test_maybe_decr_to(self) -> None:
        p = Progress(match=0, next=10, inflights=Inflights(4))
        assert not p.maybe_decr_to(5, 3)  # stale: we did not probe at 5
        assert p.maybe_decr_to(9, 3) and p.next == 4
        p = Progress(match=5, next=10, state=ProgressState.REPLICATE, inflights=Inflights(4))
        assert not p.maybe_decr_to(4, 0)  # below match: stale
        assert p.maybe_decr_to(8, 0) and p.next == 6

    def test_snapshot_to_probe(self) -> None:
        p = Progress(match=1, next=2, inflights=Inflights(4))
        p.become_snapshot(10)
        assert p.is_paused() and p.pending_snapshot == 10
        p.become_probe()
        assert p.state == ProgressState.PROBE and p.next == 11
