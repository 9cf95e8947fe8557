"""Benchmark of the Raft core alone (not a test): 3 in-memory nodes, entries committed per second.

    python -m tests.raft.bench_core [--entries N] [--size BYTES]

Each round proposes ``batch`` entries on the leader, then drives every node through the Ready
contract (persist to MemoryStorage, deliver messages in memory, apply, advance) until all
three have applied the round. No network, no disk: this measures the state machine's own cost.
"""

from __future__ import annotations

import argparse
import random
import time

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import Config, MemoryStorage, RawNode, msg_from


class Bench:
    def __init__(self) -> None:
        self.storages = {i: MemoryStorage() for i in (1, 2, 3)}
        self.nodes = {i: RawNode(Config(id=i, storage=self.storages[i], rand=random.Random(i)))
                      for i in (1, 2, 3)}
        for n in self.nodes.values():
            n.bootstrap([1, 2, 3])
        self.inbox: dict[int, list[raftpb.Message]] = {1: [], 2: [], 3: []}
        self.applied = {1: 0, 2: 0, 3: 0}
        self.drive()
        self.nodes[1].campaign()
        self.drive()

    def drive(self) -> None:
        busy = True
        while busy:
            busy = False
            for i, n in self.nodes.items():
                if n.has_ready():
                    busy = True
                    rd = n.ready()
                    st = self.storages[i]
                    if rd.hard_state is not None:
                        st.set_hard_state(rd.hard_state)
                    st.append(rd.entries)
                    for m in rd.messages:
                        self.inbox[m.to].append(m)
                    for e in rd.committed_entries:
                        if e.type == raftpb.EntryConfChange:
                            cc = raftpb.ConfChange()
                            cc.ParseFromString(e.data)
                            n.apply_conf_change(cc)
                        elif e.data:
                            self.applied[i] += 1
                    n.advance(rd)
            for i, box in self.inbox.items():
                if box:
                    busy = True
                    self.inbox[i] = []
                    for m in box:
                        assert msg_from(m) in self.nodes
                        self.nodes[i].step(m)

    def run(self, batch: int, total: int, size: int) -> float:
        data = b"x" * size
        start = dict(self.applied)
        t0 = time.perf_counter()
        done = 0
        while done < total:
            for _ in range(batch):
                self.nodes[1].propose(data)
            done += batch
            self.drive()
        dt = time.perf_counter() - t0
        assert all(self.applied[i] - start[i] == done for i in self.applied)
        return done / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=100)
    args = ap.parse_args()
    for batch in (1, 16, 256):
        total = max(batch, args.entries // batch * batch)
        rate = Bench().run(batch, total, args.size)
        print(f"{batch:4d} proposals/Ready: {rate:10.0f} entries committed/s ({total} entries of {args.size} B)")


if __name__ == "__main__":
    main()
