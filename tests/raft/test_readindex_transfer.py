"""ReadIndex (safe and lease-based) and leader transfer."""

from __future__ import annotations

import pytest

from petcd.raft import ProposalDroppedError, ReadOnlyOption, ReadState, StateType

from .harness import Cluster, new_cluster
from .test_features import elected

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
    c = new_cluster(3, pre_vote=False)
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


