"""One simulated member: a RawNode, its MemoryStorage, its Disk, and the driver loop around them.

The driver follows the Ready contract: take a Ready, persist it (snapshot, hard state, entries) to
the MemoryStorage and the Disk, send its messages, apply its committed entries (conf changes via
`apply_conf_change`), then `advance`. With a disk latency the persist step completes later, as a
scheduled event; the node keeps ticking and stepping messages meanwhile but takes no new Ready.
A crash throws away the RawNode, the MemoryStorage and the state machine; only the Disk survives
(plus, with torn writes, a prefix of the entries that were being written). The state machine is a
hash chain over the applied entries; snapshots carry (index, chain, removed ids).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import (
    CompactedError,
    Config,
    MemoryStorage,
    RawNode,
    ReadOnlyOption,
    Ready,
    SnapshotOutOfDateError,
    StateType,
)

from .disk import Disk
from .invariants import Checker, InvariantViolation

if TYPE_CHECKING:
    from .params import SimParams

ADD_TYPES = (raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode)


def chain_next(chain: bytes, e: raftpb.Entry) -> bytes:
    h = hashlib.blake2b(chain, digest_size=16)
    h.update(e.index.to_bytes(8, "big"))
    h.update(bytes([e.type]))
    h.update(e.data)
    return h.digest()


def encode_sm(index: int, chain: bytes, removed: set[int]) -> bytes:
    return f"{index}|{chain.hex()}|{','.join(str(i) for i in sorted(removed))}".encode()


def decode_sm(data: bytes) -> tuple[int, bytes, set[int]]:
    idx, chain, removed = data.decode().split("|")
    return int(idx), bytes.fromhex(chain), {int(x) for x in removed.split(",") if x}


class SimNode:
    def __init__(
        self,
        node_id: int,
        params: SimParams,
        checker: Checker,
        initial_peers: list[int] | None,
        send: Callable[[raftpb.Message], None],
        schedule_persist: Callable[[SimNode, int], None],
        log: Callable[[str], None],
    ) -> None:
        self.id = node_id
        self.p = params
        self.checker = checker
        self.initial_peers = initial_peers  # None: joins an existing cluster with an empty disk
        self.send = send
        self.schedule_persist = schedule_persist
        self.log = log
        self.disk = Disk()
        self.incarnation = 0
        self.up = False
        self.raw: RawNode | None = None
        self.storage: MemoryStorage | None = None
        self.pending: Ready | None = None
        self.restart_at = 0
        self.persist_rng = random.Random(f"disk-{params.seed}-{node_id}")
        self._reset_volatile()

    def _reset_volatile(self) -> None:
        self.role_leader = False
        self.lead = 0
        self.term = self.disk.hard_state.term
        self.mem_commit = self.disk.hard_state.commit
        self.applied = 0
        self.chain = b""
        self.removed: set[int] = set()
        self.conf_state = raftpb.ConfState()
        self.last_snap = 0
        self.completeness_checked = 0

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.incarnation += 1
        self._reset_volatile()
        self.storage = self.disk.load()
        if self.disk.snapshot is not None:
            snap = self.disk.snapshot
            self.applied, self.chain, self.removed = decode_sm(snap.data)
            self.conf_state.CopyFrom(snap.metadata.conf_state)
            self.last_snap = self.applied
        p = self.p
        cfg = Config(
            id=self.id,
            election_tick=p.election_tick,
            heartbeat_tick=p.heartbeat_tick,
            storage=self.storage,
            applied=self.applied,
            max_size_per_msg=p.max_size_per_msg,
            max_committed_size_per_ready=p.max_committed_per_ready,
            max_uncommitted_entries_size=p.max_uncommitted,
            max_inflight_msgs=p.max_inflight,
            check_quorum=p.check_quorum,
            pre_vote=p.pre_vote,
            read_only_option=ReadOnlyOption.SAFE,
            disable_proposal_forwarding=p.disable_forwarding,
            rand=random.Random(f"raft-{p.seed}-{self.id}-{self.incarnation}"),
        )
        self.raw = RawNode(cfg)
        if not self.disk.ever_written and self.initial_peers is not None:
            self.raw.bootstrap(list(self.initial_peers))
        self.up = True
        self.log(f"start {self.id} inc={self.incarnation} disk=(snap {self.disk.snap_index()}, last "
                 f"{self.disk.last_index()}, hs {self.disk.hard_state.term}/{self.disk.hard_state.vote}/"
                 f"{self.disk.hard_state.commit})")

    def crash(self) -> None:
        """Lose everything not on disk; a write in flight may land partly (a torn prefix)."""
        rd = self.pending
        if rd is not None and self.p.torn_writes and rd.entries and not _has_snapshot(rd):
            k = self.persist_rng.randrange(len(rd.entries))
            if k:
                torn = list(rd.entries[:k])
                overwritten = self.disk.append(torn)
                self.checker.on_append(self.id, self.disk, torn, overwritten)
                self.log(f"torn write {self.id}: {k}/{len(rd.entries)} entries")
        self.pending = None
        self.raw = None
        self.storage = None
        self.up = False
        self.log(f"crash {self.id} inc={self.incarnation}")

    # --- driver ----------------------------------------------------------------------------
    def pump(self) -> None:
        """Take Readies until none is left (or one is waiting on the disk)."""
        for _ in range(1000):
            if not self.up or self.pending is not None:
                return
            raw = self.raw
            assert raw is not None
            if not raw.has_ready():
                return
            rd = raw.ready()
            self._observe(rd)
            if self.p.disk_latency_max == 0:
                self.complete(rd)
            else:
                self.pending = rd
                self.schedule_persist(self, self.incarnation)
        raise InvariantViolation(f"node {self.id}: has_ready() still true after 1000 Readies")

    def _observe(self, rd: Ready) -> None:
        was_leader, old_term = self.role_leader, self.term
        if rd.hard_state is not None:
            self.term = max(self.term, rd.hard_state.term)
            hs = rd.hard_state
            if was_leader and hs.term == old_term and hs.commit > self.mem_commit:
                self._check_leader_commit(rd, hs.commit)
            self.mem_commit = max(self.mem_commit, hs.commit)
        if rd.soft_state is not None:
            self.lead = rd.soft_state.lead
            self.role_leader = rd.soft_state.raft_state == StateType.LEADER
            if self.role_leader:
                self.checker.on_leader(self.id, self.term)
                self.log(f"leader {self.id} term {self.term}")

    def _check_leader_commit(self, rd: Ready, commit: int) -> None:
        """Raft §5.4.2: a leader commits by counting replicas only entries of its own term."""
        term = next((e.term for e in rd.entries if e.index == commit), None)
        if term is None:
            term = self.disk.term(commit)
        if term is not None and term != self.term:
            self.checker.fail(f"node {self.id}, leader of term {self.term}, advanced its commit to {commit} "
                              f"whose entry has term {term}")

    def persist_done(self, incarnation: int) -> None:
        if incarnation != self.incarnation or not self.up or self.pending is None:
            return
        rd, self.pending = self.pending, None
        self.complete(rd)
        self.pump()

    def complete(self, rd: Ready) -> None:
        raw, st = self.raw, self.storage
        assert raw is not None and st is not None
        ck = self.checker
        # 1. persist
        if _has_snapshot(rd):
            snap = rd.snapshot
            assert snap is not None
            ck.on_snapshot_install(self.id, snap.metadata.index, snap.metadata.term)
            st.apply_snapshot(snap)
            self.disk.save_snapshot(snap)
            self.applied, self.chain, self.removed = decode_sm(snap.data)
            if self.applied != snap.metadata.index:
                ck.fail(f"node {self.id}: snapshot data index {self.applied} != metadata {snap.metadata.index}")
            ck.check_chain(self.id, self.applied, self.chain)
            self.conf_state.CopyFrom(snap.metadata.conf_state)
            self.last_snap = self.applied
            self.log(f"install snapshot {self.id} @{snap.metadata.index}/{snap.metadata.term}")
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)
            self.disk.set_hard_state(rd.hard_state)
        if rd.entries:
            st.append(list(rd.entries))
            overwritten = self.disk.append(rd.entries)
            ck.on_append(self.id, self.disk, list(rd.entries), overwritten)
        if rd.hard_state is not None or _has_snapshot(rd):
            ck.on_hard_state(self.id, self.disk, self.term)
        if self.role_leader and self.completeness_checked != self.term:
            self.completeness_checked = self.term
            ck.check_leader_completeness(self.id, self.term, self.disk)
        # 2. send
        for m in rd.messages:
            ck.on_message(m)
            self.send(m)
        # 3. apply
        force_snap = False
        for e in rd.committed_entries:
            if e.index != self.applied + 1:
                ck.fail(f"node {self.id}: applies entry {e.index} after {self.applied}")
            if e.type == raftpb.EntryConfChange:
                cc = raftpb.ConfChange.FromString(e.data)
                cs = raw.apply_conf_change(cc)
                self.conf_state.CopyFrom(cs)
                if cc.type == raftpb.ConfChangeRemoveNode:
                    self.removed.add(cc.node_id)
                elif cc.type in ADD_TYPES:
                    self.removed.discard(cc.node_id)
                    # raft ignores a snapshot whose configuration lacks the receiver, so a member
                    # added after the last snapshot could never catch up from it; like etcd (which
                    # builds the MsgSnap from its current state) make sure the stored one has it.
                    force_snap = True
                self.log(f"apply conf {self.id} @{e.index}: {raftpb.ConfChangeType.Name(cc.type)} "
                         f"{cc.node_id} -> voters {sorted(cs.voters)} learners {sorted(cs.learners)}")
            self.chain = chain_next(self.chain, e)
            self.applied = e.index
            ck.on_apply(self.id, e, self.chain, self.term)
        for rs in rd.read_states:
            ck.on_read_state(self.id, rs.index, bytes(rs.request_ctx))
        # 4. advance
        raw.advance(rd)
        self._maybe_snapshot(st, force_snap)

    def _maybe_snapshot(self, st: MemoryStorage, force: bool) -> None:
        if self.applied - self.last_snap < self.p.snap_interval and not (force and self.applied > self.last_snap):
            return
        try:
            snap = st.create_snapshot(self.applied, self.conf_state, encode_sm(self.applied, self.chain, self.removed))
        except SnapshotOutOfDateError:
            return
        self.last_snap = self.applied
        self.disk.save_local_snapshot(snap)
        upto = self.applied - self.p.snap_keep
        if upto > st.first_index():
            try:
                st.compact(upto)
            except CompactedError:
                pass
        self.log(f"snapshot {self.id} @{self.applied}")


def _has_snapshot(rd: Ready) -> bool:
    return rd.snapshot is not None and rd.snapshot.metadata.index > 0
