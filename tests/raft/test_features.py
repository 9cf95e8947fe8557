"""Feature tests: PreVote, CheckQuorum, learners, membership, snapshots, ReadIndex, leader
transfer, flow control, the uncommitted-size limit, proposal forwarding and the Ready contract."""

from __future__ import annotations

import random

import pytest

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import (
    Config,
    ConfChangeError,
    ConfigError,
    MemoryStorage,
    NoLeaderError,
    ProgressState,
    ProposalDroppedError,
    RaftError,
    RawNode,
    ReadOnlyOption,
    ReadyNotAdvancedError,
    ReadState,
    StateType,
    StepLocalMsgError,
)

from .harness import Cluster, encode_state, new_cluster
from .rafttest import make_leader, msg, raft, take


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
    c.nodes[2].raw.force_campaign() if False else c.nodes[2].r.campaign(b"CampaignElection")
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
    c.tick(2, 30)
    c.stabilize()
    assert c.leader() == 2
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


# -- membership -----------------------------------------------------------------------------------------------

def cc(t: raftpb.ConfChangeType, node: int) -> raftpb.ConfChange:
    return raftpb.ConfChange(type=t, node_id=node)


def test_add_node_catches_up_and_votes() -> None:
    c = elected(3)
    c.propose(1, b"before")
    c.stabilize()
    c.add(4)
    c.nodes[1].raw.propose_conf_change(cc(raftpb.ConfChangeAddNode, 4))
    c.stabilize()
    assert c.nodes[4].applied == [b"before"]
    assert sorted(c.nodes[4].conf_state.voters) == [1, 2, 3, 4]
    # Now 4 voters: a quorum needs 3 of them.
    c.isolate(3)
    c.isolate(4)
    c.propose(1, b"needs-three")
    c.stabilize()
    assert c.nodes[1].applied[-1] == b"before"
    c.heal()
    c.tick(1)
    c.stabilize()
    assert c.nodes[1].applied[-1] == b"needs-three"


def test_conf_change_takes_effect_when_applied() -> None:
    c = elected(3)
    c.nodes[1].raw.propose_conf_change(cc(raftpb.ConfChangeRemoveNode, 3))
    c.process_ready(1)
    assert 3 in c.nodes[1].r.tracker.voters  # appended, not applied
    c.stabilize()
    assert 3 not in c.nodes[1].r.tracker.voters


def test_only_one_pending_conf_change() -> None:
    c = elected(3)
    c.nodes[1].raw.propose_conf_change(cc(raftpb.ConfChangeRemoveNode, 3))
    c.nodes[1].raw.propose_conf_change(cc(raftpb.ConfChangeRemoveNode, 2))
    c.stabilize()
    ents = c.nodes[1].r.raft_log.all_entries()
    assert ents[-1].type == raftpb.EntryNormal and ents[-1].data == b""
    assert sorted(c.nodes[1].r.tracker.voters) == [1, 2]
    # Once applied, the next change is accepted.
    c.nodes[1].raw.propose_conf_change(cc(raftpb.ConfChangeAddLearnerNode, 3))
    c.stabilize()
    assert sorted(c.nodes[1].r.tracker.learners) == [3]


def test_new_leader_refuses_conf_change_until_applied() -> None:
    r = raft(1)
    make_leader(r)
    # pending_conf_index covers the whole log at election: nothing applied yet.
    r.step(msg(raftpb.MsgProp, 1, 1, entries=[raftpb.Entry(type=raftpb.EntryConfChange,
                                                            data=cc(raftpb.ConfChangeRemoveNode, 2)
                                                            .SerializeToString())]))
    assert r.raft_log.unstable_entries()[-1].type == raftpb.EntryNormal


def test_remove_leader_steps_down_and_hands_over() -> None:
    c = elected(3, check_quorum=True, pre_vote=True)
    c.nodes[1].raw.propose_conf_change(cc(raftpb.ConfChangeRemoveNode, 1))
    c.stabilize()
    assert c.nodes[1].r.state == StateType.FOLLOWER
    assert c.leader() in (2, 3)
    new = c.leader()
    c.propose(new, b"after")
    c.stabilize()
    assert c.nodes[2].applied[-1] == b"after" and c.nodes[3].applied[-1] == b"after"
    # The removed node never campaigns.
    c.tick(1, 100)
    assert c.nodes[1].r.state == StateType.FOLLOWER and not c.nodes[1].r.promotable()


def test_removing_last_voter_is_refused() -> None:
    c = elected(1)
    with pytest.raises(ConfChangeError):
        c.nodes[1].raw.propose_conf_change(cc(raftpb.ConfChangeRemoveNode, 1))
    # Applied anyway (e.g. proposed under another configuration), it is a no-op everywhere.
    cs = c.nodes[1].raw.apply_conf_change(cc(raftpb.ConfChangeRemoveNode, 1))
    assert list(cs.voters) == [1]


def test_learner_never_votes_or_counts() -> None:
    c = elected(2)
    c.add(3)
    c.nodes[1].raw.propose_conf_change(cc(raftpb.ConfChangeAddLearnerNode, 3))
    c.stabilize()
    assert c.nodes[3].r.is_learner
    c.tick(3, 100)
    assert c.nodes[3].r.state == StateType.FOLLOWER  # never campaigns
    c.isolate(2)
    c.propose(1, b"x")
    c.stabilize()
    assert c.nodes[1].r.raft_log.committed < c.nodes[1].r.raft_log.last_index()
    assert c.nodes[3].r.raft_log.last_index() == c.nodes[1].r.raft_log.last_index()
    # A learner's granted vote does not count.
    r = c.nodes[1].r
    assert 3 not in r.tracker.voters


def test_promote_learner() -> None:
    c = elected(2)
    c.add(3)
    c.nodes[1].raw.propose_conf_change(cc(raftpb.ConfChangeAddLearnerNode, 3))
    c.stabilize()
    c.nodes[1].raw.propose_conf_change(cc(raftpb.ConfChangeAddNode, 3))
    c.stabilize()
    assert not c.nodes[3].r.is_learner and sorted(c.nodes[3].conf_state.voters) == [1, 2, 3]
    c.isolate(2)
    c.propose(1, b"x")
    c.stabilize()
    assert c.nodes[1].applied == [b"x"]


def test_leader_transfer_to_learner_ignored() -> None:
    c = elected(2)
    c.add(3)
    c.nodes[1].raw.propose_conf_change(cc(raftpb.ConfChangeAddLearnerNode, 3))
    c.stabilize()
    c.nodes[1].raw.transfer_leader(3)
    c.stabilize()
    assert c.leader() == 1 and c.nodes[1].r.lead_transferee == 0


# -- snapshots ------------------------------------------------------------------------------------------------

def test_snapshot_sent_to_lagging_follower() -> None:
    c = elected(3)
    c.isolate(3)
    for i in range(5):
        c.propose(1, b"%d" % i)
    c.stabilize()
    n1 = c.nodes[1]
    n1.storage.create_snapshot(n1.applied_index, n1.conf_state, encode_state(n1.applied))
    n1.storage.compact(n1.applied_index)
    c.heal()
    snaps = []
    c.on_ready = lambda i, rd: snaps.extend(m for m in rd.messages if m.type == raftpb.MsgSnap)
    c.tick(1)
    c.stabilize()
    assert len(snaps) == 1
    assert c.nodes[3].applied == [b"%d" % i for i in range(5)]
    assert c.nodes[3].storage.first_index() == n1.applied_index + 1
    c.propose(1, b"after")
    c.stabilize()
    assert c.nodes[3].applied[-1] == b"after"


def test_snapshot_not_sent_to_inactive_peer() -> None:
    c = elected(3, check_quorum=True)
    c.isolate(3)
    for i in range(3):
        c.propose(1, b"%d" % i)
    c.stabilize()
    n1 = c.nodes[1]
    n1.storage.create_snapshot(n1.applied_index, n1.conf_state, encode_state(n1.applied))
    n1.storage.compact(n1.applied_index)
    c.tick(1, n1.r.election_timeout)  # CheckQuorum round marks 3 inactive
    pr = n1.r.tracker.progress[3]
    assert not pr.recent_active
    pr.become_probe()
    assert not n1.r._step_leader.__self__ is None
    from petcd.raft.leader import maybe_send_append

    assert not maybe_send_append(n1.r, 3)


def test_follower_ignores_stale_snapshot() -> None:
    c = elected(3)
    c.propose(1, b"x")
    c.stabilize()
    r2 = c.nodes[2].r
    snap = raftpb.Snapshot()
    snap.metadata.index = 2
    snap.metadata.term = 1
    snap.metadata.conf_state.voters.extend([1, 2, 3])
    assert not r2.restore(snap)


def test_follower_restore_rejects_snapshot_without_itself() -> None:
    r = raft(2)
    snap = raftpb.Snapshot()
    snap.metadata.index = 10
    snap.metadata.term = 2
    snap.metadata.conf_state.voters.extend([1, 3])
    assert not r.restore(snap)


def test_restart_from_snapshot_and_log() -> None:
    c = elected(3)
    for i in range(4):
        c.propose(1, b"%d" % i)
    c.stabilize()
    n2 = c.nodes[2]
    n2.storage.create_snapshot(n2.applied_index - 2, n2.conf_state, encode_state(n2.applied[:-2]))
    n2.storage.compact(n2.applied_index - 2)
    c.restart(2)
    c.stabilize()
    assert c.nodes[2].applied == [b"0", b"1", b"2", b"3"]
    assert c.nodes[2].r.raft_log.applied == c.nodes[1].r.raft_log.applied


# -- ReadIndex --------------------------------------------------------------------------------------------------

def collect_reads(c: Cluster) -> list[tuple[int, ReadState]]:
    out: list[tuple[int, ReadState]] = []
    c.on_ready = lambda i, rd: out.extend((i, rs) for rs in rd.read_states)
    return out


def test_read_index_safe_on_leader_and_follower() -> None:
    c = elected(3)
    c.propose(1, b"x")
    c.stabilize()
    reads = collect_reads(c)
    c.nodes[1].raw.read_index(b"a")
    c.nodes[2].raw.read_index(b"b")
    c.stabilize()
    commit = c.nodes[1].r.raft_log.committed
    assert sorted((i, rs.index, rs.request_ctx) for i, rs in reads) == [(1, commit, b"a"), (2, commit, b"b")]


def test_read_index_needs_quorum() -> None:
    c = elected(3)
    reads = collect_reads(c)
    c.isolate(1)
    c.nodes[1].raw.read_index(b"a")
    c.stabilize()
    assert reads == []


def test_read_index_waits_for_commit_in_current_term() -> None:
    c = new_cluster(3)
    c.stabilize()
    reads = collect_reads(c)
    c.nodes[1].raw.campaign()
    c.process_ready(1)
    c.deliver()
    c.process_ready(2)
    c.process_ready(3)
    c.deliver(1)  # votes arrive: 1 is leader, its empty entry not yet committed
    assert c.nodes[1].r.state == StateType.LEADER
    c.nodes[1].raw.read_index(b"early")
    assert c.nodes[1].r.pending_read_index_messages
    c.stabilize()
    assert [(rs.index, rs.request_ctx) for _, rs in reads] == [(4, b"early")]


def test_read_index_lease_based() -> None:
    c = elected(3, check_quorum=True, read_only_option=ReadOnlyOption.LEASE_BASED)
    reads = collect_reads(c)
    c.nodes[1].raw.read_index(b"a")
    rd = c.process_ready(1)
    assert rd is not None and not rd.messages  # no heartbeat round
    assert [rs.request_ctx for _, rs in reads] == [b"a"]


def test_read_index_single_node() -> None:
    c = elected(1)
    reads = collect_reads(c)
    c.nodes[1].raw.read_index(b"solo")
    c.stabilize()
    assert [rs.request_ctx for _, rs in reads] == [b"solo"]


def test_read_index_without_leader_is_dropped() -> None:
    c = new_cluster(3)
    c.stabilize()
    reads = collect_reads(c)
    c.nodes[2].raw.read_index(b"x")
    c.stabilize()
    assert reads == []


# -- leader transfer ------------------------------------------------------------------------------------------------

def test_transfer_to_up_to_date_follower() -> None:
    c = elected(3, check_quorum=True, pre_vote=True)
    c.nodes[1].raw.transfer_leader(2)
    c.stabilize()
    assert c.leader() == 2


def test_transfer_to_lagging_follower_catches_up_first() -> None:
    c = elected(3, check_quorum=True)
    c.isolate(3)
    c.propose(1, b"x")
    c.stabilize()
    c.heal()
    c.nodes[1].raw.transfer_leader(3)
    with pytest.raises(ProposalDroppedError):
        c.propose(1, b"during")
    c.stabilize()
    assert c.leader() == 3
    assert c.nodes[3].applied == [b"x"]


def test_transfer_aborted_after_election_timeout() -> None:
    c = elected(3)
    c.isolate(3)
    c.nodes[1].raw.transfer_leader(3)
    assert c.nodes[1].r.lead_transferee == 3
    c.tick(1, c.nodes[1].r.election_timeout)
    assert c.nodes[1].r.lead_transferee == 0
    c.propose(1, b"accepted again")


def test_transfer_to_self_and_repeat_are_noops() -> None:
    c = elected(3)
    c.nodes[1].raw.transfer_leader(1)
    assert c.nodes[1].r.lead_transferee == 0
    c.isolate(3)
    c.propose(1, b"x")
    c.stabilize()
    c.nodes[1].raw.transfer_leader(3)
    c.nodes[1].raw.transfer_leader(3)
    assert c.nodes[1].r.lead_transferee == 3


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
