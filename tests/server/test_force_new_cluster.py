"""petcd.server.force_new_cluster: which entries a forced one-member restart keeps and adds."""

from __future__ import annotations

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.server.force_new_cluster import SELF_PEER_URL, standalone


def _cc(index: int, kind: raftpb.ConfChangeType, node: int) -> raftpb.Entry:
    data = raftpb.ConfChange(type=kind, node_id=node).SerializeToString()
    return raftpb.Entry(type=raftpb.EntryConfChange, term=2, index=index, data=data)


def test_uncommitted_entries_go_and_every_other_member_is_removed() -> None:
    entries = [
        _cc(11, raftpb.ConfChangeAddNode, 4),
        _cc(12, raftpb.ConfChangeRemoveNode, 2),
        raftpb.Entry(term=2, index=13, data=b"committed"),
        raftpb.Entry(term=3, index=14, data=b"never committed"),
        _cc(15, raftpb.ConfChangeAddNode, 9),  # uncommitted: 9 never joined
    ]
    conf = raftpb.ConfState(voters=[1, 2, 3])
    alone = standalone(1, conf, raftpb.HardState(term=3, vote=1, commit=13), entries)
    removed = [raftpb.ConfChange.FromString(e.data).node_id for e in alone.appended]
    assert removed == [3, 4]
    assert [e.index for e in alone.appended] == [14, 15] and {e.term for e in alone.appended} == {3}
    assert [e.index for e in alone.entries] == [11, 12, 13, 14, 15]
    assert alone.entries[3].type == raftpb.EntryConfChange  # index 14 is now a removal
    assert (alone.hard_state.term, alone.hard_state.vote, alone.hard_state.commit) == (3, 1, 15)


def test_a_member_outside_the_configuration_adds_itself_first() -> None:
    """etcd's createConfigChangeEnts: self is added (placeholder peer URL), then the others go."""
    alone = standalone(7, raftpb.ConfState(voters=[1, 2]), raftpb.HardState(term=4, vote=1, commit=5), [])
    changes = [raftpb.ConfChange.FromString(e.data) for e in alone.appended]
    assert [(c.type, c.node_id) for c in changes] == [
        (raftpb.ConfChangeAddNode, 7), (raftpb.ConfChangeRemoveNode, 1), (raftpb.ConfChangeRemoveNode, 2)]
    member = serverpb.ConfChangeContext.FromString(changes[0].context).member
    assert (member.id, list(member.peer_urls), member.name) == (7, [SELF_PEER_URL], "")
    assert [e.index for e in alone.appended] == [6, 7, 8] and alone.hard_state.commit == 8


def test_an_empty_configuration_gets_this_member_alone() -> None:
    """A backup's WAL has its conf changes blanked: the member is the only one added."""
    blank = [raftpb.Entry(term=2, index=i) for i in range(1, 4)]
    alone = standalone(9, None, raftpb.HardState(term=2, vote=9, commit=3), blank)
    assert len(alone.appended) == 1 and raftpb.ConfChange.FromString(alone.appended[0].data).node_id == 9
    assert [e.index for e in alone.entries] == [1, 2, 3, 4]
