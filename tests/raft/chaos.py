"""Randomized runs of a small cluster that check the Raft paper's Figure 3 properties.

Each step does one random thing (handle a Ready, deliver/drop/duplicate/reorder a message, tick,
propose, partition or heal, crash-restart a node, snapshot and compact) and then checks:

* Election Safety: at most one leader per term;
* Leader Append-Only: a leader never overwrites or deletes entries in its log;
* Log Matching: two logs with an entry of the same index and term agree up to it;
* Leader Completeness: a committed entry is in the log of every leader of a later term;
* State Machine Safety: no two nodes apply different entries at the same index;

and that ReadIndex is linearizable: a read's index covers everything committed anywhere before
the read was requested.

(The deterministic simulator in tests/raft/sim explores far more; this is the small,
self-contained version the paper-section tests use.)
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import CompactedError, ProposalDroppedError, Ready, StateType

from .harness import Cluster, encode_state, new_cluster

Key = tuple[int, int, bytes]  # (index, term, data)


@dataclass
class ChaosResult:
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    leaders: dict[int, int] = field(default_factory=dict)
    applied: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    steps: int = 0
    reads: int = 0


class Chaos:
    def __init__(self, seed: int, n: int = 3, conf_changes: bool = False) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        rng = self.rng
        self.c: Cluster = new_cluster(n, pre_vote=rng.random() < 0.5, check_quorum=rng.random() < 0.5,
                                      election_tick=10, heartbeat_tick=1,
                                      max_size_per_msg=rng.choice([0, 100, 1 << 20]),
                                      max_inflight_msgs=rng.choice([1, 4, 256]))
        self.res = ChaosResult()
        self.p_drop = rng.choice([0.0, 0.1, 0.3])
        self.p_dup = rng.choice([0.0, 0.05])
        self.proposals = 0
        # read ctx -> the highest commit index anywhere when the read was requested
        self.reads: dict[bytes, int] = {}
        self.conf_changes = conf_changes
        self.leader_logs: dict[tuple[int, int], dict[int, int]] = {}
        # index -> term of the system's newest term when the entry was first applied anywhere.
        self.commit_term: dict[int, int] = {}
        self.c.on_ready = self._on_ready
        self.c.stabilize()

    def violation(self, prop: str, what: str) -> None:
        self.res.violations[prop].append(f"seed {self.seed} step {self.res.steps}: {what}")

    def _on_ready(self, id_: int, rd: Ready) -> None:
        for rs in rd.read_states:
            want = self.reads.get(rs.request_ctx)
            if want is not None and rs.index < want:
                self.violation("read index", f"read {rs.request_ctx!r} at {rs.index} misses commit {want}")
            self.res.reads += 1
        max_term = max(n.r.term for n in self.c.nodes.values())
        for e in rd.committed_entries:
            prev = self.res.applied.get(e.index)
            if prev is None:
                self.res.applied[e.index] = (e.term, e.data)
                self.commit_term[e.index] = max_term
            elif prev != (e.term, e.data):
                self.violation("state machine safety", f"node {id_} applied {e.term}/{e.index} {e.data!r}, "
                                                       f"another node applied {prev}")

    # -- actions -------------------------------------------------------------------------------
    def step(self) -> None:
        rng, c = self.rng, self.c
        ids = sorted(c.nodes)
        x = rng.random()
        if x < 0.25:
            c.process_ready(rng.choice(ids))
        elif x < 0.55:
            if c.queue:
                m = c.queue.pop(rng.randrange(len(c.queue)))  # any order: reordering
                if rng.random() < self.p_dup:
                    dup = raftpb.Message()
                    dup.CopyFrom(m)
                    c.queue.append(dup)
                frm = getattr(m, "from")
                ok = rng.random() >= self.p_drop and (frm, m.to) not in c.cut
                if ok:
                    c.nodes[m.to].raw.step(m)
                c._settle_snapshot(m, ok)
        elif x < 0.76:
            c.tick(rng.choice(ids))
        elif x < 0.78:
            ctx = b"r%d" % len(self.reads)
            self.reads[ctx] = max(n.r.raft_log.committed for n in c.nodes.values())
            c.nodes[rng.choice(ids)].raw.read_index(ctx)
        elif x < 0.88:
            self.proposals += 1
            try:
                c.nodes[rng.choice(ids)].raw.propose(b"p%d" % self.proposals)
            except ProposalDroppedError:
                pass
        elif x < 0.90:
            if c.cut:
                c.heal()
            else:
                k = rng.randrange(1, len(ids))
                shuffled = ids[:]
                rng.shuffle(shuffled)
                c.partition(shuffled[:k], shuffled[k:])
        elif x < 0.91:
            c.restart(rng.choice(ids))
        elif x < 0.913 and self.conf_changes:
            self.change_membership()
        elif x < 0.915:
            n = c.nodes[rng.choice(ids)]
            if n.applied_index > n.storage.snapshot().metadata.index:
                n.storage.create_snapshot(n.applied_index, n.conf_state, encode_state(n.applied))
                try:
                    n.storage.compact(n.applied_index)
                except CompactedError:
                    pass
        else:
            for i in ids:
                c.process_ready(i)
        self.res.steps += 1
        self.check()

    def change_membership(self) -> None:
        """Propose a random single-member change at a random node: add a brand-new voter or
        learner, promote a learner, or remove a member (keeping at least two voters)."""
        rng, c = self.rng, self.c
        at = c.nodes[rng.choice(sorted(c.nodes))]
        voters = sorted(at.r.tracker.voters)
        learners = sorted(at.r.tracker.learners)
        kind = rng.random()
        if kind < 0.3:
            new = max(c.nodes) + 1
            c.add(new, **{k: v for k, v in c.nodes[1].cfg.items()})
            t = rng.choice([raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode])
            change = raftpb.ConfChange(type=t, node_id=new)
        elif kind < 0.5 and learners:
            change = raftpb.ConfChange(type=raftpb.ConfChangeAddNode, node_id=rng.choice(learners))
        elif len(voters) > 2:
            change = raftpb.ConfChange(type=raftpb.ConfChangeRemoveNode, node_id=rng.choice(voters + learners))
        else:
            return
        try:
            at.raw.propose_conf_change(change)
        except (ProposalDroppedError, ValueError):
            pass

    # -- checks --------------------------------------------------------------------------------
    def check(self) -> None:
        nodes = self.c.nodes
        logs: dict[int, dict[int, int]] = {}
        for id_, n in nodes.items():
            r = n.r
            logs[id_] = {e.index: e.term for e in r.raft_log.all_entries()}
            if r.state != StateType.LEADER:
                continue
            prev = self.res.leaders.setdefault(r.term, id_)
            if prev != id_:
                self.violation("election safety", f"term {r.term} has leaders {prev} and {id_}")
            key = (id_, r.term)
            old = self.leader_logs.get(key)
            if old is not None:
                for i, t in old.items():
                    if (i in logs[id_] and logs[id_][i] != t) or i > r.raft_log.last_index():
                        self.violation("leader append-only", f"leader {id_} term {r.term} changed index {i}")
                        break
            self.leader_logs[key] = logs[id_]
            for i, ct in self.commit_term.items():
                if ct < r.term and i >= r.raft_log.first_index():
                    t = logs[id_].get(i)
                    if t != self.res.applied[i][0]:
                        self.violation("leader completeness",
                                       f"leader {id_} of term {r.term} lacks committed entry {i}")
        ids = sorted(logs)
        for a_i, a in enumerate(ids):
            for b in ids[a_i + 1:]:
                la, lb = logs[a], logs[b]
                common = sorted(set(la) & set(lb))
                agreed = [i for i in common if la[i] == lb[i]]
                if agreed:
                    top = agreed[-1]
                    bad = [i for i in common if i <= top and la[i] != lb[i]]
                    if bad:
                        self.violation("log matching", f"nodes {a},{b} agree at {top} but differ at {bad[0]}")

    def heal_and_converge(self, max_rounds: int = 200) -> bool:
        """Heal everything; True once a leader commits a new proposal on every node."""
        c = self.c
        c.heal()
        for _ in range(max_rounds):
            for i in sorted(c.nodes):
                c.tick(i)
            c.stabilize()
            lead = c.leader()
            if lead and c.nodes[lead].r.raft_log.committed > 0:
                break
        else:
            return False
        for round_ in range(max_rounds):
            # Like a client, retry a proposal that a leadership change may have lost.
            lead = c.leader()
            if round_ % 20 == 0 and lead:
                c.propose(lead, b"final")
            c.stabilize()
            lead = c.leader()
            members = c.nodes[lead].r.tracker.progress if lead else {}
            if members and all(n.applied and n.applied[-1] == b"final" for i, n in c.nodes.items() if i in members):
                return True
            for i in sorted(c.nodes):
                c.tick(i)
        return False


def run(seed: int, n: int, steps: int, conf_changes: bool = False) -> tuple[ChaosResult, bool]:
    ch = Chaos(seed, n, conf_changes)
    for _ in range(steps):
        ch.step()
    return ch.res, ch.heal_and_converge()
