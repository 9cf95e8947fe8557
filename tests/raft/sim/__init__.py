"""A deterministic Raft simulator (FoundationDB / TigerBeetle VOPR style) for petcd.raft.

One process, virtual time, 3 or 5 nodes (plus members added later): each node is a RawNode with a
MemoryStorage and a simulated Disk, driven by the Ready contract; a seeded network drops, delays,
duplicates, reorders and partitions messages; nodes crash (losing all that was not persisted) and
restart; proposals, conf changes, ReadIndex requests and leader transfers arrive throughout.
Safety invariants are checked after every event, liveness after the faults heal. A seed alone
reproduces a run: `python -m tests.raft.sim --seed N`.

Modules: params (per-seed parameters), network, disk, node (driver), invariants, cluster (the
event loop and phases), runner (many seeds, regressions).
"""

from .cluster import SimFailure, SimResult, Simulation
from .invariants import Checker, InvariantViolation
from .params import SimParams
from .runner import regression_seeds, run_many, run_seed

__all__ = [
    "Checker",
    "InvariantViolation",
    "SimFailure",
    "SimParams",
    "SimResult",
    "Simulation",
    "regression_seeds",
    "run_many",
    "run_seed",
]
