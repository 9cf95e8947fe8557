"""Per-seed parameters of a whole-member simulation, all drawn from the seed.

Every seed picks its own mix (cluster size, snapshot cadence, network, disk, faults, workload),
so many seeds cover calm and hostile runs alike; about one in six runs on a perfect network to
test the happy path.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimParams:
    seed: int
    members: int
    heartbeat_ms: int
    election_ms: int
    pre_vote: bool
    snapshot_count: int
    catchup_entries: int
    # network
    drop: float
    dup: float
    delay_max: float  # seconds
    fifo: bool
    # disk: each WAL write / file job is acknowledged up to this much virtual time late
    disk_latency_max: float
    power_loss: bool  # crashes may also lose the WAL's unsynced tail
    # faults: mean virtual seconds between two (inf: never)
    crash_every: float
    downtime_max: float
    partition_every: float
    partition_max: float
    # workload
    clients: int
    keys: int
    think_max: float  # seconds a client waits between two calls
    # virtual seconds of chaos, then of convergence at most
    chaos_seconds: float
    converge_seconds: float

    @staticmethod
    def from_seed(seed: int, chaos_seconds: float = 12.0) -> SimParams:
        r = random.Random(f"member-sim-{seed}")
        calm = r.random() < 0.15
        heartbeat = r.choice((50, 100, 100))
        return SimParams(
            seed=seed,
            members=r.choice((3, 3, 3, 5)),
            heartbeat_ms=heartbeat,
            election_ms=heartbeat * r.choice((5, 10)),
            pre_vote=r.random() < 0.7,
            snapshot_count=r.choice((8, 20, 50, 200)),
            catchup_entries=r.choice((2, 5, 20)),
            drop=0.0 if calm else r.choice((0.0, 0.01, 0.05, 0.15)),
            dup=0.0 if calm else r.choice((0.0, 0.02, 0.1)),
            delay_max=r.choice((0.002, 0.01, 0.03, 0.1)),
            fifo=r.random() < 0.5,
            disk_latency_max=r.choice((0.0, 0.0, 0.002, 0.02)),
            power_loss=r.random() < 0.5,
            crash_every=math.inf if calm else r.choice((math.inf, 6.0, 3.0, 1.5)),
            downtime_max=r.choice((0.3, 2.0, 5.0)),
            partition_every=math.inf if calm else r.choice((math.inf, 6.0, 3.0)),
            partition_max=r.choice((1.0, 3.0, 6.0)),
            clients=r.randint(2, 5),
            keys=r.randint(2, 6),
            think_max=r.choice((0.0, 0.02, 0.1)),
            chaos_seconds=chaos_seconds,
            converge_seconds=60.0,
        )
