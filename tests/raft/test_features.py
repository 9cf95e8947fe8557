"""Feature tests: PreVote, CheckQuorum, learners, membership, snapshots, ReadIndex, leader
transfer, flow control, the uncommitted-size limit, proposal forwarding and the Ready contract."""

from __future__ import annotations

import random

import pytest

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import (
    Config,
    ConfigError,
    MemoryStorage,
    NoLeaderError,
    ProgressState,
    ProposalDroppedError,
    RaftError,
    RawNode,
    ReadOnlyOption,
    ReadyNotAdvancedError,
    StateType,
    StepLocalMsgError,
)
from petcd.raft.raft import FORWARD_BATCH_BYTES

from .harness import Cluster, new_cluster
from .rafttest import msg, raft, take


def elected(n: int = 3, lead: int = 1, **cfg: object) -> Cluster:
    c = new_cluster(n, **cfg)
    c.elect(lead)
    assert c.leader() == lead
    return c


def states(c: Cluster) -> dict[int, StateType]:
    return {i: n.r.state for i, n in c.nodes.items()}


# -- leader election ------------------------------------------------------------------------------

def test_election_by_ticking() -> None:
    c = new_cluster(3, pre_vote=True, check_quorum=True)
    c.stabilize()
    for _ in range(100):
        for i in sorted(c.nodes):
            c.tick(i)
        c.stabilize()
        if c.leader():
            break
    assert c.leader()
    terms = {n.r.term for n in c.nodes.values()}
    assert len(terms) == 1


def test_single_node_elects_itself_and_commits() -> None:
    c = new_cluster(1)
    c.elect(1)
    assert c.leader() == 1
    c.propose(1, b"x")
    c.stabilize()
    assert c.nodes[1].applied == [b"x"]


def test_node_with_unapplied_conf_change_does_not_campaign() -> None:
    c = new_cluster(3)  # bootstrap entries are committed but not yet applied
    c.nodes[1].raw.campaign()
    assert c.nodes[1].r.state == StateType.FOLLOWER


# -- PreVote -----------------------------------------------------------------------------------------

def test_prevote_partitioned_node_keeps_its_term() -> None:
    c = elected(3, pre_vote=True)
    term = c.nodes[1].r.term
    c.isolate(3)
    for _ in range(5):
        c.tick(3, 30)
        c.stabilize()
    assert c.nodes[3].r.term == term and c.nodes[3].r.state == StateType.PRE_CANDIDATE
    c.heal()
    c.tick(1)
    c.stabilize()
    assert c.leader() == 1 and {n.r.term for n in c.nodes.values()} == {term}


def test_without_prevote_partitioned_node_disrupts() -> None:
    c = elected(3, pre_vote=False)
    term = c.nodes[1].r.term
    c.isolate(3)
    c.tick(3, 30)
    c.stabilize()
    assert c.nodes[3].r.term > term
    c.heal()
    c.tick(1)
    c.stabilize()
    assert c.nodes[1].r.term > term  # the old leader was deposed by the higher term


def test_prevote_does_not_record_a_vote() -> None:
    r = raft(1, pre_vote=True)
    r.step(msg(raftpb.MsgPreVote, 2, 1, term=5, index=0, log_term=0))
    (resp,) = take(r)
    assert resp.type == raftpb.MsgPreVoteResp and not resp.reject and resp.term == 5
    assert (r.term, r.vote) == (0, 0)


def test_prevote_rejected_for_stale_log() -> None:
    c = elected(3, pre_vote=True)
    c.isolate(3)
    c.propose(1, b"x")
    c.stabilize()
    c.heal()
    # Node 3's log lacks 'x': neither 1 nor 2 grants its pre-vote, and it stays a follower.
    c.nodes[3].raw.campaign()
    c.stabilize()
    assert c.leader() == 1 and c.nodes[3].r.term == c.nodes[1].r.term


# -- CheckQuorum and leader lease ---------------------------------------------------------------------------

def test_checkquorum_leader_steps_down_without_quorum() -> None:
    c = elected(3, check_quorum=True)
    c.isolate(1)
    c.tick(1, 2 * c.nodes[1].r.election_timeout)
    assert c.nodes[1].r.state == StateType.FOLLOWER


def test_checkquorum_leader_stays_with_quorum() -> None:
    c = elected(3, check_quorum=True)
    for _ in range(5 * c.nodes[1].r.election_timeout):
        c.tick(1)
        c.stabilize()
    assert c.leader() == 1


def test_leader_lease_ignores_vote_requests() -> None:
    c = elected(3, check_quorum=True)
    term = c.nodes[1].r.term
    c.nodes[2].raw.force_campaign()
    c.stabilize()
    # 1 and 3 heard from the leader recently: they ignored the vote and kept term.
    assert c.nodes[3].r.term == term and c.nodes[3].r.lead == 1


def test_checkquorum_removed_node_cannot_disrupt() -> None:
    c = elected(3, check_quorum=True, pre_vote=True)
    c.nodes[1].raw.propose_conf_change(raftpb.ConfChange(type=raftpb.ConfChangeRemoveNode, node_id=3))
    c.stabilize()
    term = c.nodes[1].r.term
    # The removed node does not know it was removed (it may not have applied the change); its
    # campaigns must not change anyone's term.
    for _ in range(10):
        c.tick(3, 30)
        c.tick(1)
        c.stabilize()
    assert c.leader() == 1 and c.nodes[1].r.term == term and c.nodes[2].r.term == term


# -- proposals ------------------------------------------------------------------------------------------------

def test_no_leader_error() -> None:
    c = new_cluster(3)
    c.stabilize()
    with pytest.raises(NoLeaderError):
        c.propose(1, b"x")
    assert issubclass(NoLeaderError, ProposalDroppedError)


def test_candidate_drops_proposals() -> None:
    r = raft(1)
    r.become_candidate()
    with pytest.raises(NoLeaderError):
        r.step(msg(raftpb.MsgProp, 1, 1, entries=[raftpb.Entry(data=b"x")]))


def test_proposal_forwarded_to_leader() -> None:
    c = elected(3)
    c.propose(3, b"via-follower")
    c.stabilize()
    assert all(n.applied == [b"via-follower"] for n in c.nodes.values())


def test_forwarded_proposals_of_one_ready_travel_as_one_message() -> None:
    c = elected(3)
    r = c.nodes[3].r
    for d in (b"a", b"b", b"c"):
        c.propose(3, d)
    assert [(m.type, m.to, [e.data for e in m.entries]) for m in r.msgs] == [(raftpb.MsgProp, 1, [b"a", b"b", b"c"])]
    c.stabilize()
    # a message queued after the proposal closes it: what comes later is a new one, in order
    c.propose(3, b"d")
    r.send(msg(raftpb.MsgHeartbeatResp, 3, 1))
    c.propose(3, b"e")
    assert [(m.type, [e.data for e in m.entries]) for m in r.msgs] == [
        (raftpb.MsgProp, [b"d"]), (raftpb.MsgHeartbeatResp, []), (raftpb.MsgProp, [b"e"])]
    c.stabilize()
    # so is one that would grow past the byte cap
    big = b"x" * (FORWARD_BATCH_BYTES // 2 + 1)
    c.propose(3, big)
    c.propose(3, big)
    assert [len(m.entries) for m in r.msgs if m.type == raftpb.MsgProp] == [1, 1]
    c.stabilize()
    assert all(n.applied == [b"a", b"b", b"c", b"d", b"e", big, big] for n in c.nodes.values())


def test_proposal_forwarding_disabled() -> None:
    c = elected(3, disable_proposal_forwarding=True)
    with pytest.raises(ProposalDroppedError):
        c.propose(2, b"x")


def test_forwarded_proposal_dropped_silently_at_leader() -> None:
    c = elected(3)
    c.nodes[1].raw.transfer_leader(3)  # proposals are refused during a transfer
    m = msg(raftpb.MsgProp, 2, 1, entries=[raftpb.Entry(data=b"x")])
    c.nodes[1].raw.step(m)  # no exception for a peer's proposal
    with pytest.raises(ProposalDroppedError):
        c.propose(1, b"y")


def test_uncommitted_size_limit() -> None:
    c = elected(3, max_uncommitted_entries_size=10)
    c.isolate(1)
    c.propose(1, b"12345678")
    c.propose(1, b"12")
    with pytest.raises(ProposalDroppedError):
        c.propose(1, b"1")
    # Empty entries are never refused, and commitment frees the budget.
    c.heal()
    c.tick(1)
    c.stabilize()
    assert c.nodes[1].r.uncommitted_size == 0
    c.propose(1, b"1234567890")
    c.stabilize()
    assert c.nodes[2].applied == [b"12345678", b"12", b"1234567890"]


def test_uncommitted_size_allows_any_first_proposal() -> None:
    c = elected(3, max_uncommitted_entries_size=4)
    c.isolate(1)
    c.propose(1, b"a much larger proposal")
    with pytest.raises(ProposalDroppedError):
        c.propose(1, b"x")


# -- replication and flow control ----------------------------------------------------------------------------

def test_inflight_window_limits_appends() -> None:
    c = elected(2, max_inflight_msgs=3, max_size_per_msg=0)
    for i in range(10):
        c.propose(1, b"%d" % i)
    rd = c.process_ready(1)
    assert rd is not None
    apps = [m for m in rd.messages if m.type == raftpb.MsgApp]
    assert len(apps) == 3 and all(len(m.entries) == 1 for m in apps)
    pr = c.nodes[1].r.tracker.progress[2]
    assert pr.state == ProgressState.REPLICATE and pr.inflights.full()
    c.stabilize()
    assert c.nodes[2].applied == [b"%d" % i for i in range(10)]


def test_max_size_per_msg_batches() -> None:
    c = elected(2, max_size_per_msg=1 << 20)
    c.isolate(1)
    for i in range(50):
        c.propose(1, b"%d" % i)
    c.process_ready(1)
    c.heal()
    c.tick(1)  # heartbeat -> response -> one append carrying all 50 entries
    c.stabilize()
    assert len(c.nodes[2].applied) == 50


def test_fast_backtracking_uses_reject_hints() -> None:
    """A follower with a long divergent tail costs O(terms) round trips, not O(entries)."""
    c = elected(3)
    c.isolate(1)
    for i in range(100):  # 100 uncommitted entries on the old leader, term t
        c.propose(1, b"old%d" % i)
    c.process_ready(1)
    for _ in range(30):
        c.tick(2)
        c.tick(3)
        c.stabilize()
    assert c.nodes[2].r.state == StateType.LEADER
    c.propose(2, b"new")
    c.stabilize()
    c.heal()
    rejections = []
    c.on_ready = lambda i, rd: rejections.extend(m for m in rd.messages
                                                 if m.type == raftpb.MsgAppResp and m.reject)
    for _ in range(3):
        c.tick(2)
        c.stabilize()
    assert c.nodes[1].applied == [b"new"]
    assert len(rejections) <= 2


def test_report_unreachable_moves_to_probe() -> None:
    c = elected(3)
    assert c.nodes[1].r.tracker.progress[2].state == ProgressState.REPLICATE
    c.nodes[1].raw.report_unreachable(2)
    assert c.nodes[1].r.tracker.progress[2].state == ProgressState.PROBE


def test_step_rejects_local_messages() -> None:
    c = elected(3)
    with pytest.raises(StepLocalMsgError):
        c.nodes[2].raw.step(msg(raftpb.MsgHup, 1, 2))


def test_responses_from_unknown_peers_are_ignored() -> None:
    c = elected(3)
    c.nodes[1].raw.step(msg(raftpb.MsgAppResp, 9, 1, term=c.nodes[1].r.term, index=5))
    assert 9 not in c.nodes[1].r.tracker.progress


# -- the Ready contract and the RawNode surface ---------------------------------------------------------------------

def test_ready_twice_without_advance_raises() -> None:
    c = new_cluster(3)
    raw = c.nodes[1].raw
    assert raw.has_ready()
    rd = raw.ready()
    assert not raw.has_ready()
    with pytest.raises(ReadyNotAdvancedError):
        raw.ready()
    raw.advance(rd)
    with pytest.raises(ReadyNotAdvancedError):
        raw.advance(rd)


def test_bootstrap_ready_contents() -> None:
    st = MemoryStorage()
    raw = RawNode(Config(id=1, storage=st, rand=random.Random(1)))
    raw.bootstrap([1, 2, 3])
    rd = raw.ready()
    assert rd.hard_state is not None and (rd.hard_state.term, rd.hard_state.commit) == (1, 3)
    assert [e.index for e in rd.entries] == [1, 2, 3]
    assert [e.index for e in rd.committed_entries] == [1, 2, 3]
    assert rd.must_sync
    with pytest.raises(RaftError):
        raw.bootstrap([1])  # already bootstrapped storage... or an in-flight Ready
    st.append(rd.entries)
    raw.advance(rd)
    raw2 = RawNode(Config(id=1, storage=st, rand=random.Random(1)))
    with pytest.raises(RaftError):
        raw2.bootstrap([1])


def test_messages_come_with_their_hard_state() -> None:
    """A vote response leaves in the same Ready as the hard state recording the vote (which the
    driver persists before sending)."""
    c = new_cluster(3, pre_vote=False)
    c.stabilize()
    c.nodes[1].raw.campaign()
    c.process_ready(1)
    c.deliver(2)
    rd = c.nodes[2].raw.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == 1 and rd.must_sync
    assert [m.type for m in rd.messages] == [raftpb.MsgVoteResp]
    c.nodes[2].raw.advance(rd)


def test_committed_entries_respect_max_committed_size_per_ready() -> None:
    c = elected(1, max_committed_size_per_ready=1)
    for i in range(5):
        c.propose(1, b"%d" % i)
    sizes = []
    c.on_ready = lambda i, rd: sizes.append(len(rd.committed_entries))
    c.stabilize()
    assert c.nodes[1].applied == [b"%d" % i for i in range(5)]
    assert max(sizes) == 1


def test_status() -> None:
    c = elected(3)
    st = c.nodes[1].raw.status()
    assert st.lead == 1 and st.raft_state == StateType.LEADER
    assert sorted(st.progress) == [1, 2, 3]
    assert list(st.config.voters) == [1, 2, 3]
    assert c.nodes[2].raw.status().progress == {}


@pytest.mark.parametrize("bad", [
    {"id": 0}, {"heartbeat_tick": 0}, {"election_tick": 1}, {"max_inflight_msgs": 0},
    {"read_only_option": ReadOnlyOption.LEASE_BASED, "check_quorum": False}, {"storage": None},
])
def test_config_validation(bad: dict[str, object]) -> None:
    kw: dict[str, object] = {"id": 1, "storage": MemoryStorage(), "election_tick": 10, "heartbeat_tick": 1}
    kw.update(bad)
    with pytest.raises(ConfigError):
        RawNode(Config(**kw))  # type: ignore[arg-type]


def test_determinism_same_seed_same_history() -> None:
    def run() -> list[tuple[int, int]]:
        c = new_cluster(3, pre_vote=True, check_quorum=True)
        c.stabilize()
        trace = []
        for _ in range(300):
            for i in sorted(c.nodes):
                c.tick(i)
            c.stabilize()
            trace.append((c.leader(), c.nodes[1].r.term))
        return trace

    assert run() == run()
