"""The Raft state machine.

Theory of operation
-------------------
A :class:`Raft` object is one member's consensus state. It does no I/O: input arrives through
``tick()`` (logical time) and ``step(msg)`` (messages from peers and local requests), and output
accumulates in ``msgs`` (messages to send), ``read_states`` and the log's unstable tail, which
:class:`~petcd.raft.rawnode.RawNode` packages into a Ready for the application.

Every message first passes through ``step``, which deals with terms exactly once:

* a message from a higher term makes us a follower of that term (the sender becomes our leader
  if it is one: MsgApp/MsgHeartbeat/MsgSnap) -- except a vote request arriving while we are in a
  leader lease (CheckQuorum: we heard from a leader less than an election timeout ago), which is
  ignored so a partitioned node cannot depose a healthy leader, and PreVote traffic, which never
  changes terms;
* a message from a lower term is dropped, but a stale leader's append/heartbeat is answered so
  it learns the new term, and a stale pre-vote is rejected explicitly;
* MsgHup (start an election) and vote requests are handled in ``step`` for every role;
* everything else goes to the role's step function (``_step_follower``, ``_step_candidate`` or
  ``leader.step_leader``), installed by ``become_follower/_pre_candidate/_candidate/_leader``
  together with the tick function (followers and candidates count towards an election, leaders
  count towards heartbeats and CheckQuorum). The leader's work lives in leader.py, the handling
  of the leader's appends, heartbeats and snapshots in follower.py.

Elections: a follower that hears nothing for its randomized election timeout (drawn from
[election_tick, 2*election_tick)) campaigns. With PreVote it first asks "would you vote for me
in term+1?" without changing any term, and only runs a real election when a majority says yes;
this keeps a rejoining partitioned node from forcing a new term on the cluster. A voter grants
at most one vote per term, and only to a candidate whose log is at least as up to date (§5.4.1).

Replication: the leader appends an empty entry on election (committing it commits everything
before it) and tracks each follower in ``tracker`` (see progress.py for the probe / replicate /
snapshot flow control). A follower accepts an append only if its log contains the preceding
(index, term); otherwise it rejects with a hint (its last index, and the largest index whose
term is <= the leader's) so the leader can skip back a whole term at a time. The leader commits
an index once a majority of voters match it *and* the entry is from the current term (§5.4.2).
Proposals are appended at once but sent when the next Ready is built (``flush``), so all the
proposals of one Ready travel in one append per follower.

Persistence contract: the application persists the Ready's hard state and entries before it
sends the Ready's messages. That is what makes it safe to count our own vote and our own
appended entries immediately, and to answer votes and appends from within ``step``.

Membership changes are single-member ConfChange entries. They take effect when the application
applies them (``apply_conf_change``), only one may be pending (uncommitted or unapplied) at a
time, and a leader that removes or demotes itself steps down.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from petcd.proto.raftpb import raft_pb2 as raftpb

from . import follower, leader
from .config import Config
from .errors import NoLeaderError, ProposalDroppedError
from .log import RaftLog
from .progress import Progress
from .readonly import ReadOnly
from .storage import Storage
from .tracker import ConfChangeError, ProgressTracker, VoteResult
from .types import (
    NO_LIMIT,
    NONE,
    ReadState,
    SoftState,
    StateType,
    msg_from,
    new_message,
    payload_size,
    vote_resp_type,
)

log = logging.getLogger("petcd.raft")

# Election kinds; the transfer kind is sent as the vote request context so that voters grant it
# even inside a leader lease.
CAMPAIGN_PRE_ELECTION = b"CampaignPreElection"
CAMPAIGN_ELECTION = b"CampaignElection"
CAMPAIGN_TRANSFER = b"CampaignTransfer"

# Forwarded proposals are merged into one MsgProp up to this much payload (well under the peer
# transport's batch cap).
FORWARD_BATCH_BYTES = 1 << 20


class Raft:
    def __init__(self, c: Config) -> None:
        c.validate()
        assert c.storage is not None
        storage: Storage = c.storage
        self.id = c.id
        max_next = c.max_committed_size_per_ready or c.max_size_per_msg
        self.raft_log = RaftLog(storage, max_next)
        self.max_msg_size = c.max_size_per_msg
        self.max_uncommitted_size = c.max_uncommitted_entries_size or NO_LIMIT
        self.tracker = ProgressTracker(c.max_inflight_msgs)
        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = StateType.FOLLOWER
        self.is_learner = False
        self.msgs: list[raftpb.Message] = []
        self.read_states: list[ReadState] = []
        self.lead_transferee = NONE
        # Index of the latest conf change entry appended by this leader; another conf change may
        # only be proposed once it has been applied.
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly(c.read_only_option)
        # Read requests received before this leader committed an entry of its term.
        self.pending_read_index_messages: list[raftpb.Message] = []
        # Proposals were appended but not yet sent to followers: they go out together, one append
        # per follower per Ready, when the Ready is built (see flush).
        self.bcast_pending = False
        # A follower's forwarded proposals that are still waiting in msgs go to the leader as one
        # MsgProp (see forward_proposal): the message being extended and its payload bytes.
        self.forwarding: raftpb.Message | None = None
        self.forwarding_bytes = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.check_quorum = c.check_quorum
        self.pre_vote = c.pre_vote
        self.heartbeat_timeout = c.heartbeat_tick
        self.election_timeout = c.election_tick
        self.randomized_election_timeout = c.election_tick
        self.disable_proposal_forwarding = c.disable_proposal_forwarding
        self.rand = c.rand if c.rand is not None else random.Random(c.id)
        self._step: Callable[[raftpb.Message], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election

        hs, cs = storage.initial_state()
        self.tracker.restore(cs, self.raft_log.last_index())
        self.refresh_learner_flag()
        if hs.term or hs.vote or hs.commit:
            self.load_state(hs)
        if c.applied > 0:
            # Whatever the application applied was committed, even if the hard state recording
            # that commit index was not synced before a crash.
            if self.raft_log.committed < c.applied <= self.raft_log.last_index():
                self.raft_log.committed = c.applied
            self.raft_log.applied_to(c.applied)
        self.become_follower(self.term, NONE)

    # -- small accessors -----------------------------------------------------------
    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.state)

    def hard_state(self) -> raftpb.HardState:
        return raftpb.HardState(term=self.term, vote=self.vote, commit=self.raft_log.committed)

    def load_state(self, hs: raftpb.HardState) -> None:
        if hs.commit > self.raft_log.last_index():
            raise AssertionError(f"{self.id:x} state.commit {hs.commit} is out of range "
                                 f"[{self.raft_log.committed}, {self.raft_log.last_index()}]; "
                                 "the log was probably truncated or lost")
        # A commit index below the snapshot's (a hard state written without fsync, older than a
        # snapshot that was synced) is harmless: everything in the snapshot is committed.
        self.raft_log.committed = max(hs.commit, self.raft_log.committed)
        self.term = hs.term
        self.vote = hs.vote

    def promotable(self) -> bool:
        """Can this node become leader: a voter in its own config, with no snapshot in flight."""
        pr = self.tracker.progress.get(self.id)
        return pr is not None and not pr.is_learner and not self.raft_log.has_pending_snapshot()

    def past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def reset_randomized_election_timeout(self) -> None:
        self.randomized_election_timeout = self.election_timeout + self.rand.randrange(self.election_timeout)

    def refresh_learner_flag(self) -> None:
        pr = self.tracker.progress.get(self.id)
        self.is_learner = pr is not None and pr.is_learner

    # -- sending -----------------------------------------------------------------------
    def send(self, m: raftpb.Message) -> None:
        if msg_from(m) == NONE:
            setattr(m, "from", self.id)
        t = m.type
        if t in (raftpb.MsgVote, raftpb.MsgVoteResp, raftpb.MsgPreVote, raftpb.MsgPreVoteResp):
            # Vote traffic carries the term it is about (for PreVote: a future term), set by the
            # caller; an unset term here is a bug.
            if m.term == 0:
                raise AssertionError(f"term should be set when sending {raftpb.MessageType.Name(t)}")
        else:
            if m.term != 0:
                raise AssertionError(f"term should not be set when sending {raftpb.MessageType.Name(t)}")
            # Proposals and read requests are forwarded as-is; they are not tied to a term.
            if t != raftpb.MsgProp and t != raftpb.MsgReadIndex:
                m.term = self.term
        self.msgs.append(m)

    def forward_proposal(self, m: raftpb.Message) -> None:
        """Send a follower's MsgProp to the leader, merged into the one still waiting to go out.

        Forwarded proposals leave with the follower's next Ready (after its WAL write), so the
        proposals of that interval can travel as one message: one step, one append and one reply
        on the leader instead of one per proposal. Merged only while it is the last message queued
        (the order of messages stays as raft made them) and up to FORWARD_BATCH_BYTES of payload.
        """
        size = payload_size(m.entries)
        f = self.forwarding
        if (f is not None and self.msgs and self.msgs[-1] is f and f.to == self.lead
                and self.forwarding_bytes + size <= FORWARD_BATCH_BYTES):
            f.entries.extend(m.entries)
            self.forwarding_bytes += size
            return
        m.to = self.lead
        self.send(m)
        self.forwarding = m
        self.forwarding_bytes = size

    # -- role changes --------------------------------------------------------------------
    def reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.reset_randomized_election_timeout()
        self.abort_leader_transfer()
        self.tracker.reset_votes()
        last = self.raft_log.last_index()
        for id_, pr in self.tracker.progress.items():
            fresh = Progress(match=0, next=last + 1, inflights=pr.inflights, is_learner=pr.is_learner)
            fresh.inflights.reset()
            if id_ == self.id:
                fresh.match = last
            self.tracker.progress[id_] = fresh
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly(self.read_only.option)
        self.pending_read_index_messages = []
        self.bcast_pending = False

    def flush(self) -> None:
        """Send the appends for proposals accepted since the last flush.

        Batching them per Ready (instead of one append per proposal) is what lets many
        concurrent proposals share one message, and one fsync on every follower.
        """
        if self.bcast_pending:
            self.bcast_pending = False
            if self.state == StateType.LEADER:
                leader.send_new_entries(self)

    def become_follower(self, term: int, lead: int) -> None:
        self._step = self._step_follower
        self.reset(term)
        self._tick = self._tick_election
        self.lead = lead
        self.state = StateType.FOLLOWER

    def become_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self._step = self._step_candidate
        self.reset(self.term + 1)
        self._tick = self._tick_election
        self.vote = self.id
        self.state = StateType.CANDIDATE

    def become_pre_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # A pre-candidate changes neither term nor vote, and keeps its election timer running.
        self._step = self._step_candidate
        self.tracker.reset_votes()
        self._tick = self._tick_election
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE

    def become_leader(self) -> None:
        if self.state == StateType.FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self._step = self._step_leader
        self.reset(self.term)
        self._tick = self._tick_heartbeat
        self.lead = self.id
        self.state = StateType.LEADER
        pr = self.tracker.progress[self.id]
        pr.become_replicate()
        pr.recent_active = True
        # Conservatively treat everything in our log as possibly containing a conf change that
        # is not yet applied; nothing new may be proposed until it is.
        self.pending_conf_index = self.raft_log.last_index()
        # The empty entry of the new term: committing it commits all earlier entries (§5.4.2).
        if not self.append_entry([raftpb.Entry()]):
            raise AssertionError("empty entry was dropped")

    def _step_leader(self, m: raftpb.Message) -> None:
        leader.step_leader(self, m)

    # -- ticking -------------------------------------------------------------------------
    def tick(self) -> None:
        self._tick()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.past_election_timeout():
            self.election_elapsed = 0
            self.step(new_message(raftpb.MsgHup, frm=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(new_message(raftpb.MsgCheckQuorum, frm=self.id))
            # A transfer that has not finished within an election timeout is abandoned.
            if self.state == StateType.LEADER and self.lead_transferee != NONE:
                self.abort_leader_transfer()
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(new_message(raftpb.MsgBeat, frm=self.id))

    # -- log -----------------------------------------------------------------------------
    def append_entry(self, es: list[raftpb.Entry]) -> bool:
        li = self.raft_log.last_index()
        for i, e in enumerate(es):
            e.term = self.term
            e.index = li + 1 + i
        if not self.increase_uncommitted_size(es):
            return False
        li = self.raft_log.append(es)
        self.tracker.progress[self.id].maybe_update(li)
        # Our caller broadcasts the entries; commit here in case we are the only voter.
        self.maybe_commit()
        return True

    def maybe_commit(self) -> bool:
        return self.raft_log.maybe_commit(self.tracker.committed(), self.term)

    def increase_uncommitted_size(self, ents: list[raftpb.Entry]) -> bool:
        s = payload_size(ents)
        # An empty uncommitted tail accepts a proposal of any size, and empty entries (a new
        # leader's entry) are always accepted; otherwise the bound is enforced.
        if self.uncommitted_size > 0 and s > 0 and self.uncommitted_size + s > self.max_uncommitted_size:
            return False
        self.uncommitted_size += s
        return True

    def reduce_uncommitted_size(self, ents: list[raftpb.Entry]) -> None:
        if self.uncommitted_size == 0:
            return  # followers never track it
        s = payload_size(ents)
        self.uncommitted_size = 0 if s > self.uncommitted_size else self.uncommitted_size - s

    def advance(self, applied_cursor: int, last_entry: raftpb.Entry | None, snap_index: int,
                committed: list[raftpb.Entry]) -> None:
        """The application persisted and applied a Ready (see RawNode.advance)."""
        self.reduce_uncommitted_size(committed)
        if applied_cursor > 0:
            self.raft_log.applied_to(applied_cursor)
        if last_entry is not None:
            self.raft_log.stable_to(last_entry.index, last_entry.term)
        if snap_index:
            self.raft_log.stable_snap_to(snap_index)

    # -- elections -----------------------------------------------------------------------
    def hup(self, kind: bytes) -> None:
        if self.state == StateType.LEADER:
            return
        if not self.promotable():
            return
        # A node with a committed but unapplied conf change must not campaign: it does not yet
        # know the configuration it would lead.
        if self.raft_log.committed > self.raft_log.applied:
            # The application only compacts what it applied, so anything compacted is applied.
            lo = max(self.raft_log.applied + 1, self.raft_log.first_index())
            ents = self.raft_log.slice(lo, self.raft_log.committed + 1, NO_LIMIT)
            if any(e.type == raftpb.EntryConfChange for e in ents):
                log.warning("%x cannot campaign at term %d: unapplied conf change", self.id, self.term)
                return
        self.campaign(kind)

    def campaign(self, kind: bytes) -> None:
        if not self.promotable():
            return
        if kind == CAMPAIGN_PRE_ELECTION:
            self.become_pre_candidate()
            vote_msg = raftpb.MsgPreVote
            term = self.term + 1  # pre-votes ask about the next term without entering it
        else:
            self.become_candidate()
            vote_msg = raftpb.MsgVote
            term = self.term
        if self.poll(self.id, vote_resp_type(vote_msg), True) == VoteResult.WON:
            # Only voter: won immediately.
            if kind == CAMPAIGN_PRE_ELECTION:
                self.campaign(CAMPAIGN_ELECTION)
            else:
                self.become_leader()
            return
        ctx = CAMPAIGN_TRANSFER if kind == CAMPAIGN_TRANSFER else b""
        last, last_term = self.raft_log.last_index(), self.raft_log.last_term()
        for id_ in sorted(self.tracker.voters):
            if id_ == self.id:
                continue
            self.send(new_message(vote_msg, to=id_, term=term, index=last, log_term=last_term, context=ctx))

    def poll(self, id_: int, t: raftpb.MessageType, granted: bool) -> VoteResult:
        self.tracker.record_vote(id_, granted)
        return self.tracker.tally_votes()[2]

    # -- the single entry point for messages ------------------------------------------------
    def step(self, m: raftpb.Message) -> None:
        t = m.type
        if m.term == 0:
            pass  # local message
        elif m.term > self.term:
            if t == raftpb.MsgVote or t == raftpb.MsgPreVote:
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (self.check_quorum and self.lead != NONE
                            and self.election_elapsed < self.election_timeout)
                if not force and in_lease:
                    # Leader lease: we heard from a leader recently, so do not let a (possibly
                    # partitioned or removed) node disrupt it.
                    return
            if t == raftpb.MsgPreVote:
                pass  # never change term because of a pre-vote
            elif t == raftpb.MsgPreVoteResp and not m.reject:
                # Granted pre-votes carry the future term we asked about; the term is only
                # entered once a majority has granted.
                pass
            elif t in (raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgSnap):
                self.become_follower(m.term, msg_from(m))
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if t in (raftpb.MsgHeartbeat, raftpb.MsgApp):
                # A leader of an older term: tell it our term so it steps down, or a node stuck
                # at a higher term could never rejoin. With CheckQuorum/PreVote our higher term
                # may never reach it otherwise; without them too (the simulator's seed 5118: the
                # node that raised the term campaigned only in a stale configuration that lacked
                # the leader, so its vote requests never reached it).
                self.send(new_message(raftpb.MsgAppResp, to=msg_from(m)))
            elif t == raftpb.MsgPreVote or t == raftpb.MsgVote:
                # Reject explicitly so the (pre-)candidate learns our term (Raft §5.1). Ignoring a
                # stale MsgVote can deadlock (found by the simulator, seeds 508 and 1571): a
                # candidate that fell behind in term may be the only node able to win, and nodes
                # with stale configurations may never send it anything carrying the higher term.
                resp = raftpb.MsgPreVoteResp if t == raftpb.MsgPreVote else raftpb.MsgVoteResp
                self.send(new_message(resp, to=msg_from(m), term=self.term, reject=True))
            return

        if t == raftpb.MsgHup:
            self.hup(CAMPAIGN_PRE_ELECTION if self.pre_vote else CAMPAIGN_ELECTION)
        elif t == raftpb.MsgVote or t == raftpb.MsgPreVote:
            frm = msg_from(m)
            can_vote = (
                self.vote == frm  # a repeat of the vote we already cast
                or (self.vote == NONE and self.lead == NONE)  # not voted, no known leader
                or (t == raftpb.MsgPreVote and m.term > self.term)  # pre-vote for a future term
            )
            if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):
                self.send(new_message(vote_resp_type(t), to=frm, term=m.term))
                if t == raftpb.MsgVote:
                    # Only real votes count; reset the timer so we give the candidate time.
                    self.election_elapsed = 0
                    self.vote = frm
            else:
                self.send(new_message(vote_resp_type(t), to=frm, term=self.term, reject=True))
        else:
            self._step(m)

    # -- per-role step functions -------------------------------------------------------------
    def _step_candidate(self, m: raftpb.Message) -> None:
        t = m.type
        my_resp = raftpb.MsgPreVoteResp if self.state == StateType.PRE_CANDIDATE else raftpb.MsgVoteResp
        if t == raftpb.MsgProp:
            raise NoLeaderError(f"{self.id:x} no leader at term {self.term}; dropping proposal")
        if t == raftpb.MsgApp:
            self.become_follower(m.term, msg_from(m))
            follower.handle_append_entries(self, m)
        elif t == raftpb.MsgHeartbeat:
            self.become_follower(m.term, msg_from(m))
            follower.handle_heartbeat(self, m)
        elif t == raftpb.MsgSnap:
            self.become_follower(m.term, msg_from(m))
            follower.handle_snapshot(self, m)
        elif t == my_resp:
            res = self.poll(msg_from(m), t, not m.reject)
            if res == VoteResult.WON:
                if self.state == StateType.PRE_CANDIDATE:
                    self.campaign(CAMPAIGN_ELECTION)
                else:
                    self.become_leader()
                    leader.bcast_append(self)
            elif res == VoteResult.LOST:
                # A rejected pre-vote carries the rejecter's term (higher than ours, or equal);
                # stay in our term and wait.
                self.become_follower(self.term, NONE)
        # MsgTimeoutNow and everything else: ignored by candidates.

    def _step_follower(self, m: raftpb.Message) -> None:
        t = m.type
        if t == raftpb.MsgProp:
            if self.lead == NONE:
                raise NoLeaderError(f"{self.id:x} no leader at term {self.term}; dropping proposal")
            if self.disable_proposal_forwarding:
                raise ProposalDroppedError(f"{self.id:x} not leader and forwarding is disabled")
            self.forward_proposal(m)
        elif t == raftpb.MsgApp:
            self.election_elapsed = 0
            self.lead = msg_from(m)
            follower.handle_append_entries(self, m)
        elif t == raftpb.MsgHeartbeat:
            self.election_elapsed = 0
            self.lead = msg_from(m)
            follower.handle_heartbeat(self, m)
        elif t == raftpb.MsgSnap:
            self.election_elapsed = 0
            self.lead = msg_from(m)
            follower.handle_snapshot(self, m)
        elif t == raftpb.MsgTransferLeader:
            if self.lead == NONE:
                return
            m.to = self.lead
            m.term = 0  # re-stamped with our term by send
            self.send(m)
        elif t == raftpb.MsgTimeoutNow:
            # The leader asks us to start an election right away (leader transfer); the
            # election carries a context that lets it through voters' leader leases.
            if self.promotable():
                self.campaign(CAMPAIGN_TRANSFER)
        elif t == raftpb.MsgReadIndex:
            if self.lead == NONE:
                log.info("%x no leader at term %d; dropping read index request", self.id, self.term)
                return
            m.to = self.lead
            self.send(m)
        elif t == raftpb.MsgReadIndexResp:
            if len(m.entries) != 1:
                return
            self.read_states.append(ReadState(m.index, m.entries[0].data))

    def restore(self, s: raftpb.Snapshot) -> bool:
        """Install snapshot ``s`` if it is newer than our commit index (see follower.restore)."""
        return follower.restore(self, s)

    # -- membership --------------------------------------------------------------------------
    def apply_conf_change(self, cc: raftpb.ConfChange) -> raftpb.ConfState:
        try:
            self.tracker.apply_change(cc, self.raft_log.last_index())
        except ConfChangeError as e:
            # Committed entries must be applied identically everywhere: an impossible change is
            # a no-op on every node.
            log.warning("%x ignoring conf change %s: %s", self.id, cc, e)
            return self.tracker.conf_state()
        return self.switch_to_config()

    def switch_to_config(self) -> raftpb.ConfState:
        cs = self.tracker.conf_state()
        pr = self.tracker.progress.get(self.id)
        self.refresh_learner_flag()
        if (pr is None or pr.is_learner) and self.state == StateType.LEADER:
            leader.step_down_after_removal(self)
            return cs
        if self.state != StateType.LEADER or not cs.voters:
            return cs
        if self.maybe_commit():
            # The new majority may commit more; tell everyone.
            leader.bcast_append(self)
        else:
            # Probe newly added members right away rather than at the next heartbeat.
            for id_, _ in self.tracker.items():
                if id_ != self.id:
                    leader.maybe_send_append(self, id_, send_if_empty=False)
        if self.lead_transferee != NONE and self.lead_transferee not in self.tracker.voters:
            self.abort_leader_transfer()
        return cs

    def abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE
