"""The deterministic Raft simulator over many seeds (see tests/raft/sim/__init__.py).

CI runs PETCD_SIM_SEEDS seeds (default 300) plus every seed kept in sim_regressions.txt. More:
`PETCD_SIM_SEEDS=10000 python -m pytest tests/raft/test_simulation.py` or, in parallel,
`python -m tests.raft.sim --seeds 10000`. One seed: `python -m tests.raft.sim --seed N`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import Config, MemoryStorage, RawNode, StateType, new_message
from tests.raft.sim import (
    Checker,
    InvariantViolation,
    SimFailure,
    SimParams,
    Simulation,
    regression_seeds,
    run_seed,
)
from tests.raft.sim.disk import Disk

CI_SEEDS = int(os.environ.get("PETCD_SIM_SEEDS", "300"))


@pytest.mark.parametrize("seed", range(CI_SEEDS))
def test_seed(seed: int) -> None:
    res = run_seed(seed)
    assert res.liveness_ticks >= 0
    assert res.committed > 0


@pytest.mark.parametrize("seed", regression_seeds())
def test_regression_seed(seed: int) -> None:
    run_seed(seed)


def test_same_seed_same_trace() -> None:
    for seed in (7, 123):
        a, b = run_seed(seed), run_seed(seed)
        assert a.digest == b.digest and a.events == b.events
    assert run_seed(7).digest != run_seed(8).digest


def test_trace_does_not_depend_on_hash_seed() -> None:
    """Another process with another PYTHONHASHSEED replays a seed to the same digest."""
    code = "from tests.raft.sim import run_seed; print(run_seed(11).digest)"
    root = Path(__file__).resolve().parents[2]
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(root)}
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True,
                             text=True, check=True, timeout=120)
        digests.add(out.stdout.strip())
    assert digests == {run_seed(11).digest}


def test_seeds_cover_both_cluster_sizes_and_faults() -> None:
    ps = [SimParams.from_seed(s) for s in range(CI_SEEDS)]
    assert {p.nodes for p in ps} == {3, 5}
    assert any(p.crash_rate for p in ps) and any(p.partition_rate for p in ps)
    assert any(p.drop for p in ps) and any(p.dup for p in ps) and any(p.torn_writes for p in ps)
    assert any(p.disk_latency_max for p in ps) and any(p.conf_rate for p in ps)


# --- the checker itself must be able to fail --------------------------------------------------

def test_checker_rejects_two_leaders_in_a_term() -> None:
    ck = Checker()
    ck.on_leader(1, 5)
    ck.on_leader(1, 5)
    ck.on_leader(2, 6)
    with pytest.raises(InvariantViolation, match="two leaders"):
        ck.on_leader(3, 5)


def _entry(index: int, term: int, data: bytes) -> raftpb.Entry:
    return raftpb.Entry(index=index, term=term, data=data)


def test_checker_rejects_log_mismatch_and_changed_commit() -> None:
    ck = Checker()
    d1, d2 = Disk(), Disk()
    e1 = [_entry(1, 1, b"a"), _entry(2, 1, b"b")]
    ck.on_append(1, d1, e1, d1.append(e1))
    d1.set_hard_state(raftpb.HardState(term=1, commit=2))
    ck.on_hard_state(1, d1, 1)
    # same (index, term), different content: log matching
    e2 = [_entry(1, 1, b"a"), _entry(2, 1, b"X")]
    with pytest.raises(InvariantViolation, match="log matching"):
        ck.on_append(2, d2, e2, d2.append(e2))
    # a different entry committed at index 2 (in another term): committed entry changed
    ck2 = Checker()
    ck2.on_committed(1, _entry(2, 1, b"b"), 1)
    with pytest.raises(InvariantViolation, match="committed entry changed"):
        ck2.on_committed(2, _entry(2, 2, b"c"), 2)
    # overwriting at or below the node's own persisted commit
    with pytest.raises(InvariantViolation, match="overwrote"):
        e3 = [_entry(2, 2, b"c")]
        ck.on_append(1, d1, e3, d1.append(e3))


def test_checker_rejects_stale_read_and_divergent_state() -> None:
    ck = Checker()
    ck.max_commit = 10
    ck.on_read_request(b"r1")
    ck.on_read_state(1, 10, b"r1")
    ck.on_read_request(b"r2")
    with pytest.raises(InvariantViolation, match="read index"):
        ck.on_read_state(1, 9, b"r2")
    ck.check_chain(1, 3, b"x")
    with pytest.raises(InvariantViolation, match="state machine safety"):
        ck.check_chain(2, 3, b"y")


class ForgetfulDisk(Disk):
    """A broken disk that drops the vote: a node may then vote twice in a term after a crash."""

    def set_hard_state(self, hs: raftpb.HardState) -> None:
        super().set_hard_state(raftpb.HardState(term=hs.term, vote=0, commit=hs.commit))


def test_simulator_catches_a_disk_that_forgets_votes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: with votes not persisted, some seed must break an invariant."""
    import tests.raft.sim.node as node_mod

    monkeypatch.setattr(node_mod, "Disk", ForgetfulDisk)
    for seed in range(200):
        p = SimParams.from_seed(seed)
        if not p.crash_rate:
            continue
        try:
            Simulation(seed, p).run()
        except SimFailure as e:
            assert str(seed) in str(e)
            return
    pytest.fail("no seed noticed that votes were not persisted")


def test_simulator_catches_commit_by_counting_old_term_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: a leader that commits earlier-term entries by counting replicas (the Raft
    paper's Figure 8 mistake) must be caught."""
    from petcd.raft import log as raft_log

    def maybe_commit(self: raft_log.RaftLog, max_index: int, term: int) -> bool:
        if max_index > self.committed:
            self.commit_to(max_index)
            return True
        return False

    monkeypatch.setattr(raft_log.RaftLog, "maybe_commit", maybe_commit)
    for seed in range(100):
        try:
            run_seed(seed)
        except SimFailure as e:
            assert "advanced its commit" in str(e) or "committed" in str(e)
            return
    pytest.fail("no seed noticed a leader committing entries of an earlier term")


# --- raft fixes found by the simulator -------------------------------------------------------

def _node_at_term(i: int, term: int) -> RawNode:
    """A voter of {1, 2, 3} restarted at `term`, without PreVote and CheckQuorum."""
    st = MemoryStorage()
    st.apply_snapshot(raftpb.Snapshot(metadata=raftpb.SnapshotMetadata(
        index=1, term=1, conf_state=raftpb.ConfState(voters=[1, 2, 3]))))
    st.set_hard_state(raftpb.HardState(term=term, commit=1))
    return RawNode(Config(id=i, election_tick=10, heartbeat_tick=1, storage=st, applied=1,
                          pre_vote=False, check_quorum=False))


def test_lower_term_append_is_answered_with_our_term() -> None:
    """Seed 5118 (without PreVote and CheckQuorum): a node at a higher term ignored the leader's
    appends and heartbeats, and the only node that could have told the leader the higher term
    campaigned in a stale configuration without it, so two members never caught up. The node
    now answers with its term even without PreVote/CheckQuorum, and the stale leader steps down."""
    leader, high = _node_at_term(1, 3), _node_at_term(2, 9)
    leader.campaign()
    rd = leader.ready()
    leader.advance(rd)
    leader.step(new_message(raftpb.MsgVoteResp, to=1, frm=3, term=4))
    assert leader.status().raft_state == StateType.LEADER
    rd = leader.ready()
    app = next(m for m in rd.messages if m.to == 2 and m.type == raftpb.MsgApp)
    leader.advance(rd)
    high.step(app)
    rd = high.ready()
    resp = [m for m in rd.messages if m.to == 1]
    assert len(resp) == 1 and resp[0].type == raftpb.MsgAppResp and resp[0].term == 9
    high.advance(rd)
    leader.step(resp[0])
    st = leader.status()
    assert st.raft_state == StateType.FOLLOWER and st.hard_state.term == 9


def test_lower_term_vote_request_is_rejected_with_our_term() -> None:
    """Seeds 508 and 1571 (without PreVote): a candidate whose term fell behind asked a node at a
    higher term for its vote; the request was ignored, so the candidate never learnt the higher
    term and, being the only node able to win, the cluster never elected a leader. The node now
    rejects the request and tells its term, as in the Raft paper (§5.1), and the candidate moves
    to that term."""
    high, low = _node_at_term(1, 9), _node_at_term(2, 3)
    low.campaign()  # term 4, asks 1 and 3
    rd = low.ready()
    req = next(m for m in rd.messages if m.to == 1)
    assert req.type == raftpb.MsgVote and req.term == 4
    low.advance(rd)
    high.step(req)
    rd = high.ready()
    resp = [m for m in rd.messages if m.to == 2]
    assert len(resp) == 1 and resp[0].type == raftpb.MsgVoteResp and resp[0].reject and resp[0].term == 9
    high.advance(rd)
    assert high.status().hard_state.term == 9 and high.status().hard_state.vote == 0
    low.step(resp[0])
    assert low.status().hard_state.term == 9
