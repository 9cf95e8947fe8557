"""What a leader does: replicate the log, commit, answer reads, transfer leadership.

These are functions over a :class:`~petcd.raft.raft.Raft` in the leader role; ``step_leader`` is
the leader's step function (see the theory of operation in raft.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from petcd.proto.raftpb import raft_pb2 as raftpb

from .errors import (
    CompactedError,
    ProposalDroppedError,
    SnapshotTemporarilyUnavailableError,
    UnavailableError,
)
from .progress import ProgressState
from .tracker import VoteResult, majority_vote
from .types import NONE, ReadOnlyOption, ReadState, is_empty_snap, msg_from, new_message

if TYPE_CHECKING:
    from .raft import Raft

log = logging.getLogger("petcd.raft")


# -- sending -----------------------------------------------------------------------------------
def maybe_send_append(r: Raft, to: int, send_if_empty: bool = True) -> bool:
    """Send ``to`` the entries it lacks (or a snapshot if they are compacted away).

    Returns False if nothing was sent: the peer is paused by flow control, or there is nothing
    new and ``send_if_empty`` is False.
    """
    pr = r.tracker.progress[to]
    if pr.is_paused():
        return False
    try:
        prev_term = r.raft_log.term(pr.next - 1)
        ents = r.raft_log.entries(pr.next, r.max_msg_size)
        need_snapshot = False
    except (CompactedError, UnavailableError):
        need_snapshot = True
    if not need_snapshot:
        if not ents and not send_if_empty:
            return False
        m = new_message(raftpb.MsgApp, to=to, index=pr.next - 1, log_term=prev_term, entries=ents,
                        commit=r.raft_log.committed)
        if pr.state == ProgressState.REPLICATE:
            if ents:
                last = ents[-1].index
                pr.optimistic_update(last)
                pr.inflights.add(last)
        elif pr.state == ProgressState.PROBE:
            # One probe at a time: wait for its answer (or the next heartbeat response).
            pr.probe_sent = True
        else:
            raise AssertionError(f"{r.id:x} sending append to {to:x} in state {pr.state}")
        r.send(m)
        return True
    # The entries were compacted: send a snapshot instead, but only to a peer that is alive.
    if not pr.recent_active:
        log.debug("%x ignored sending snapshot to %x since it is not recently active", r.id, to)
        return False
    try:
        snap = r.raft_log.snapshot()
    except SnapshotTemporarilyUnavailableError:
        log.debug("%x failed to send snapshot to %x: temporarily unavailable", r.id, to)
        return False
    if is_empty_snap(snap):
        raise AssertionError("need non-empty snapshot")
    pr.become_snapshot(snap.metadata.index)
    r.send(new_message(raftpb.MsgSnap, to=to, snapshot=snap))
    return True


def send_append(r: Raft, to: int) -> None:
    maybe_send_append(r, to, True)


def bcast_append(r: Raft) -> None:
    r.bcast_pending = False
    for id_, _ in r.tracker.items():
        if id_ != r.id:
            send_append(r, id_)


def send_new_entries(r: Raft) -> None:
    """Send every follower what flow control allows of the entries it lacks (no empty appends)."""
    for id_, _ in r.tracker.items():
        if id_ != r.id:
            while maybe_send_append(r, id_, False):
                pass


def send_heartbeat(r: Raft, to: int, ctx: bytes) -> None:
    # Never tell a follower to commit beyond what it is known to have: its log may not have it.
    commit = min(r.tracker.progress[to].match, r.raft_log.committed)
    r.send(new_message(raftpb.MsgHeartbeat, to=to, commit=commit, context=ctx))


def bcast_heartbeat(r: Raft, ctx: bytes | None = None) -> None:
    if ctx is None:
        ctx = r.read_only.last_pending_request_ctx()
    for id_, _ in r.tracker.items():
        if id_ != r.id:
            send_heartbeat(r, id_, ctx)


def send_timeout_now(r: Raft, to: int) -> None:
    r.send(new_message(raftpb.MsgTimeoutNow, to=to))


def step_down_after_removal(r: Raft) -> None:
    """This leader just applied its own removal (or demotion): hand over and step down.

    The most caught-up remaining voter is told to campaign at once so the cluster does not wait
    out an election timeout.
    """
    last = r.raft_log.last_index()
    target = NONE
    for id_, pr in r.tracker.items():
        if id_ != r.id and id_ in r.tracker.voters and pr.match == last:
            target = id_
            break
    log.info("%x removed from the configuration; stepping down (handing over to %x)", r.id, target)
    r.become_follower(r.term, NONE)
    if target != NONE:
        send_timeout_now(r, target)


# -- reads ---------------------------------------------------------------------------------------
def committed_entry_in_current_term(r: Raft) -> bool:
    return r.raft_log.term_or_zero(r.raft_log.committed) == r.term


def response_to_read_index_req(r: Raft, req: raftpb.Message, read_index: int) -> raftpb.Message | None:
    frm = msg_from(req)
    if frm == NONE or frm == r.id:
        r.read_states.append(ReadState(read_index, req.entries[0].data))
        return None
    return new_message(raftpb.MsgReadIndexResp, to=frm, index=read_index, entries=req.entries)


def send_read_index_response(r: Raft, m: raftpb.Message) -> None:
    if r.read_only.option == ReadOnlyOption.SAFE:
        ctx = m.entries[0].data
        r.read_only.add_request(r.raft_log.committed, m)
        r.read_only.recv_ack(r.id, ctx)  # the leader acknowledges itself
        bcast_heartbeat(r, ctx)
    else:
        resp = response_to_read_index_req(r, m, r.raft_log.committed)
        if resp is not None:
            r.send(resp)


def release_pending_read_index_messages(r: Raft) -> None:
    if not r.pending_read_index_messages or not committed_entry_in_current_term(r):
        return
    msgs = r.pending_read_index_messages
    r.pending_read_index_messages = []
    for m in msgs:
        send_read_index_response(r, m)


# -- the leader's step function ------------------------------------------------------------------
def step_leader(r: Raft, m: raftpb.Message) -> None:
    t = m.type
    if t == raftpb.MsgBeat:
        bcast_heartbeat(r)
        return
    if t == raftpb.MsgCheckQuorum:
        me = r.tracker.progress.get(r.id)
        if me is not None:
            me.recent_active = True
        if not r.tracker.quorum_active():
            log.warning("%x stepped down to follower since quorum is not active", r.id)
            r.become_follower(r.term, NONE)
        # Start the next round: everyone but us must prove itself active again.
        for id_, other in r.tracker.progress.items():
            if id_ != r.id:
                other.recent_active = False
        return
    if t == raftpb.MsgProp:
        if not m.entries:
            raise AssertionError(f"{r.id:x} stepped empty MsgProp")
        propose(r, list(m.entries))
        return
    if t == raftpb.MsgReadIndex:
        if r.tracker.is_singleton() and r.id in r.tracker.voters:
            resp = response_to_read_index_req(r, m, r.raft_log.committed)
            if resp is not None:
                r.send(resp)
            return
        # A new leader does not know the commit index until it commits an entry of its own
        # term; park the read until then.
        if not committed_entry_in_current_term(r):
            r.pending_read_index_messages.append(m)
            return
        send_read_index_response(r, m)
        return

    frm = msg_from(m)
    pr = r.tracker.progress.get(frm)
    if pr is None:
        return
    if t == raftpb.MsgAppResp:
        pr.recent_active = True
        if m.reject:
            # Fast backtracking: the follower's hint is the largest index where the logs may
            # match; if it also sent that entry's term, skip our entries with larger terms too.
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe = r.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                send_append(r, frm)
            return
        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            # The snapshot (or something newer) arrived; resume normal replication.
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if r.maybe_commit():
            # An entry of our term is committed: pending reads may proceed.
            release_pending_read_index_messages(r)
            bcast_append(r)
        elif old_paused:
            # The peer may have missed the latest commit index while it was paused.
            send_append(r, frm)
        # Flow control may allow more (size-limited) messages now; send them, but no empty ones.
        while maybe_send_append(r, frm, False):
            pass
        if frm == r.lead_transferee and pr.match == r.raft_log.last_index():
            log.info("%x sent MsgTimeoutNow to %x after it caught up", r.id, frm)
            send_timeout_now(r, frm)
    elif t == raftpb.MsgHeartbeatResp:
        pr.recent_active = True
        pr.probe_sent = False
        # Free one slot of a full window so a lost append cannot stall the peer for good.
        if pr.state == ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first_one()
        if pr.match < r.raft_log.last_index():
            send_append(r, frm)
        if r.read_only.option != ReadOnlyOption.SAFE or not m.context:
            return
        acks = r.read_only.recv_ack(frm, m.context)
        if acks is None or majority_vote(r.tracker.voters, acks) != VoteResult.WON:
            return
        for rs in r.read_only.advance(m.context):
            resp = response_to_read_index_req(r, rs.req, rs.index)
            if resp is not None:
                r.send(resp)
    elif t == raftpb.MsgSnapStatus:
        if pr.state != ProgressState.SNAPSHOT:
            return
        if m.reject:
            # Failed: forget the snapshot so probing restarts from what the peer has.
            pr.pending_snapshot = 0
        pr.become_probe()
        # Wait for the peer's answer (success) or the next heartbeat (failure) before sending.
        pr.probe_sent = True
    elif t == raftpb.MsgUnreachable:
        # Optimistic appends to an unreachable peer were probably lost.
        if pr.state == ProgressState.REPLICATE:
            pr.become_probe()
    elif t == raftpb.MsgTransferLeader:
        _step_transfer(r, m, frm)


def propose(r: Raft, ents: list[raftpb.Entry]) -> None:
    """Append proposed entries (a MsgProp's, or RawNode.propose's without building one)."""
    if r.id not in r.tracker.progress:
        # Removed from the configuration while leading.
        raise ProposalDroppedError(f"{r.id:x} is not a member any more")
    if r.lead_transferee != NONE:
        raise ProposalDroppedError(
            f"{r.id:x} leadership transfer to {r.lead_transferee:x} in progress; dropping proposal")
    for i, e in enumerate(ents):
        if e.type != raftpb.EntryConfChange:
            continue
        if r.pending_conf_index > r.raft_log.applied:
            # One change at a time: an earlier one is not applied yet. Keep the slot (so indexes
            # the proposer may rely on stay put) but make it a no-op.
            log.info("%x ignoring conf change at index %d: an earlier one (index %d) is not applied (%d)",
                     r.id, r.raft_log.last_index() + i + 1, r.pending_conf_index, r.raft_log.applied)
            ents[i] = raftpb.Entry(type=raftpb.EntryNormal)
        else:
            r.pending_conf_index = r.raft_log.last_index() + i + 1
    if not r.append_entry(ents):
        raise ProposalDroppedError(f"{r.id:x} too many uncommitted entries; dropping proposal")
    r.bcast_pending = True  # sent by Raft.flush when the next Ready is built


def _step_transfer(r: Raft, m: raftpb.Message, transferee: int) -> None:
    pr = r.tracker.progress[transferee]
    if pr.is_learner:
        log.info("%x ignored transferring leadership to learner %x", r.id, transferee)
        return
    last = r.lead_transferee
    if last != NONE:
        if last == transferee:
            return  # same transfer already in progress
        r.abort_leader_transfer()
    if transferee == r.id:
        return  # already leader
    # The transfer must finish within an election timeout (see Raft._tick_heartbeat).
    r.election_elapsed = 0
    r.lead_transferee = transferee
    if pr.match == r.raft_log.last_index():
        send_timeout_now(r, transferee)
    else:
        send_append(r, transferee)
