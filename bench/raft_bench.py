"""Benchmark of the Raft core alone: 3 in-memory nodes, entries committed per second.

Not a test. Each round the leader gets `batch` proposals (so one Ready carries `batch` new
entries), then all three nodes run their Ready loops (persist to MemoryStorage, deliver messages
in memory, apply, advance) until the cluster is idle. An entry counts once the leader applies it.

    python bench/raft_bench.py [--entries 20000] [--batches 1,16,256] [--size 128]
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from collections import deque

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import Config, MemoryStorage, RawNode, StateType


class Cluster:
    def __init__(self, n: int = 3) -> None:
        ids = list(range(1, n + 1))
        self.storages = {i: MemoryStorage() for i in ids}
        self.nodes: dict[int, RawNode] = {}
        for i in ids:
            cfg = Config(id=i, election_tick=10, heartbeat_tick=1, storage=self.storages[i],
                         max_size_per_msg=1 << 20, max_inflight_msgs=256, rand=random.Random(i))
            node = RawNode(cfg)
            node.bootstrap(ids)
            self.nodes[i] = node
        self.inbox: deque[raftpb.Message] = deque()
        self.applied = 0  # normal entries with data applied by the leader
        self.leader = 1
        self.stabilize()
        self.nodes[1].campaign()
        self.stabilize()
        assert self.nodes[1].status().raft_state == StateType.LEADER

    def stabilize(self) -> None:
        while True:
            busy = False
            for i, node in self.nodes.items():
                if not node.has_ready():
                    continue
                busy = True
                rd = node.ready()
                st = self.storages[i]
                if rd.snapshot is not None and rd.snapshot.metadata.index:
                    st.apply_snapshot(rd.snapshot)
                if rd.hard_state is not None:
                    st.set_hard_state(rd.hard_state)
                if rd.entries:
                    st.append(list(rd.entries))
                self.inbox.extend(rd.messages)
                for e in rd.committed_entries:
                    if e.type == raftpb.EntryConfChange:
                        cc = raftpb.ConfChange()
                        cc.ParseFromString(e.data)
                        node.apply_conf_change(cc)
                    elif i == self.leader and e.data:
                        self.applied += 1
                node.advance(rd)
            while self.inbox:
                busy = True
                m = self.inbox.popleft()
                self.nodes[m.to].step(m)
            if not busy:
                return


def bench(batch: int, entries: int, size: int) -> tuple[float, int]:
    c = Cluster()
    leader = c.nodes[c.leader]
    payload = b"x" * size
    rounds = max(1, entries // batch)
    t0 = time.perf_counter()
    for _ in range(rounds):
        for _ in range(batch):
            leader.propose(payload)
        c.stabilize()
    secs = time.perf_counter() - t0
    assert c.applied == rounds * batch, (c.applied, rounds * batch)
    return secs, c.applied


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=20000, help="entries committed per measurement")
    ap.add_argument("--batches", default="1,16,256", help="proposals per Ready, comma separated")
    ap.add_argument("--size", type=int, default=128, help="payload bytes per entry")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    args = ap.parse_args(argv)
    print(f"# petcd raft core, 3 in-memory nodes, {args.size}-byte entries, best of {args.repeat}; "
          f"Python {platform.python_version()} on {platform.machine()}")
    print(f"{'proposals/Ready':>16} {'entries':>8} {'seconds':>8} {'entries/s':>10}")
    for b in (int(x) for x in args.batches.split(",")):
        best = min(bench(b, args.entries, args.size) for _ in range(args.repeat))
        secs, n = best
        print(f"{b:>16} {n:>8} {secs:>8.3f} {n / secs:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
