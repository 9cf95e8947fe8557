"""The whole-member simulator in CI: a bounded number of seeds (more on demand with
`python -m tests.sim --seeds N`), the same seed replaying the same run, and a planted fault that
the invariants must catch."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.server.apply import Applier
from tests.sim.members import MemberSimulation, SimFailure, run_seed
from tests.sim.params import SimParams

CI_SEEDS = range(0, 40)
CI_CHAOS = 8.0  # virtual seconds of faults per seed
CI_BUDGET = 18.0  # real seconds: seeds left when it is spent are not started (~8-10 on 2 cores)


def test_seeds() -> None:
    started = time.monotonic()
    ran = 0
    for seed in CI_SEEDS:
        if ran and time.monotonic() - started > CI_BUDGET:
            break
        run_seed(seed, CI_CHAOS)  # a failure raises SimFailure, which names the seed
        ran += 1
    assert ran >= 3


def test_a_seed_replays_the_same_run() -> None:
    a = run_seed(3, 4.0)
    b = run_seed(3, 4.0)
    assert a.digest == b.digest and a.ops == b.ops and a.applies == b.applies


class _LoseValues:
    """A member whose backend stores every put's value wrong (as a bad disk or a bug would)."""

    def __init__(self, nxt: Applier) -> None:
        self._next = nxt

    def apply(self, req: serverpb.InternalRequest, index: int) -> Any:
        if req.WhichOneof("request") == "put":
            bad = serverpb.InternalRequest()
            bad.CopyFrom(req)  # the request as logged stays right: only the stored value is wrong
            bad.put.value = b"garbage"
            return self._next.apply(bad, index)
        return self._next.apply(req, index)


def test_a_member_that_diverges_is_caught(tmp_path: Path) -> None:
    params = SimParams.from_seed(1, 3.0)
    sim = MemberSimulation(1, params, tmp_path)
    sim.members[-1].apply_steps.append(_LoseValues)
    with pytest.raises(SimFailure) as err:
        sim.run()
    text = str(err.value)
    assert "seed 1" in text and "python -m tests.sim --seed 1" in text
    # caught while running (a txn reading the key got another answer there) or at the end
    caught = ("applied a different result", "is not on member", "HashKV differs", "not linearizable")
    assert any(c in text for c in caught), text


class _StartsAThread:
    """A member whose apply hands a moment's work to a thread and waits for it: gone before the
    simulator's next check, yet the run is no longer the loop's alone."""

    def __init__(self, nxt: Applier) -> None:
        self._next = nxt

    def apply(self, req: serverpb.InternalRequest, index: int) -> Any:
        t = threading.Thread(target=int, name="stray-apply-thread")
        t.start()
        t.join()
        return self._next.apply(req, index)


def test_a_member_that_starts_a_thread_is_caught(tmp_path: Path) -> None:
    sim = MemberSimulation(2, SimParams.from_seed(2, 2.0), tmp_path)
    sim.members[0].apply_steps.append(_StartsAThread)
    with pytest.raises(SimFailure) as err:
        sim.run()
    assert "a thread started during the simulation (['stray-apply-thread'" in str(err.value), str(err.value)


def test_a_thread_from_before_the_run_may_end_during_it(tmp_path: Path) -> None:
    # as a helper thread of an earlier test in the same process does when it winds down late
    go = threading.Event()
    older = threading.Thread(target=go.wait, name="older-thread")
    older.start()

    class _EndsTheOlderThread:
        def __init__(self, nxt: Applier) -> None:
            self._next = nxt

        def apply(self, req: serverpb.InternalRequest, index: int) -> Any:
            go.set()
            older.join()
            return self._next.apply(req, index)

    sim = MemberSimulation(2, SimParams.from_seed(2, 2.0), tmp_path)
    sim.members[0].apply_steps.append(_EndsTheOlderThread)
    try:
        sim.run()
        assert go.is_set()  # the older thread did end while the members ran
    finally:
        go.set()
        older.join()
