"""Per-seed parameters: cluster shape, Raft options and fault rates, all drawn from the seed.

Every seed picks its own mix, so a run over many seeds covers calm and hostile networks, fast and
slow disks, small and large messages, with and without PreVote / CheckQuorum.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Virtual time: one tick is TICK_UNITS time units; network and disk delays are in units, so a
# message can arrive well within one tick or several ticks late.
TICK_UNITS = 10


@dataclass(frozen=True, slots=True)
class SimParams:
    seed: int
    nodes: int
    max_ids: int  # ids 1..max_ids may ever exist (the extra ones are added as learners)
    election_tick: int
    heartbeat_tick: int
    pre_vote: bool
    check_quorum: bool
    disable_forwarding: bool
    max_size_per_msg: int
    max_inflight: int
    max_uncommitted: int
    max_committed_per_ready: int
    # network
    drop: float
    dup: float
    delay_min: int
    delay_max: int
    unreachable_report: float
    # disk
    disk_latency_max: int  # 0 = persist synchronously inside the Ready loop
    torn_writes: bool
    # faults, per tick
    crash_rate: float
    downtime_max: int
    partition_rate: float
    partition_max: int
    skew: float  # chance a node misses a tick (clock drift)
    # workload, per tick
    propose_rate: float
    read_rate: float
    conf_rate: float
    transfer_rate: float
    snap_interval: int
    snap_keep: int
    # phases, in ticks
    chaos_ticks: int
    liveness_ticks: int
    converge_ticks: int

    @staticmethod
    def from_seed(seed: int, chaos_ticks: int = 500) -> SimParams:
        r = random.Random(f"params-{seed}")
        nodes = r.choice((3, 3, 5))
        election = r.randint(5, 15)
        calm = r.random() < 0.15  # some seeds run on a perfect network to test the happy path
        return SimParams(
            seed=seed,
            nodes=nodes,
            max_ids=nodes + 2,
            election_tick=election,
            heartbeat_tick=r.choice((1, 1, 2)),
            pre_vote=r.random() < 0.7,
            check_quorum=r.random() < 0.7,
            disable_forwarding=r.random() < 0.2,
            max_size_per_msg=r.choice((0, 64, 512, 4096, 1 << 20)),
            max_inflight=r.choice((1, 2, 8, 256)),
            max_uncommitted=r.choice((0, 0, 0, 2048)),
            max_committed_per_ready=r.choice((1 << 30, 1 << 30, 256)),
            drop=0.0 if calm else r.choice((0.0, 0.01, 0.05, 0.15, 0.3)),
            dup=0.0 if calm else r.choice((0.0, 0.02, 0.1)),
            delay_min=1,
            delay_max=r.choice((1, 5, 10, 30, 60)),
            unreachable_report=r.random(),
            disk_latency_max=r.choice((0, 0, 3, 15)),
            torn_writes=r.random() < 0.4,
            # a "crash storm" (frequent crashes, quick restarts) hits nodes in the middle of elections
            crash_rate=0.0 if calm else r.choice((0.0, 0.003, 0.01, 0.03, 0.15)),
            downtime_max=r.choice((2, 5, 20, 80)),
            partition_rate=0.0 if calm else r.choice((0.0, 0.005, 0.02, 0.05)),
            partition_max=r.randint(5, 120),
            skew=r.choice((0.0, 0.0, 0.05, 0.2)),
            propose_rate=r.choice((0.2, 0.5, 1.0, 3.0)),
            read_rate=r.choice((0.0, 0.1, 0.5)),
            conf_rate=r.choice((0.0, 0.01, 0.03, 0.08)),
            transfer_rate=r.choice((0.0, 0.0, 0.005, 0.02)),
            snap_interval=r.choice((3, 10, 50, 1000)),
            snap_keep=r.choice((0, 2, 20)),
            chaos_ticks=chaos_ticks,
            # generous: 2 x max election timeout per round, several rounds of split votes/pre-votes
            liveness_ticks=40 * election + 100,
            converge_ticks=40 * election + 200,
        )
