"""RawNode: the application's handle on one Raft member.

The driver loop (see Ready for the order of duties)::

    if node.has_ready():
        rd = node.ready()
        persist(rd.snapshot, rd.hard_state, rd.entries)   # fsync if rd.must_sync
        send(rd.messages)
        apply(rd.snapshot, rd.committed_entries)          # apply_conf_change for conf entries
        node.advance(rd)

Only one Ready is outstanding at a time: ``ready()`` again before ``advance()`` raises
ReadyNotAdvancedError, and ``has_ready()`` is False meanwhile. Ticks, messages and proposals may
still be fed in while a Ready is outstanding; their effects come out in the next one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from petcd.proto.raftpb import raft_pb2 as raftpb

from . import leader
from .config import Config
from .errors import ProposalDroppedError, RaftError, ReadyNotAdvancedError, StepLocalMsgError
from .progress import Progress
from .raft import CAMPAIGN_ELECTION, Raft
from .types import (
    LOCAL_MSGS,
    NONE,
    RESPONSE_MSGS,
    Ready,
    SoftState,
    StateType,
    hard_state_equal,
    msg_from,
    new_message,
)


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    hard_state: raftpb.HardState
    soft_state: SoftState
    applied: int
    # Copies of every member's Progress; only meaningful (and only filled) on the leader.
    progress: Mapping[int, Progress]
    lead_transferee: int
    config: raftpb.ConfState

    @property
    def lead(self) -> int:
        return self.soft_state.lead

    @property
    def raft_state(self) -> StateType:
        return self.soft_state.raft_state


class RawNode:
    def __init__(self, config: Config) -> None:
        self.raft = Raft(config)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()
        self._outstanding: Ready | None = None

    # -- bootstrapping -------------------------------------------------------------------------
    def bootstrap(self, peers: Sequence[int], contexts: Mapping[int, bytes] | None = None) -> None:
        """Start a brand-new cluster: one committed ConfChangeAddNode entry per peer at term 1.

        The entries are also applied to the configuration right away (so ``campaign()`` works
        immediately); they still come out of the next Ready as entries to persist and committed
        entries to apply, and applying them again is harmless.
        """
        if not peers:
            raise RaftError("must provide at least one peer to bootstrap")
        if self.raft.raft_log.storage.last_index() != 0 or self.raft.raft_log.last_index() != 0:
            raise RaftError("can't bootstrap a nonempty storage")
        # Nothing is persisted yet: make the first Ready carry the hard state.
        self._prev_hard = raftpb.HardState()
        self.raft.become_follower(1, NONE)
        ents = []
        for i, pid in enumerate(peers):
            cc = raftpb.ConfChange(type=raftpb.ConfChangeAddNode, node_id=pid,
                                   context=(contexts or {}).get(pid, b""))
            ents.append(raftpb.Entry(type=raftpb.EntryConfChange, term=1, index=i + 1,
                                     data=cc.SerializeToString()))
        self.raft.raft_log.append(ents)
        self.raft.raft_log.committed = len(ents)
        for pid in peers:
            self.raft.apply_conf_change(raftpb.ConfChange(type=raftpb.ConfChangeAddNode, node_id=pid))

    # -- input ---------------------------------------------------------------------------------
    def tick(self) -> None:
        self.raft.tick()

    def tick_quiesced(self) -> None:
        """Advance the election clock without heartbeats or campaigns (for idle groups)."""
        self.raft.election_elapsed += 1

    def campaign(self) -> None:
        """Start an election now (with PreVote first if configured)."""
        self.raft.step(new_message(raftpb.MsgHup, frm=self.raft.id))

    def force_campaign(self) -> None:
        """Start a real election immediately, skipping PreVote (tests, disaster recovery)."""
        self.raft.hup(CAMPAIGN_ELECTION)

    def propose(self, data: bytes) -> None:
        """Propose ``data`` for the log. Raises ProposalDroppedError (NoLeaderError if no leader
        is known). Success only means the proposal was appended or forwarded, not committed."""
        r = self.raft
        if r.state == StateType.LEADER:
            # What stepping a local MsgProp does on a leader, without building the message: this
            # runs once per client write.
            leader.propose(r, [raftpb.Entry(data=data)])
            return
        r.step(new_message(raftpb.MsgProp, frm=r.id, entries=[raftpb.Entry(data=data)]))

    def propose_conf_change(self, cc: raftpb.ConfChange) -> None:
        """Propose a single-member change; it takes effect when applied (apply_conf_change).

        Raises ConfChangeError (a ValueError) if it is invalid against the current configuration
        (e.g. it would remove the last voter). A change proposed while another is pending is
        replaced by an empty entry by the leader.
        """
        self.raft.tracker.check_change(cc)
        e = raftpb.Entry(type=raftpb.EntryConfChange, data=cc.SerializeToString())
        self.raft.step(new_message(raftpb.MsgProp, frm=self.raft.id, entries=[e]))

    def apply_conf_change(self, cc: raftpb.ConfChange) -> raftpb.ConfState:
        return self.raft.apply_conf_change(cc)

    def step(self, m: raftpb.Message) -> None:
        """Feed a message received from a peer.

        Local-only message types raise StepLocalMsgError. Responses from peers not in the
        configuration are ignored, as are forwarded proposals this node has to drop (the
        proposer notices by timing out, as it would for a lost message).
        """
        if m.type in LOCAL_MSGS:
            raise StepLocalMsgError(f"cannot step local message {raftpb.MessageType.Name(m.type)}")
        if m.type in RESPONSE_MSGS and msg_from(m) not in self.raft.tracker.progress:
            return
        try:
            self.raft.step(m)
        except ProposalDroppedError:
            if m.type != raftpb.MsgProp:
                raise

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read; a ReadState(index, ctx) comes out of a later Ready.

        The request is dropped silently if no leader is known or leadership is lost before it is
        confirmed: callers retry after a timeout. ``ctx`` must be unique among pending reads.
        """
        self.raft.step(new_message(raftpb.MsgReadIndex, frm=self.raft.id, entries=[raftpb.Entry(data=ctx)]))

    def transfer_leader(self, to: int) -> None:
        """Ask the leader (this node, or forwarded to it) to hand leadership to ``to``."""
        self.raft.step(new_message(raftpb.MsgTransferLeader, frm=to))

    def report_unreachable(self, id_: int) -> None:
        """The transport failed to deliver to ``id_``: stop sending it optimistically."""
        self.raft.step(new_message(raftpb.MsgUnreachable, frm=id_))

    def report_snapshot(self, id_: int, failed: bool) -> None:
        """Outcome of sending a MsgSnap to ``id_``.

        The transport must report every MsgSnap it handles: until the report (or the follower's
        acknowledgement of the snapshot) the leader sends that follower nothing but heartbeats,
        so a snapshot lost without a report would stall the follower for good.
        """
        self.raft.step(new_message(raftpb.MsgSnapStatus, frm=id_, reject=failed))

    # -- output --------------------------------------------------------------------------------
    def has_ready(self) -> bool:
        if self._outstanding is not None:
            return False
        r = self.raft
        r.flush()
        # Field by field rather than via soft_state()/hard_state(): this runs very often.
        if r.msgs or r.read_states:
            return True
        lg = r.raft_log
        if lg.unstable.entries or lg.unstable.snapshot is not None:
            return True
        ps, ph = self._prev_soft, self._prev_hard
        if r.lead != ps.lead or r.state != ps.raft_state:
            return True
        if ((r.term != ph.term or r.vote != ph.vote or lg.committed != ph.commit)
                and (r.term or r.vote or lg.committed)):
            return True
        return lg.committed > lg.applied and lg.has_next_ents()

    def ready(self) -> Ready:
        if self._outstanding is not None:
            raise ReadyNotAdvancedError("ready() called again before advance()")
        r = self.raft
        r.flush()
        soft = r.soft_state()
        hs = r.hard_state()
        ents = r.raft_log.unstable_entries()
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hs if not hard_state_equal(hs, self._prev_hard) else None,
            read_states=r.read_states,
            entries=ents,
            snapshot=r.raft_log.unstable.snapshot,
            committed_entries=r.raft_log.next_ents(),
            messages=r.msgs,
            must_sync=(bool(ents) or hs.vote != self._prev_hard.vote or hs.term != self._prev_hard.term
                       or r.raft_log.unstable.snapshot is not None),
        )
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        r.read_states = []
        r.msgs = []
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        if rd is not self._outstanding:
            raise ReadyNotAdvancedError("advance() of a Ready that is not the outstanding one")
        self._outstanding = None
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        last = rd.entries[-1] if rd.entries else None
        snap_index = rd.snapshot.metadata.index if rd.snapshot is not None else 0
        self.raft.advance(rd.applied_cursor(), last, snap_index, rd.committed_entries)

    def status(self) -> Status:
        r = self.raft
        progress: dict[int, Progress] = {}
        if r.state == StateType.LEADER:
            progress = {i: p.copy() for i, p in r.tracker.progress.items()}
        return Status(id=r.id, hard_state=r.hard_state(), soft_state=r.soft_state(),
                      applied=r.raft_log.applied, progress=progress, lead_transferee=r.lead_transferee,
                      config=r.tracker.conf_state())
