"""The simulated network: seeded drops, delays (hence reordering), duplicates and partitions.

`send` decides a message's fate when it leaves a node: dropped (random loss, or a blocked link),
or delivered once or twice, each copy after its own random delay. Partitions are a set of
blocked directed links, so a symmetric split blocks both directions and a one-way partition
only one; a link blocked while a message is in flight also loses it. Messages travel encoded
(as they would on the wire) so a receiver never shares an object with the sender.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from petcd.proto.raftpb import raft_pb2 as raftpb


@dataclass
class NetStats:
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    delivered: int = 0
    partitions: int = 0


@dataclass
class Network:
    rng: random.Random
    drop: float
    dup: float
    delay_min: int
    delay_max: int
    unreachable_report: float
    # schedule(delay, frm, to, encoded message) / report(kind, frm, to): hooks into the event loop
    schedule: Callable[[int, int, int, bytes, bool], None]
    report: Callable[[str, int, int], None]
    blocked: set[tuple[int, int]] = field(default_factory=set)
    stats: NetStats = field(default_factory=NetStats)

    def send(self, m: raftpb.Message) -> None:
        frm, to = getattr(m, "from"), m.to
        is_snap = m.type == raftpb.MsgSnap
        self.stats.sent += 1
        if (frm, to) in self.blocked:
            self.stats.dropped += 1
            if self.rng.random() < self.unreachable_report:
                self.report("unreachable", frm, to)
            if is_snap:
                self.report("snap-failed", frm, to)
            return
        if self.rng.random() < self.drop:
            self.stats.dropped += 1
            if is_snap:
                self.report("snap-failed", frm, to)
            return
        data = m.SerializeToString()
        copies = 2 if self.dup and self.rng.random() < self.dup else 1
        self.stats.duplicated += copies - 1
        for _ in range(copies):
            self.schedule(self.rng.randint(self.delay_min, self.delay_max), frm, to, data, is_snap)

    def link_up(self, frm: int, to: int) -> bool:
        return (frm, to) not in self.blocked

    # --- partitions ------------------------------------------------------------------------
    def heal(self) -> None:
        self.blocked.clear()

    def split(self, side_a: Iterable[int], side_b: Iterable[int], one_way: bool) -> None:
        """Block a->b links (and b->a unless one_way)."""
        self.stats.partitions += 1
        a, b = list(side_a), list(side_b)
        for x in a:
            for y in b:
                self.blocked.add((x, y))
                if not one_way:
                    self.blocked.add((y, x))

    def make_healthy(self) -> None:
        self.heal()
        self.drop = 0.0
        self.dup = 0.0
        self.delay_max = min(self.delay_max, 5)
