"""What a follower does with the leader's appends, heartbeats and snapshots.

Functions over a :class:`~petcd.raft.raft.Raft` (see the theory of operation in raft.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from petcd.proto.raftpb import raft_pb2 as raftpb

from .types import NONE, StateType, msg_from, new_message

if TYPE_CHECKING:
    from .raft import Raft

log = logging.getLogger("petcd.raft")


def handle_append_entries(r: Raft, m: raftpb.Message) -> None:
    frm = msg_from(m)
    if m.index < r.raft_log.committed:
        # Everything up to our commit index is known to match; tell the leader so.
        r.send(new_message(raftpb.MsgAppResp, to=frm, index=r.raft_log.committed))
        return
    last_new = r.raft_log.maybe_append(m.index, m.log_term, m.commit, list(m.entries))
    if last_new is not None:
        r.send(new_message(raftpb.MsgAppResp, to=frm, index=last_new))
        return
    # Hint where our logs may match: the largest index <= min(m.index, our last) whose term
    # is <= m.log_term. The leader can then skip every index of a term we do not share.
    hint = min(m.index, r.raft_log.last_index())
    hint = r.raft_log.find_conflict_by_term(hint, m.log_term)
    hint_term = r.raft_log.term_or_zero(hint)
    r.send(new_message(raftpb.MsgAppResp, to=frm, index=m.index, reject=True,
                      reject_hint=hint, log_term=hint_term))


def handle_heartbeat(r: Raft, m: raftpb.Message) -> None:
    # The leader sends min(our match, its commit), so this never exceeds our log.
    r.raft_log.commit_to(m.commit)
    r.send(new_message(raftpb.MsgHeartbeatResp, to=msg_from(m), context=m.context))


def handle_snapshot(r: Raft, m: raftpb.Message) -> None:
    frm = msg_from(m)
    if restore(r, m.snapshot):
        r.send(new_message(raftpb.MsgAppResp, to=frm, index=r.raft_log.last_index()))
    else:
        r.send(new_message(raftpb.MsgAppResp, to=frm, index=r.raft_log.committed))


def restore(r: Raft, s: raftpb.Snapshot) -> bool:
    """Install snapshot ``s`` if it is newer than our commit index."""
    md = s.metadata
    if md.index <= r.raft_log.committed:
        return False
    if r.state != StateType.FOLLOWER:
        # Defensive: only followers receive snapshots. Moving to a new term keeps a would-be
        # leader from acting on a log it is about to lose.
        log.warning("%x attempted to restore snapshot as %s; stepping down", r.id, r.state)
        r.become_follower(r.term + 1, NONE)
        return False
    # The snapshot's configuration may predate our own addition (the application snapshots
    # when it likes). That is fine: the entries after it, including the change that adds us,
    # follow, and nothing here needs us to be in the configuration meanwhile.
    if r.raft_log.match_term(md.index, md.term):
        # We already have the entry; just fast-forward the commit index.
        r.raft_log.commit_to(md.index)
        return False
    # Kept by reference (snapshots can be large); messages are never mutated once stepped.
    r.raft_log.restore(s)
    r.tracker.restore(md.conf_state, r.raft_log.last_index())
    r.refresh_learner_flag()
    return True
