"""Faults on a real 3-member petcd cluster under concurrent clients and watchers (see suite.py).

Three short scenarios run with the normal suite; every scenario (and any number of seeded
random runs: ``python -m tests.robustness --runs N``) runs when PETCD_ROBUSTNESS=1 is set.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from tests.robustness.faults import SCENARIOS
from tests.robustness.linearizability import Delete, Get, GetOk, Op, Put, PutOk, Txn, TxnOk
from tests.robustness.suite import RunConfig, check_writes, patch_history, run_sync
from tests.robustness.workload import Event

ALL = os.environ.get("PETCD_ROBUSTNESS") == "1"
QUICK = ("kill-leader", "pause-leader", "restart-all")
on_demand = pytest.mark.skipif(not ALL, reason="set PETCD_ROBUSTNESS=1 to run every fault scenario")


def _run(tmp_path: Path, scenario: str, seed: int, duration: float) -> None:
    result = run_sync(tmp_path / scenario, RunConfig(seed, scenario, duration=duration))
    assert result.ok, result.summary()
    assert int(result.stats["ops"]) > 100, result.summary()  # type: ignore[call-overload]


@pytest.mark.parametrize("scenario", QUICK)
def test_quick_fault_scenarios(tmp_path: Path, scenario: str) -> None:
    _run(tmp_path, scenario, seed=11, duration=6.0)


@on_demand
@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(set(SCENARIOS) - set(QUICK)))
def test_other_fault_scenarios(tmp_path: Path, scenario: str) -> None:
    _run(tmp_path, scenario, seed=12, duration=8.0)


@on_demand
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 106))
def test_random_fault_runs(tmp_path: Path, seed: int) -> None:
    import random

    _run(tmp_path, random.Random(seed).choice(sorted(SCENARIOS)), seed, duration=8.0)


# -- the suite's own bookkeeping, on hand-made data ---------------------------------------------

K = b"rb/k"


def test_patch_settles_unknown_writes_from_the_event_history() -> None:
    truth = [Event(2, K, "put", b"a"), Event(3, K, "put", b"c")]
    ops = [
        Op(1, 0, math.inf, Put(K, b"a"), None),  # took effect at 2
        Op(2, 0, math.inf, Put(K, b"b"), None),  # never did
        Op(3, 1, math.inf, Txn(K, "value", b"a", Put(K, b"c"), Get(K)), None),  # did, at 3
        Op(4, 1, math.inf, Delete(K), None),  # cannot tell: stays unknown
        Op(5, 4, 5, Get(K), GetOk(b"c", 3, 3)),
    ]
    patched = patch_history(ops, truth)
    assert patched[0] == Op(1, 0, 5, Put(K, b"a"), PutOk(2))  # returned by the time rev 3 was read
    assert patched[1] == Op(3, 1, 5, ops[2].input, TxnOk(True, 3))
    assert patched[2] == ops[3] and patched[3] == ops[4] and len(patched) == 4


def test_a_lost_acknowledged_write_is_reported() -> None:
    ops = [Op(1, 0, 1, Put(K, b"a"), PutOk(2)), Op(1, 2, 3, Put(K, b"b"), PutOk(3))]
    assert check_writes(ops, [Event(2, K, "put", b"a"), Event(3, K, "put", b"b")]) == []
    problems = check_writes(ops, [Event(2, K, "put", b"a")])
    assert len(problems) == 1 and "lost" in problems[0] and "revision 3" in problems[0]
