"""The simulation: a cluster of SimNodes on a simulated network, in virtual time.

Everything happens in one event queue ordered by (time, sequence number): ticks every TICK_UNITS
units, message deliveries, disk writes completing, snapshot status reports. All randomness comes
from `random.Random` instances derived from the seed, and nothing iterates over a hash-ordered
collection of strings, so a seed always gives the same run (the trace digest checks this).

A run has three phases:
1. chaos (`chaos_ticks`): proposals, ReadIndex requests, conf changes and leader transfers arrive
   at random, while nodes crash and restart, partitions come and go and the network misbehaves;
2. heal: every node is restarted, partitions lifted, the network made reliable and fast; within
   `liveness_ticks` a leader must be elected and a fresh proposal must commit;
3. converge: within `converge_ticks` every member of the final configuration must apply up to
   that proposal, and all of them must agree (same hash chain at that index).
Safety invariants (see invariants.py) are checked on every event throughout.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import ConfChangeError, ProposalDroppedError

from .invariants import Checker, InvariantViolation
from .network import Network
from .node import SimNode
from .params import TICK_UNITS, SimParams

TICK, DELIVER, PERSIST, REPORT = 0, 1, 2, 3
VOTE_REQUESTS = (raftpb.MsgVote, raftpb.MsgPreVote)
MAX_BACKLOG = 64  # uncommitted entries at the leader beyond which clients wait
PROPOSAL_ERRORS = (ProposalDroppedError,)  # NoLeaderError is a subclass


class SimFailure(AssertionError):
    show = 40  # trace lines in the message; `--trace N` raises it
    def __init__(self, seed: int, reason: str, recent: list[str]) -> None:
        self.seed = seed
        self.reason = reason
        self.recent = recent
        tail = "\n    ".join(recent[-SimFailure.show :])
        super().__init__(
            f"seed {seed}: {reason}\n  reproduce: python -m tests.raft.sim --seed {seed}\n  last events:\n    {tail}"
        )


@dataclass
class SimResult:
    seed: int
    digest: str
    ticks: int
    events: int
    committed: int
    leaders: int
    crashes: int
    reads: int
    conf_changes: int
    snapshots_sent: int
    liveness_ticks: int  # ticks from heal until the fresh proposal committed
    stats: dict[str, int] = field(default_factory=dict)


class Simulation:
    def __init__(self, seed: int, params: SimParams | None = None, keep: int = 400) -> None:
        self.seed = seed
        self.p = params or SimParams.from_seed(seed)
        p = self.p
        self.rng = random.Random(f"sim-{seed}")
        self.now = 0
        self.tick_no = 0
        self.queue: list[tuple[int, int, int, Any]] = []
        self.seq = 0
        self.events = 0
        self.hasher = hashlib.sha256()
        self.recent: deque[str] = deque(maxlen=keep)
        self.checker = Checker()
        self.net = Network(
            rng=random.Random(f"net-{seed}"),
            drop=p.drop,
            dup=p.dup,
            delay_min=p.delay_min,
            delay_max=p.delay_max,
            unreachable_report=p.unreachable_report,
            schedule=self._schedule_delivery,
            report=self._schedule_report,
        )
        peers = list(range(1, p.nodes + 1))
        self.nodes: dict[int, SimNode] = {}
        for i in peers:
            self._new_node(i, peers)
        self.partition_until = 0
        self.healed = False
        self.marker_index = 0
        self.marker_seq = 0
        self.live_at = 0
        self.counters = {"proposals": 0, "reads": 0, "conf": 0, "crashes": 0, "transfers": 0, "snaps": 0}

    # --- plumbing --------------------------------------------------------------------------
    def log(self, line: str) -> None:
        s = f"{self.now} {line}"
        self.recent.append(s)
        self.hasher.update(s.encode())

    def note(self, line: str) -> None:
        """Context for a failure report only (not part of the trace digest)."""
        self.recent.append(f"{self.now}   {line}")

    def _push(self, at: int, kind: int, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, kind, payload))

    def _new_node(self, node_id: int, peers: list[int] | None) -> SimNode:
        n = SimNode(node_id, self.p, self.checker, peers, self.net.send, self._schedule_persist, self.log)
        self.nodes[node_id] = n
        return n

    def _schedule_delivery(self, delay: int, frm: int, to: int, data: bytes, is_snap: bool) -> None:
        self._push(self.now + delay, DELIVER, (frm, to, data, is_snap))

    def _schedule_report(self, kind: str, frm: int, to: int) -> None:
        self._push(self.now, REPORT, (kind, frm, to))

    def _schedule_persist(self, node: SimNode, incarnation: int) -> None:
        self._push(self.now + self.rng.randint(1, self.p.disk_latency_max), PERSIST, (node.id, incarnation))

    # --- main loop -------------------------------------------------------------------------
    def run(self) -> SimResult:
        """Run to the end; raft's own log lines go to the recent-events buffer, not to stderr."""
        logger = logging.getLogger("petcd.raft")
        handler = _RecentHandler(self)
        saved = logger.propagate, logger.level
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        try:
            return self._run()
        finally:
            logger.removeHandler(handler)
            logger.propagate, logger.level = saved[0], saved[1]

    def _run(self) -> SimResult:
        try:
            for n in self.nodes.values():
                n.start()
                n.pump()
            self._push(0, TICK, None)
            while not self._done():
                at, _, kind, payload = heapq.heappop(self.queue)
                self.now = at
                self.events += 1
                if kind == TICK:
                    self._on_tick()
                    self._push(self.now + TICK_UNITS, TICK, None)
                elif kind == DELIVER:
                    self._on_deliver(*payload)
                elif kind == PERSIST:
                    self.nodes[payload[0]].persist_done(payload[1])
                else:
                    self._on_report(*payload)
        except InvariantViolation as e:
            raise SimFailure(self.seed, str(e), list(self.recent)) from e
        except SimFailure:
            raise
        except Exception as e:  # a crash inside raft is a failure of this seed too
            raise SimFailure(self.seed, f"{type(e).__name__}: {e}", list(self.recent)) from e
        ck = self.checker
        return SimResult(
            seed=self.seed,
            digest=self.hasher.hexdigest(),
            ticks=self.tick_no,
            events=self.events,
            committed=len(ck.committed),
            leaders=len(ck.leaders),
            crashes=self.counters["crashes"],
            reads=ck.reads_served,
            conf_changes=self.counters["conf"],
            snapshots_sent=self.counters["snaps"],
            liveness_ticks=self.live_at - self.p.chaos_ticks if self.live_at else -1,
            stats=dict(self.counters),
        )

    def _done(self) -> bool:
        return self.marker_index > 0 and self._converged()

    def _fail(self, reason: str) -> None:
        raise SimFailure(self.seed, reason + "\n" + self.describe(), list(self.recent))

    def describe(self) -> str:
        """Every node's state, for liveness failures."""
        out = []
        for nid in sorted(self.nodes):
            n = self.nodes[nid]
            if not n.up or n.raw is None:
                out.append(f"  node {nid}: down")
                continue
            st = n.raw.status()
            cs = n.conf_state
            line = (f"  node {nid}: {st.raft_state!s} term {st.hard_state.term} lead {st.lead} "
                    f"commit {st.hard_state.commit} applied {n.applied} disk last {n.disk.last_index()} "
                    f"snap {n.disk.snap_index()} voters {sorted(cs.voters)} learners {sorted(cs.learners)} "
                    f"removed {sorted(n.removed)} pending {n.pending is not None}")
            for pid, pr in sorted(st.progress.items()):
                line += f"\n      progress {pid}: {pr}"
            out.append(line)
        return "\n".join(out)

    # --- events ----------------------------------------------------------------------------
    def _on_deliver(self, frm: int, to: int, data: bytes, is_snap: bool) -> None:
        n = self.nodes.get(to)
        if n is None or not n.up or not self.net.link_up(frm, to):
            if is_snap:
                self._on_report("snap-failed", frm, to)
            return
        assert n.raw is not None
        m = raftpb.Message.FromString(data)
        if frm in n.removed and m.type in VOTE_REQUESTS:
            # Like etcd's transport, ignore a removed member: one that never learnt of its removal
            # would otherwise keep forcing elections. Only vote requests, because ids are re-added
            # here (etcd never reuses one) and a re-added leader must reach nodes that have not yet
            # applied its re-addition.
            return
        self.hasher.update(data)
        self.net.stats.delivered += 1
        if is_snap:
            self.counters["snaps"] += 1
            self.log(f"deliver snap {frm}>{to} @{m.snapshot.metadata.index}")
        n.raw.step(m)
        n.pump()
        if is_snap:
            self._on_report("snap-ok", frm, to)

    def _on_report(self, kind: str, frm: int, to: int) -> None:
        n = self.nodes.get(frm)
        if n is None or not n.up or n.raw is None:
            return
        self.log(f"report {kind} {frm}>{to}")
        if kind == "unreachable":
            n.raw.report_unreachable(to)
        else:
            n.raw.report_snapshot(to, kind == "snap-failed")
        n.pump()

    def _on_tick(self) -> None:
        self.tick_no = t = self.now // TICK_UNITS
        p = self.p
        if t < p.chaos_ticks:
            self._faults(t)
            self._workload()
        elif not self.healed:
            self._heal()
        else:
            self._liveness(t)
        for nid in sorted(self.nodes):
            n = self.nodes[nid]
            if not n.up or n.raw is None:
                continue
            if not self.healed and p.skew and self.rng.random() < p.skew:
                continue  # this node's clock runs slow for a tick
            n.raw.tick()
            n.pump()

    # --- faults ----------------------------------------------------------------------------
    def _faults(self, t: int) -> None:
        p, r = self.p, self.rng
        for nid in sorted(self.nodes):
            n = self.nodes[nid]
            if not n.up and n.restart_at <= t:
                n.start()
                n.pump()
        if p.crash_rate and r.random() < p.crash_rate:
            up = [i for i in sorted(self.nodes) if self.nodes[i].up]
            lead = self._leader()
            if up:
                # half the time the leader: leader changes are where Raft's subtle cases live
                n = lead if lead is not None and r.random() < 0.5 else self.nodes[r.choice(up)]
                n.crash()
                n.restart_at = t + r.randint(1, p.downtime_max)
                self.counters["crashes"] += 1
        if self.partition_until and t >= self.partition_until:
            self.net.heal()
            self.partition_until = 0
            self.log("partition healed")
        if p.partition_rate and not self.partition_until and r.random() < p.partition_rate:
            ids = sorted(self.nodes)
            kind = r.choice(("split", "one-way", "isolate", "isolate-leader"))
            lead = self._leader()
            if kind == "isolate-leader" and lead is not None:
                a = [lead.id]
            elif kind.startswith("isolate"):
                a = [r.choice(ids)]
            else:
                a = [i for i in ids if r.random() < 0.5] or [ids[0]]
            b = [i for i in ids if i not in a]
            self.net.split(a, b, one_way=kind == "one-way")
            self.partition_until = t + r.randint(1, p.partition_max)
            self.log(f"partition {kind} {a} | {b} until {self.partition_until}")

    def _heal(self) -> None:
        self.healed = True
        self.partition_until = 0
        self.net.make_healthy()
        for nid in sorted(self.nodes):
            n = self.nodes[nid]
            if not n.up:
                n.start()
                n.pump()
        self.log("heal: all nodes up, network reliable")

    # --- workload --------------------------------------------------------------------------
    def _up_nodes(self) -> list[SimNode]:
        return [self.nodes[i] for i in sorted(self.nodes) if self.nodes[i].up]

    def _leader(self) -> SimNode | None:
        leaders = [n for n in self._up_nodes() if n.role_leader]
        return max(leaders, key=lambda n: n.term) if leaders else None

    def _workload(self) -> None:
        p, r = self.p, self.rng
        k = int(p.propose_rate) + (1 if r.random() < p.propose_rate % 1 else 0)
        lead = self._leader()
        if lead is not None and lead.raw is not None:
            # Client back-pressure (etcd refuses proposals when too far behind): with one entry per
            # message and one message in flight, an unbounded backlog would take longer to commit
            # than any liveness bound.
            st = lead.raw.status().hard_state
            if lead.disk.last_index() - st.commit > MAX_BACKLOG:
                k = 0
        for _ in range(k):
            self._propose()
        if p.read_rate and r.random() < p.read_rate:
            self._read()
        if p.conf_rate and r.random() < p.conf_rate:
            self._conf_change()
        if p.transfer_rate and r.random() < p.transfer_rate:
            self._transfer()

    def _propose(self, data: bytes | None = None, node: SimNode | None = None) -> bool:
        up = self._up_nodes()
        if not up:
            return False
        n = node or self.rng.choice(up)
        assert n.raw is not None
        self.counters["proposals"] += 1
        if data is None:
            data = f"v{self.seed}-{self.counters['proposals']}".encode()
        try:
            n.raw.propose(data)
        except PROPOSAL_ERRORS as e:
            self.log(f"propose {n.id} dropped: {type(e).__name__}")
            return False
        n.pump()
        return True

    def _read(self) -> None:
        up = self._up_nodes()
        if not up:
            return
        n = self.rng.choice(up)
        assert n.raw is not None
        self.counters["reads"] += 1
        ctx = f"r{self.counters['reads']}".encode()
        self.checker.on_read_request(ctx)
        try:
            n.raw.read_index(ctx)
        except PROPOSAL_ERRORS:
            return
        n.pump()

    def _conf_change(self) -> None:
        lead = self._leader()
        if lead is None or lead.raw is None:
            return
        r = self.rng
        cs = lead.conf_state
        voters, learners = sorted(cs.voters), sorted(cs.learners)
        outside = [i for i in range(1, self.p.max_ids + 1) if i not in voters and i not in learners]
        options: list[tuple[int, int]] = []
        options += [(raftpb.ConfChangeAddLearnerNode, i) for i in outside]
        options += [(raftpb.ConfChangeAddNode, i) for i in learners]  # promote
        if len(voters) >= 3:
            options += [(raftpb.ConfChangeRemoveNode, i) for i in voters]
        options += [(raftpb.ConfChangeRemoveNode, i) for i in learners]
        if outside and r.random() < 0.2:
            options.append((raftpb.ConfChangeAddNode, r.choice(outside)))  # straight to voter
        if not options:
            return
        typ, nid = r.choice(options)
        self.counters["conf"] += 1
        cc = raftpb.ConfChange(type=typ, node_id=nid, id=self.counters["conf"])  # type: ignore[arg-type]
        self.log(f"propose conf {raftpb.ConfChangeType.Name(typ)} {nid} at leader {lead.id}")
        if typ in (raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode) and nid not in self.nodes:
            # the new member is started first (empty disk), as an operator would after `member add`
            self._new_node(nid, None).start()
        try:
            lead.raw.propose_conf_change(cc)
        except (*PROPOSAL_ERRORS, ConfChangeError) as e:
            self.log(f"conf change refused: {type(e).__name__}: {e}")
            return
        lead.pump()

    def _transfer(self) -> None:
        lead = self._leader()
        if lead is None or lead.raw is None:
            return
        targets = [v for v in sorted(lead.conf_state.voters) if v != lead.id]
        if targets:
            to = self.rng.choice(targets)
            self.counters["transfers"] += 1
            self.log(f"transfer leader {lead.id} -> {to}")
            lead.raw.transfer_leader(to)
            lead.pump()

    # --- liveness ---------------------------------------------------------------------------
    def _liveness(self, t: int) -> None:
        p = self.p
        if self.marker_index == 0:
            if t - p.chaos_ticks > p.liveness_ticks:
                self._fail(f"liveness: no leader committed a new proposal within {p.liveness_ticks} ticks of healing")
            self._find_marker()
            if self.marker_index:
                self.live_at = t
                self.log(f"live: marker committed at {self.marker_index}")
                return
            lead = self._leader()
            if lead is not None and (t - p.chaos_ticks) % max(2, p.election_tick // 2) == 0:
                self.marker_seq += 1
                data = f"marker-{self.seed}-{self.marker_seq}".encode()
                self.checker.watch.add(data)
                self._propose(data, lead)
        else:
            if t - self.live_at > p.converge_ticks:
                lagging = {m: self.nodes[m].applied for m in self._members()}
                self._fail(f"liveness: members did not all apply index {self.marker_index} within "
                           f"{p.converge_ticks} ticks: applied {lagging}")

    def _find_marker(self) -> None:
        hits = self.checker.watch_hits
        if hits:
            self.marker_index = min(hits.values())

    def _members(self) -> list[int]:
        best = max(self.nodes.values(), key=lambda n: n.applied)
        cs = best.conf_state
        return sorted(set(cs.voters) | set(cs.learners))

    def _converged(self) -> bool:
        members = self._members()
        for m in members:
            n = self.nodes.get(m)
            if n is None or not n.up or n.applied < self.marker_index:
                return False
        return True


class _RecentHandler(logging.Handler):
    def __init__(self, sim: Simulation) -> None:
        super().__init__(logging.DEBUG)
        self.sim = sim

    def emit(self, record: logging.LogRecord) -> None:
        self.sim.note(f"raft: {record.getMessage()}")
