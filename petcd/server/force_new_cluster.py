"""--force-new-cluster: restart a member as the only member of its cluster, keeping its data.

As etcd does: entries that were never committed are dropped, and for every other member of
the configuration the WAL knows of (the snapshot's ConfState plus the committed conf changes
after it) a ConfChangeRemoveNode entry is appended after the commit index and committed at once.
The member then applies those removals like any other committed entry (raft's configuration and
the member list both shrink to this member), and, as a lone voter, elects itself. The cluster
and member IDs stay as they were.

A member the configuration does not hold (a data dir made by `petcdutl backup` / `etcdutl
backup`, whose conf changes are blanked) is added first, as etcd adds it: a ConfChangeAddNode
with the peer URL http://localhost:2380, which `member update` corrects later (the member's
name and client URLs arrive with its usual attribute publication).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.proto.serverpb import internal_pb2 as serverpb

__all__ = ["SELF_PEER_URL", "Standalone", "standalone"]

# etcd's placeholder peer URL for a member added to its own configuration by --force-new-cluster
SELF_PEER_URL = "http://localhost:2380"


@dataclass(frozen=True, slots=True)
class Standalone:
    entries: list[raftpb.Entry]  # the committed entries, then the conf changes appended
    hard_state: raftpb.HardState  # committing the appended conf changes
    appended: list[raftpb.Entry]  # (the addition of this member, then) the removals, to write to the WAL


def _members(conf_state: raftpb.ConfState | None, entries: Sequence[raftpb.Entry]) -> set[int]:
    ids: set[int] = set()
    if conf_state is not None:
        ids.update(conf_state.voters)
        ids.update(conf_state.learners)
    for ent in entries:
        if ent.type != raftpb.EntryConfChange:
            continue
        cc = raftpb.ConfChange.FromString(ent.data)
        if cc.type in (raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode):
            ids.add(cc.node_id)
        elif cc.type == raftpb.ConfChangeRemoveNode:
            ids.discard(cc.node_id)
    return ids


def standalone(member_id: int, conf_state: raftpb.ConfState | None, hard_state: raftpb.HardState,
               entries: Sequence[raftpb.Entry]) -> Standalone:
    """What restarting ``member_id`` as a one-member cluster writes and replays; see the module
    docstring. ``conf_state`` is the newest snapshot's (None without one)."""
    committed = [e for e in entries if e.index <= hard_state.commit]
    members = _members(conf_state, committed)
    index, term = hard_state.commit, hard_state.term
    appended: list[raftpb.Entry] = []
    if member_id not in members:
        # added before anyone is removed: raft must never be left without a voter
        index += 1
        ctx = serverpb.ConfChangeContext(member=serverpb.MemberRecord(id=member_id, peer_urls=[SELF_PEER_URL]))
        cc = raftpb.ConfChange(type=raftpb.ConfChangeAddNode, node_id=member_id, context=ctx.SerializeToString())
        appended.append(raftpb.Entry(type=raftpb.EntryConfChange, term=term, index=index,
                                     data=cc.SerializeToString()))
    for other in sorted(members - {member_id}):
        index += 1
        cc = raftpb.ConfChange(type=raftpb.ConfChangeRemoveNode, node_id=other)
        appended.append(raftpb.Entry(type=raftpb.EntryConfChange, term=term, index=index,
                                     data=cc.SerializeToString()))
    state = raftpb.HardState(term=term, vote=hard_state.vote, commit=index)
    return Standalone(committed + appended, state, appended)
