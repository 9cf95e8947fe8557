"""Tests named after the sections of the Raft paper (Ongaro & Ousterhout, "In Search of an
Understandable Consensus Algorithm", 2014), each checking what that section requires."""

from __future__ import annotations

import pytest

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import RawNode, StateType
from petcd.raft.leader import bcast_append
from petcd.raft.raft import Raft

from .chaos import ChaosResult
from .chaos import run as chaos_run
from .harness import Cluster, make_config
from .rafttest import entries, log_pairs, make_leader, msg, persist, raft, storage, take

# ---------------------------------------------------------------------------------------------
# §5.1 Raft basics: terms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["follower", "candidate", "leader"])
def test_5_1_update_term_from_higher_term_message(role: str) -> None:
    """Any server that sees a larger term adopts it and reverts to follower."""
    r = raft(1)
    if role == "candidate":
        r.become_candidate()
    elif role == "leader":
        make_leader(r)
    r.step(msg(raftpb.MsgApp, 2, 1, term=5))
    assert (r.term, r.state, r.lead) == (5, StateType.FOLLOWER, 2)


def test_5_1_reject_stale_term_message() -> None:
    """A request with a stale term is ignored."""
    r = raft(1)
    r.load_state(raftpb.HardState(term=2))
    called = []
    r._step = lambda m: called.append(m)
    r.step(msg(raftpb.MsgApp, 2, 1, term=1))
    assert not called and r.term == 2


def test_5_1_start_as_follower() -> None:
    r = raft(1)
    assert (r.state, r.term, r.lead) == (StateType.FOLLOWER, 0, 0)


# ---------------------------------------------------------------------------------------------
# §5.2 Leader election
# ---------------------------------------------------------------------------------------------


def test_5_2_leader_broadcasts_heartbeats() -> None:
    r = raft(1, heartbeat=1)
    make_leader(r)
    r.tick()
    hb = take(r)
    assert sorted((m.to, m.type) for m in hb) == [(2, raftpb.MsgHeartbeat), (3, raftpb.MsgHeartbeat)]
    assert all(m.term == r.term for m in hb)


@pytest.mark.parametrize("role", ["follower", "candidate"])
def test_5_2_start_election_after_timeout(role: str) -> None:
    """A follower (or a candidate whose election timed out) increments its term, votes for
    itself and asks every other server for its vote."""
    r = raft(1)
    if role == "candidate":
        r.become_candidate()
    term = r.term
    for _ in range(2 * r.election_timeout):
        r.tick()
    assert (r.state, r.term, r.vote) == (StateType.CANDIDATE, term + 1, 1)
    votes = take(r)
    assert sorted(m.to for m in votes) == [2, 3]
    assert all(m.type == raftpb.MsgVote and m.term == term + 1 for m in votes)


@pytest.mark.parametrize(("size", "votes", "state"), [
    (1, {}, StateType.LEADER),
    (3, {2: True, 3: True}, StateType.LEADER),
    (3, {2: True}, StateType.LEADER),
    (5, {2: True, 3: True, 4: True, 5: True}, StateType.LEADER),
    (5, {2: True, 3: True}, StateType.LEADER),
    (3, {}, StateType.CANDIDATE),
    (5, {2: True}, StateType.CANDIDATE),
    (5, {2: False, 3: False}, StateType.CANDIDATE),
    (3, {2: False, 3: False}, StateType.FOLLOWER),
    (5, {2: False, 3: False, 4: False}, StateType.FOLLOWER),
])
def test_5_2_election_in_one_round(size: int, votes: dict[int, bool], state: StateType) -> None:
    """A candidate wins with a majority of votes, loses with a majority of rejections, and keeps
    waiting otherwise."""
    r = raft(1, peers=range(1, size + 1))
    r.step(msg(raftpb.MsgHup, 1, 1))
    for frm, granted in votes.items():
        r.step(msg(raftpb.MsgVoteResp, frm, 1, term=r.term, reject=not granted))
    assert r.state == state
    assert r.term == 1


@pytest.mark.parametrize(("vote", "candidate", "granted"), [(0, 2, True), (0, 3, True), (2, 2, True),
                                                            (3, 3, True), (2, 3, False), (3, 2, False)])
def test_5_2_follower_votes_once_per_term(vote: int, candidate: int, granted: bool) -> None:
    """Each server votes for at most one candidate in a term, first come first served."""
    r = raft(1)
    r.load_state(raftpb.HardState(term=1, vote=vote))
    r.step(msg(raftpb.MsgVote, candidate, 1, term=1))
    (resp,) = take(r)
    assert resp.type == raftpb.MsgVoteResp and resp.reject == (not granted)


@pytest.mark.parametrize("term", [1, 2])
def test_5_2_candidate_falls_back_on_leader_append(term: int) -> None:
    """A candidate that hears from a leader with a term at least as large becomes follower."""
    r = raft(1)
    r.step(msg(raftpb.MsgHup, 1, 1))
    assert r.state == StateType.CANDIDATE
    r.step(msg(raftpb.MsgApp, 2, 1, term=term))
    assert (r.state, r.term, r.lead) == (StateType.FOLLOWER, term, 2)


@pytest.mark.parametrize("role", ["follower", "candidate"])
def test_5_2_election_timeout_is_randomized(role: str) -> None:
    """Election timeouts are drawn from [et, 2et): spread out, and never outside the range."""
    r = raft(1, election=10)
    seen = set()
    for _ in range(200):
        r.become_follower(r.term + 1, 0)
        if role == "candidate":
            r.become_candidate()
        take(r)
        ticks = 0
        while not take(r):
            r.tick()
            ticks += 1
        seen.add(ticks)
    assert min(seen) >= 10 and max(seen) < 20
    assert len(seen) >= 8


def test_5_2_election_timeouts_rarely_conflict() -> None:
    """With randomized timeouts two followers seldom time out in the same tick."""
    conflicts = 0
    for round_ in range(200):
        a, b = raft(1, peers=(1, 2)), raft(2, peers=(1, 2))
        a.rand.seed(round_)
        b.rand.seed(10_000 + round_)
        for r in (a, b):
            r.become_follower(1, 0)
        fired: list[bool] = [False, False]
        while not any(fired):
            for i, r in enumerate((a, b)):
                r.tick()
                fired[i] = bool(take(r))
        conflicts += all(fired)
    assert conflicts <= 0.3 * 200


# ---------------------------------------------------------------------------------------------
# §5.3 Log replication
# ---------------------------------------------------------------------------------------------


def test_5_3_leader_starts_replication() -> None:
    """The leader appends the command to its log and sends AppendEntries with the preceding
    entry's index and term and its commit index."""
    r = raft(1)
    make_leader(r)
    commit_all(r)
    li = r.raft_log.last_index()
    r.step(msg(raftpb.MsgProp, 1, 1, entries=[raftpb.Entry(data=b"some data")]))
    assert r.raft_log.last_index() == li + 1
    apps = take(r)
    assert sorted(m.to for m in apps) == [2, 3]
    for m in apps:
        assert (m.type, m.index, m.log_term, m.commit) == (raftpb.MsgApp, li, 1, li)
        assert [(e.index, e.term, e.data) for e in m.entries] == [(li + 1, 1, b"some data")]


def commit_all(r: Raft) -> None:
    """Acknowledge everything in the leader's log from every follower."""
    for id_ in sorted(r.tracker.progress):
        if id_ != r.id:
            r.step(msg(raftpb.MsgAppResp, id_, r.id, term=r.term, index=r.raft_log.last_index()))
    take(r)


def test_5_3_leader_commits_on_majority() -> None:
    r = raft(1)
    make_leader(r)
    commit_all(r)
    li = r.raft_log.last_index()
    r.step(msg(raftpb.MsgProp, 1, 1, entries=[raftpb.Entry(data=b"x")]))
    take(r)
    assert r.raft_log.committed == li
    r.step(msg(raftpb.MsgAppResp, 2, 1, term=r.term, index=li + 1))
    assert r.raft_log.committed == li + 1
    # The new commit index goes out to the followers.
    assert {m.to: m.commit for m in take(r) if m.type == raftpb.MsgApp} == {2: li + 1, 3: li + 1}


@pytest.mark.parametrize(("size", "acks", "committed"), [
    (1, set(), True), (3, set(), False), (3, {2}, True), (3, {2, 3}, True),
    (5, {2}, False), (5, {2, 3}, True), (5, {2, 3, 4, 5}, True),
])
def test_5_3_leader_acknowledges_commit(size: int, acks: set[int], committed: bool) -> None:
    r = raft(1, peers=range(1, size + 1))
    make_leader(r)
    commit_all(r)
    li = r.raft_log.last_index()
    r.step(msg(raftpb.MsgProp, 1, 1, entries=[raftpb.Entry(data=b"x")]))
    take(r)
    for a in acks:
        r.step(msg(raftpb.MsgAppResp, a, 1, term=r.term, index=li + 1))
    assert (r.raft_log.committed > li) == committed


def test_5_3_leader_commits_preceding_entries() -> None:
    """Committing an entry of the current term also commits all entries before it."""
    prior = [(1, 2), (2, 2)]
    st = storage((1, 2, 3), log=prior, hs=raftpb.HardState(term=2))
    r = raft(1, st=st)
    make_leader(r)
    r.step(msg(raftpb.MsgProp, 1, 1, entries=[raftpb.Entry(data=b"x")]))
    take(r)
    r.step(msg(raftpb.MsgAppResp, 2, 1, term=r.term, index=r.raft_log.last_index()))
    assert [(e.index, e.term) for e in r.raft_log.next_ents()] == [(1, 2), (2, 2), (3, 3), (4, 3)]


def test_5_3_follower_commits_what_leader_committed() -> None:
    r = raft(1)
    r.become_follower(1, 2)
    r.step(msg(raftpb.MsgApp, 2, 1, term=1, index=0, log_term=0, commit=1, entries=entries((1, 1), (2, 1))))
    assert r.raft_log.committed == 1
    assert [e.index for e in r.raft_log.next_ents()] == [1]


@pytest.mark.parametrize(("term", "index", "reject", "hint"), [
    (0, 0, False, 0),  # the very start of the log always matches
    (2, 2, False, 0),
    (1, 1, False, 0),
    (2, 1, True, 1),  # wrong term at 1
    (3, 3, True, 2),  # beyond our log: we hint our last index
])
def test_5_3_follower_checks_preceding_entry(term: int, index: int, reject: bool, hint: int) -> None:
    """A follower refuses AppendEntries whose preceding (index, term) it does not have."""
    st = storage((1, 2, 3), log=[(1, 1), (2, 2)])
    r = raft(1, st=st)
    r.become_follower(2, 2)
    r.step(msg(raftpb.MsgApp, 2, 1, term=2, index=index, log_term=term))
    (resp,) = take(r)
    assert resp.type == raftpb.MsgAppResp and resp.reject == reject
    if reject:
        assert (resp.index, resp.reject_hint) == (index, hint)


@pytest.mark.parametrize(("index", "term", "ents", "want"), [
    (2, 2, [(3, 2)], [(1, 1), (2, 2), (3, 2)]),
    (1, 1, [(2, 3), (3, 4)], [(1, 1), (2, 3), (3, 4)]),  # conflicting suffix replaced
    (0, 0, [(1, 1)], [(1, 1), (2, 2)]),  # already present: nothing truncated
    (0, 0, [(1, 3)], [(1, 3)]),
])
def test_5_3_follower_appends_entries(index: int, term: int, ents: list[tuple[int, int]],
                                      want: list[tuple[int, int]]) -> None:
    st = storage((1, 2, 3), log=[(1, 1), (2, 2)])
    r = raft(1, st=st)
    r.become_follower(2, 2)
    r.step(msg(raftpb.MsgApp, 2, 1, term=2, index=index, log_term=term, entries=entries(*ents)))
    assert log_pairs(r) == want


# Figure 7 of the paper: a leader's log and six possible follower logs (a)-(f).
FIG7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIG7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("case", sorted(FIG7_FOLLOWERS))
def test_5_3_leader_brings_follower_log_into_agreement(case: str) -> None:
    """Figure 7: whatever the follower's log, the leader makes it identical to its own (missing
    entries sent, extraneous ones deleted) and the leader's log never changes."""
    c = Cluster()
    lead_log = [(i + 1, t) for i, t in enumerate(FIG7_LEADER)]
    fol_log = [(i + 1, t) for i, t in enumerate(FIG7_FOLLOWERS[case])]
    nodes = {1: lead_log, 2: fol_log, 3: fol_log}
    for id_, lg in nodes.items():
        node = c.add(id_, bootstrap=False, pre_vote=False, check_quorum=False)
        # Replace the fresh node's storage with the figure's log, as if persisted earlier.
        st = storage((1, 2, 3), log=lg, hs=raftpb.HardState(term=8))
        node.storage = st
        node.raw = RawNode(make_config(id_, st, pre_vote=False, check_quorum=False))
    # Node 1 becomes leader of term 9. (In (c) and (d) the followers' logs are longer, so it
    # could not win their votes; the figure's leader got them from other servers.)
    leader = c.nodes[1].raw.raft
    leader.become_candidate()
    leader.become_leader()
    bcast_append(leader)
    c.stabilize()
    want = [(i, t) for i, t in lead_log] + [(11, 9)]
    assert log_pairs(leader) == want
    for id_ in (2, 3):
        assert log_pairs(c.nodes[id_].raw.raft) == want


# ---------------------------------------------------------------------------------------------
# §5.4 Safety: election restriction and committing entries from previous terms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("log_term", "index", "granted"), [
    # Our log ends at (2, term 2).
    (1, 1, False), (1, 2, False), (1, 3, False),  # lower last term: never
    (2, 1, False),  # same term, shorter: no
    (2, 2, True), (2, 3, True),  # same term, at least as long
    (3, 1, True), (3, 2, True),  # higher last term: always
])
def test_5_4_1_voter_grants_only_up_to_date_candidates(log_term: int, index: int, granted: bool) -> None:
    st = storage((1, 2), log=[(1, 1), (2, 2)])
    r = raft(1, peers=(1, 2), st=st)
    r.step(msg(raftpb.MsgVote, 2, 1, term=3, index=index, log_term=log_term))
    (resp,) = take(r)
    assert resp.type == raftpb.MsgVoteResp and resp.reject == (not granted)


def test_5_4_1_vote_request_carries_last_log_position() -> None:
    st = storage((1, 2, 3), log=[(1, 1), (2, 2)], hs=raftpb.HardState(term=2))
    r = raft(1, st=st)
    r.step(msg(raftpb.MsgHup, 1, 1))
    for m in take(r):
        assert (m.type, m.term, m.index, m.log_term) == (raftpb.MsgVote, 3, 2, 2)


@pytest.mark.parametrize(("index", "committed"), [(1, False), (2, False), (3, True)])
def test_5_4_2_leader_only_commits_current_term_by_counting(index: int, committed: bool) -> None:
    """Figure 8: entries of earlier terms are never committed by counting replicas; only once an
    entry of the current term is replicated on a majority."""
    st = storage((1, 2), log=[(1, 1), (2, 2)], hs=raftpb.HardState(term=2))
    r = raft(1, peers=(1, 2), st=st)
    make_leader(r)  # term 3, appends (3, 3)
    r.step(msg(raftpb.MsgAppResp, 2, 1, term=r.term, index=index))
    assert (r.raft_log.committed == 3) == committed
    assert r.raft_log.committed in (0, 3)


def test_5_4_2_new_leader_appends_empty_entry() -> None:
    r = raft(1)
    make_leader(r)
    (e,) = r.raft_log.unstable_entries()
    assert (e.term, e.data, e.type) == (1, b"", raftpb.EntryNormal)


def test_5_4_persisted_state_survives_restart() -> None:
    """Current term, vote and log come back from stable storage after a restart."""
    st = storage((1, 2, 3))
    r = raft(1, st=st)
    r.step(msg(raftpb.MsgVote, 2, 1, term=4))
    persist(r, st)
    st.set_hard_state(r.hard_state())
    r2 = raft(1, st=st)
    assert (r2.term, r2.vote) == (4, 2)
    # ... so it does not vote again in that term.
    r2.step(msg(raftpb.MsgVote, 3, 1, term=4))
    (resp,) = take(r2)
    assert resp.reject


# ---------------------------------------------------------------------------------------------
# Figure 3: the properties Raft guarantees at all times, checked after every step of
# randomized runs with message loss, duplication, reordering, partitions and crashes.
# ---------------------------------------------------------------------------------------------

CHAOS_SEEDS = range(12)


@pytest.fixture(scope="module")
def chaos_results() -> list[tuple[ChaosResult, bool]]:
    return [chaos_run(seed, 3 if seed % 2 else 5, 2000, conf_changes=seed % 3 == 0) for seed in CHAOS_SEEDS]


def _violations(results: list[tuple[ChaosResult, bool]], prop: str) -> list[str]:
    return [v for res, _ in results for v in res.violations.get(prop, [])]


def test_chaos_runs_are_meaningful(chaos_results: list[tuple[ChaosResult, bool]]) -> None:
    assert sum(len(res.leaders) for res, _ in chaos_results) >= 2 * len(CHAOS_SEEDS)
    assert sum(len(res.applied) for res, _ in chaos_results) >= 25 * len(CHAOS_SEEDS)


def test_fig3_election_safety(chaos_results: list[tuple[ChaosResult, bool]]) -> None:
    """At most one leader can be elected in a given term (§5.2)."""
    assert _violations(chaos_results, "election safety") == []


def test_fig3_leader_append_only(chaos_results: list[tuple[ChaosResult, bool]]) -> None:
    """A leader never overwrites or deletes entries in its log; it only appends (§5.3)."""
    assert _violations(chaos_results, "leader append-only") == []


def test_fig3_log_matching(chaos_results: list[tuple[ChaosResult, bool]]) -> None:
    """If two logs contain an entry with the same index and term, the logs are identical in all
    entries up through that index (§5.3)."""
    assert _violations(chaos_results, "log matching") == []


def test_fig3_leader_completeness(chaos_results: list[tuple[ChaosResult, bool]]) -> None:
    """A committed entry is present in the logs of the leaders of all higher terms (§5.4)."""
    assert _violations(chaos_results, "leader completeness") == []


def test_fig3_state_machine_safety(chaos_results: list[tuple[ChaosResult, bool]]) -> None:
    """No two servers apply different log entries at the same index (§5.4.3)."""
    assert _violations(chaos_results, "state machine safety") == []


def test_liveness_after_faults_heal(chaos_results: list[tuple[ChaosResult, bool]]) -> None:
    """Once the network heals a leader is elected and a new proposal commits everywhere."""
    assert [seed for seed, (_, ok) in zip(CHAOS_SEEDS, chaos_results, strict=True) if not ok] == []


def test_read_index_is_linearizable(chaos_results: list[tuple[ChaosResult, bool]]) -> None:
    """§6.4: a read served at its ReadIndex sees every write committed before it was issued."""
    assert sum(res.reads for res, _ in chaos_results) > 0
    assert _violations(chaos_results, "read index") == []
