"""Membership changes (add, remove, learners, promotion) and snapshots."""

from __future__ import annotations

import pytest

from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.raft import ConfChangeError, ProgressState, StateType
from petcd.raft.leader import maybe_send_append

from .harness import encode_state
from .rafttest import make_leader, msg, raft, storage
from .test_features import elected

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
    r = raft(1, st=storage((1, 2, 3), log=[(1, 1)]))
    make_leader(r)
    # pending_conf_index covers the whole log at election (index 1), which is not applied yet.
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


def test_new_member_accepts_snapshot_older_than_its_addition() -> None:
    """The leader's snapshot may predate the change that added the recipient; the recipient
    installs it and learns of its own membership from the entries that follow."""
    c = elected(3)
    c.propose(1, b"x")
    c.stabilize()
    n1 = c.nodes[1]
    n1.storage.create_snapshot(n1.applied_index, n1.conf_state, encode_state(n1.applied))
    n1.storage.compact(n1.applied_index)
    c.add(4)
    n1.raw.propose_conf_change(cc(raftpb.ConfChangeAddLearnerNode, 4))
    c.stabilize()
    c.tick(1)
    c.stabilize()
    assert c.nodes[4].r.is_learner and c.nodes[4].applied == [b"x"]
    assert list(n1.storage.snapshot().metadata.conf_state.learners) == []


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




def test_demoting_the_leader_steps_it_down() -> None:
    c = elected(3)
    c.nodes[1].raw.propose_conf_change(cc(raftpb.ConfChangeAddLearnerNode, 1))
    c.stabilize()
    assert c.nodes[1].r.is_learner and c.nodes[1].r.state == StateType.FOLLOWER
    assert c.leader() in (2, 3)


def test_learner_ignores_timeout_now() -> None:
    c = elected(2)
    c.add(3)
    c.nodes[1].raw.propose_conf_change(cc(raftpb.ConfChangeAddLearnerNode, 3))
    c.stabilize()
    r3 = c.nodes[3].r
    r3.step(msg(raftpb.MsgTimeoutNow, 1, 3, term=r3.term))
    assert r3.state == StateType.FOLLOWER and not r3.msgs


def test_report_snapshot_success_resumes_replication() -> None:
    c = elected(3)
    c.report_snapshots = False
    c.isolate(3)
    c.propose(1, b"x")
    c.stabilize()
    n1 = c.nodes[1]
    n1.storage.create_snapshot(n1.applied_index, n1.conf_state, encode_state(n1.applied))
    n1.storage.compact(n1.applied_index)
    c.heal()
    snaps: list[raftpb.Message] = []
    c.on_ready = lambda i, rd: snaps.extend(m for m in rd.messages if m.type == raftpb.MsgSnap)
    c.tick(1)
    for _ in range(10):
        for i in (1, 2, 3):
            c.process_ready(i)
        if snaps:
            break
        c.deliver()
    # The snapshot is in flight; the transport has not reported on it yet.
    pr = n1.r.tracker.progress[3]
    assert pr.state == ProgressState.SNAPSHOT
    n1.raw.report_snapshot(3, failed=False)
    assert pr.state == ProgressState.PROBE and pr.next == n1.applied_index + 1 and pr.is_paused()
    c.stabilize()
    assert c.nodes[3].applied == [b"x"] and pr.state == ProgressState.REPLICATE


def test_heartbeat_commit_capped_by_follower_match() -> None:
    c = elected(3)
    c.isolate(3)
    c.propose(1, b"x")
    c.stabilize()
    c.heal()
    beats = []
    c.on_ready = lambda i, rd: beats.extend(m for m in rd.messages if m.type == raftpb.MsgHeartbeat)
    c.tick(1)
    c.process_ready(1)
    commit = c.nodes[1].r.raft_log.committed
    by_to = {m.to: m.commit for m in beats}
    assert by_to[2] == commit and by_to[3] < commit


def test_restart_with_hard_state_older_than_snapshot() -> None:
    """A hard state whose commit index predates the (synced) snapshot is not an error."""
    c = elected(3)
    c.propose(1, b"x")
    c.stabilize()
    n2 = c.nodes[2]
    n2.storage.create_snapshot(n2.applied_index, n2.conf_state, encode_state(n2.applied))
    n2.storage.compact(n2.applied_index)
    hs = n2.storage.hard_state()
    n2.storage.set_hard_state(raftpb.HardState(term=hs.term, vote=hs.vote, commit=1))
    r = c.restart(2).r
    assert r.raft_log.committed == n2.applied_index
