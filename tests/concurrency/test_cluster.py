"""Lock and Election across a three-member petcd cluster: a waiter on one member is woken by an
unlock sent to another (its member learns of the delete through raft and its own watchers)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from petcd.proto.v3electionpb import v3election_pb2 as epb
from petcd.proto.v3lockpb import v3lock_pb2 as lockpb
from tests.concurrency.recording import Client, Observer
from tests.harness import Server, ServerGroup

T = 20.0


@pytest.fixture(scope="module")
def members(package_servers: ServerGroup) -> list[Server]:
    return package_servers.start_cluster("petcd", 3, label="petcd-cluster")


@pytest.fixture
def clients(members: list[Server]) -> Iterator[list[Client]]:
    clients = [Client(m) for m in members]
    yield clients
    for c in clients:
        c.close()


def test_lock_handed_over_between_members(clients: list[Client]) -> None:
    one, two, three = clients
    first, second = one.grant(60), two.grant(60)
    held = one.lock.Lock(lockpb.LockRequest(name=b"cl/m", lease=first), timeout=T)
    waiting = two.lock.Lock.future(lockpb.LockRequest(name=b"cl/m", lease=second), timeout=T)
    three.wait_keys(b"cl/m/", 2)
    assert not waiting.done()
    unlocked = three.lock.Unlock(lockpb.UnlockRequest(key=held.key), timeout=T)
    got = waiting.result(timeout=T)
    assert got.key == b"cl/m/" + format(second, "x").encode()
    assert got.header.revision >= unlocked.header.revision
    two.lock.Unlock(lockpb.UnlockRequest(key=got.key), timeout=T)
    one.wait_keys(b"cl/m/", 0)


def test_observer_on_one_member_sees_leaders_elected_on_others(clients: list[Client]) -> None:
    one, two, three = clients
    obs = Observer(three, b"cl/e", timeout=T)
    try:
        a = one.election.Campaign(epb.CampaignRequest(name=b"cl/e", lease=one.grant(60), value=b"a"), timeout=T)
        obs.wait_for(1)
        waiting = two.election.Campaign.future(
            epb.CampaignRequest(name=b"cl/e", lease=two.grant(60), value=b"b"), timeout=T)
        three.wait_keys(b"cl/e/", 2)
        one.election.Resign(epb.ResignRequest(leader=a.leader), timeout=T)
        b = waiting.result(timeout=T)
        obs.wait_for(2)
        assert [m.kv.value for m in obs.messages] == [b"a", b"b"]
        assert obs.messages[1].kv.key == b.leader.key
        leader = three.election.Leader(epb.LeaderRequest(name=b"cl/e"), timeout=T)
        assert leader.kv.key == b.leader.key
    finally:
        obs.cancel()
