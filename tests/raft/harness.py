"""A small in-memory cluster of RawNodes for unit tests and the scenario interpreter.

Each node follows the driver contract exactly: persist (MemoryStorage), queue messages, apply
committed entries (conf changes through apply_conf_change), advance. Messages wait in a queue
until delivered explicitly (or by ``stabilize``), so tests control every interleaving.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import Config, MemoryStorage, RawNode, Ready, msg_from


def encode_state(applied: list[bytes]) -> bytes:
    return json.dumps([a.decode("latin-1") for a in applied]).encode()


def decode_state(data: bytes) -> list[bytes]:
    if not data:
        return []
    return [s.encode("latin-1") for s in json.loads(data)]


@dataclass
class Node:
    id: int
    storage: MemoryStorage
    raw: RawNode
    cfg: dict[str, Any]
    # The replicated state machine: data of every applied normal entry, in order.
    applied: list[bytes] = field(default_factory=list)
    applied_index: int = 0
    conf_state: raftpb.ConfState = field(default_factory=raftpb.ConfState)
    # Every committed entry this node applied (index -> (term, data)) for safety checks.
    history: dict[int, tuple[int, bytes]] = field(default_factory=dict)

    @property
    def r(self) -> Any:
        return self.raw.raft


def make_config(id_: int, storage: MemoryStorage, **kw: Any) -> Config:
    kw.setdefault("election_tick", 10)
    kw.setdefault("heartbeat_tick", 1)
    kw.setdefault("rand", random.Random(id_))
    return Config(id=id_, storage=storage, **kw)


class Cluster:
    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.queue: list[raftpb.Message] = []
        # Links (from, to) on which messages are dropped at delivery.
        self.cut: set[tuple[int, int]] = set()
        self.on_ready: Callable[[int, Ready], None] | None = None
        # Tell a snapshot's sender whether it was delivered, as a transport must.
        self.report_snapshots = True

    def _settle_snapshot(self, m: raftpb.Message, delivered: bool) -> None:
        sender = self.nodes.get(msg_from(m))
        if self.report_snapshots and m.type == raftpb.MsgSnap and sender is not None:
            sender.raw.report_snapshot(m.to, failed=not delivered)

    # -- membership of the harness -------------------------------------------------------------
    def add(self, id_: int, voters: Iterable[int] = (), learners: Iterable[int] = (), index: int = 0,
            bootstrap: bool = True, **cfg: Any) -> Node:
        """Create node ``id_``. With ``index`` > 0 it starts from a snapshot at that index holding
        the configuration; otherwise it is bootstrapped with ``voters`` (if any)."""
        storage = MemoryStorage()
        voters, learners = list(voters), list(learners)
        if index > 0:
            snap = raftpb.Snapshot()
            snap.metadata.index = index
            snap.metadata.term = 1
            snap.metadata.conf_state.voters.extend(voters)
            snap.metadata.conf_state.learners.extend(learners)
            storage.apply_snapshot(snap)
            storage.set_hard_state(raftpb.HardState(term=1, commit=index))
        raw = RawNode(make_config(id_, storage, **cfg))
        node = Node(id_, storage, raw, cfg)
        if index > 0:
            node.applied_index = index
            node.conf_state = raftpb.ConfState(voters=voters, learners=learners)
        elif voters and bootstrap:
            raw.bootstrap(voters)
            for lid in learners:
                raw.apply_conf_change(raftpb.ConfChange(type=raftpb.ConfChangeAddLearnerNode, node_id=lid))
        self.nodes[id_] = node
        return node

    def restart(self, id_: int) -> Node:
        """Recreate node ``id_`` from what it persisted (its MemoryStorage), as after a crash."""
        old = self.nodes[id_]
        snap = old.storage.snapshot()
        state = decode_state(snap.data)
        applied_index = snap.metadata.index
        raw = RawNode(make_config(id_, old.storage, applied=applied_index, **old.cfg))
        node = Node(id_, old.storage, raw, old.cfg, applied=state, applied_index=applied_index,
                    conf_state=raftpb.ConfState(voters=snap.metadata.conf_state.voters,
                                                learners=snap.metadata.conf_state.learners),
                    history=dict(old.history))
        self.nodes[id_] = node
        lost = [m for m in self.queue if m.to == id_ or msg_from(m) == id_]
        self.queue = [m for m in self.queue if m.to != id_ and msg_from(m) != id_]
        for m in lost:
            self._settle_snapshot(m, False)
        return node

    # -- the driver ----------------------------------------------------------------------------
    def process_ready(self, id_: int) -> Ready | None:
        n = self.nodes[id_]
        if not n.raw.has_ready():
            return None
        rd = n.raw.ready()
        if self.on_ready is not None:
            self.on_ready(id_, rd)
        if rd.snapshot is not None:
            n.storage.apply_snapshot(rd.snapshot)
        if rd.hard_state is not None:
            n.storage.set_hard_state(rd.hard_state)
        n.storage.append(rd.entries)
        # Messages sent into a cut link are lost right away.
        for m in rd.messages:
            if (msg_from(m), m.to) in self.cut:
                self._settle_snapshot(m, False)
            else:
                self.queue.append(m)
        if rd.snapshot is not None:
            n.applied = decode_state(rd.snapshot.data)
            n.applied_index = rd.snapshot.metadata.index
            n.conf_state = raftpb.ConfState()
            n.conf_state.CopyFrom(rd.snapshot.metadata.conf_state)
        for e in rd.committed_entries:
            prev = n.history.get(e.index)
            if prev is not None and prev != (e.term, e.data):
                raise AssertionError(f"node {id_} re-applied index {e.index} differently")
            n.history[e.index] = (e.term, e.data)
            if e.type == raftpb.EntryConfChange:
                cc = raftpb.ConfChange()
                cc.ParseFromString(e.data)
                n.conf_state = n.raw.apply_conf_change(cc)
            elif e.data:
                n.applied.append(e.data)
            n.applied_index = e.index
        n.raw.advance(rd)
        return rd

    def deliver(self, to: int | None = None, drop: bool = False) -> list[tuple[raftpb.Message, bool]]:
        """Deliver queued messages (to ``to`` only, if given). Returns (message, delivered)."""
        out: list[tuple[raftpb.Message, bool]] = []
        keep: list[raftpb.Message] = []
        batch = self.queue
        self.queue = []
        for m in batch:
            if to is not None and m.to != to:
                keep.append(m)
                continue
            ok = not drop and (msg_from(m), m.to) not in self.cut and m.to in self.nodes
            if ok:
                self.nodes[m.to].raw.step(m)
            self._settle_snapshot(m, ok)
            out.append((m, ok))
        self.queue = keep + self.queue
        return out

    def stabilize(self, ids: Iterable[int] | None = None, max_rounds: int = 1000) -> None:
        ids = sorted(ids) if ids is not None else sorted(self.nodes)
        for _ in range(max_rounds):
            progressed = False
            for i in ids:
                if self.process_ready(i) is not None:
                    progressed = True
            for i in ids:
                if any(m.to == i for m in self.queue):
                    self.deliver(i)
                    progressed = True
            if not progressed:
                return
        raise AssertionError("cluster did not stabilize")

    # -- conveniences --------------------------------------------------------------------------
    def _drop_cut(self) -> list[raftpb.Message]:
        """Messages in flight across a newly cut link are lost; returns them."""
        lost = [m for m in self.queue if (msg_from(m), m.to) in self.cut]
        self.queue = [m for m in self.queue if (msg_from(m), m.to) not in self.cut]
        for m in lost:
            self._settle_snapshot(m, False)
        return lost

    def partition(self, *groups: Iterable[int]) -> list[raftpb.Message]:
        sets = [set(g) for g in groups]
        self.cut = set()
        for a in self.nodes:
            for b in self.nodes:
                if a != b and not any(a in s and b in s for s in sets):
                    self.cut.add((a, b))
        return self._drop_cut()

    def isolate(self, id_: int) -> list[raftpb.Message]:
        for o in self.nodes:
            if o != id_:
                self.cut.add((id_, o))
                self.cut.add((o, id_))
        return self._drop_cut()

    def heal(self) -> None:
        self.cut = set()

    def tick(self, id_: int, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[id_].raw.tick()

    def elect(self, id_: int) -> None:
        # A node must have applied its committed conf changes before it may campaign.
        self.stabilize()
        self.nodes[id_].raw.campaign()
        self.stabilize()

    def leader(self) -> int:
        leads = [i for i, n in self.nodes.items() if n.r.state.name == "LEADER"]
        return leads[0] if len(leads) == 1 else 0

    def propose(self, id_: int, data: bytes) -> None:
        self.nodes[id_].raw.propose(data)


def new_cluster(n: int, **cfg: Any) -> Cluster:
    c = Cluster()
    ids = list(range(1, n + 1))
    for i in ids:
        c.add(i, voters=ids, **cfg)
    return c
