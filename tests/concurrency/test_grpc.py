"""Every Lock and Election RPC and error, against real etcd 3.5.1 and petcd (both client modes).

Each scenario runs the same calls on both servers and compares the normalised outcomes
(``recording``). Waiting calls run as futures; a scenario waits for the key a waiter puts before it
goes on, so the order of events is the same on both servers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.v3electionpb import v3election_pb2 as epb
from petcd.proto.v3lockpb import v3lock_pb2 as lockpb
from tests.concurrency.recording import Client, Observer, Recorder, assert_same
from tests.harness import Server

Scenario = Callable[[Recorder, Client, bytes], None]
T = 20.0  # per-call timeout


def lock_req(name: bytes, lease: int) -> lockpb.LockRequest:
    return lockpb.LockRequest(name=name, lease=lease)


def lock_basics(r: Recorder, c: Client, p: bytes) -> None:
    r.call("lock, lease unknown", lambda: c.lock.Lock(lock_req(p + b"m", 12345), timeout=T))
    lease = c.grant(60)
    r.lease(lease)
    got = r.call("lock", lambda: c.lock.Lock(lock_req(p + b"m", lease), timeout=T))
    assert got is not None
    r.call("lock again, same lease", lambda: c.lock.Lock(lock_req(p + b"m", lease), timeout=T))
    r.call("the lock key", lambda: c.kv.Range(pb.RangeRequest(key=got.key), timeout=T))
    r.call("unlock", lambda: c.lock.Unlock(lockpb.UnlockRequest(key=got.key), timeout=T))
    r.call("unlock again", lambda: c.lock.Unlock(lockpb.UnlockRequest(key=got.key), timeout=T))
    r.call("unlock, no key", lambda: c.lock.Unlock(lockpb.UnlockRequest(), timeout=T))
    zero = r.call("lock, lease 0", lambda: c.lock.Lock(lock_req(p + b"z", 0), timeout=T))
    assert zero is not None
    kv = c.kv.Range(pb.RangeRequest(key=zero.key), timeout=T).kvs[0]
    ttl = c.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=kv.lease), timeout=T)
    r.note("lease 0 got a lease of", f"{r.lease(kv.lease)} grantedTTL={ttl.grantedTTL}")
    r.call("lock, empty name", lambda: c.lock.Lock(lock_req(b"", lease), timeout=T))
    gone = c.grant(60)
    c.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=gone), timeout=T)
    r.call("lock, revoked lease", lambda: c.lock.Lock(lock_req(p + b"m", gone), timeout=T))
    r.call("lock, negative lease", lambda: c.lock.Lock(lock_req(p + b"m", -5), timeout=T))
    r.call("lock, name with 0xff", lambda: c.lock.Lock(lock_req(p + b"\xff\xff", lease), timeout=T))
    r.note("revision at the end", r.relrev())


def lock_contention(r: Recorder, c: Client, p: bytes) -> None:
    first, second = c.grant(60), c.grant(60)
    r.lease(first), r.lease(second)
    a = r.call("A locks", lambda: c.lock.Lock(lock_req(p + b"m", first), timeout=T))
    assert a is not None
    waiting = c.lock.Lock.future(lock_req(p + b"m", second), timeout=T)
    c.wait_keys(p + b"m/", 2)
    r.note("B still waiting", not waiting.done())
    c.kv.Put(pb.PutRequest(key=p + b"other", value=b"1"), timeout=T)
    time.sleep(0.2)
    r.note("B waiting after an unrelated put", not waiting.done())
    r.call("A unlocks", lambda: c.lock.Unlock(lockpb.UnlockRequest(key=a.key), timeout=T))
    b = r.outcome("B gets the lock", waiting)
    assert b is not None
    r.call("B unlocks", lambda: c.lock.Unlock(lockpb.UnlockRequest(key=b.key), timeout=T))


def lock_cancelled(r: Recorder, c: Client, p: bytes) -> None:
    holder, waiter = c.grant(60), c.grant(60)
    r.lease(holder), r.lease(waiter)
    r.call("A locks", lambda: c.lock.Lock(lock_req(p + b"m", holder), timeout=T))
    # a deadline while waiting: the waiter's key is deleted
    r.call("B with a deadline", lambda: c.lock.Lock(lock_req(p + b"m", waiter), timeout=1.5))
    c.wait_keys(p + b"m/", 1)
    r.call("keys after the deadline", lambda: c.kv.Range(pb.RangeRequest(key=p + b"m/", range_end=p + b"m0")))
    # the client cancels while waiting: the same
    fut = c.lock.Lock.future(lock_req(p + b"m", waiter), timeout=T)
    c.wait_keys(p + b"m/", 2)
    fut.cancel()
    c.wait_keys(p + b"m/", 1)
    r.call("keys after the cancel", lambda: c.kv.Range(pb.RangeRequest(key=p + b"m/", range_end=p + b"m0")))


def lock_leases_expire(r: Recorder, c: Client, p: bytes) -> None:
    holder = c.grant(60)
    short = c.grant(2)
    r.lease(holder), r.lease(short)
    a = r.call("A locks", lambda: c.lock.Lock(lock_req(p + b"m", holder), timeout=T))
    assert a is not None
    waiting = c.lock.Lock.future(lock_req(p + b"m", short), timeout=T)
    c.wait_keys(p + b"m/", 2)
    c.wait_keys(p + b"m/", 1)  # the waiter's lease ran out
    r.call("A unlocks", lambda: c.lock.Unlock(lockpb.UnlockRequest(key=a.key), timeout=T))
    r.outcome("the waiter whose lease expired", waiting)
    # a holder's lease running out releases the lock
    short2 = c.grant(2)
    r.lease(short2)
    r.call("C locks with a short lease", lambda: c.lock.Lock(lock_req(p + b"n", short2), timeout=T))
    r.call("D gets it once C's lease expires", lambda: c.lock.Lock(lock_req(p + b"n", holder), timeout=T))


def election_basics(r: Recorder, c: Client, p: bytes) -> None:
    name = p + b"e"
    r.call("leader of nobody", lambda: c.election.Leader(epb.LeaderRequest(name=name), timeout=T))
    r.call("campaign, lease unknown", lambda: c.election.Campaign(
        epb.CampaignRequest(name=name, lease=999, value=b"v"), timeout=T))
    lease = c.grant(60)
    r.lease(lease)
    won = r.call("campaign", lambda: c.election.Campaign(
        epb.CampaignRequest(name=name, lease=lease, value=b"v1"), timeout=T))
    assert won is not None
    ldr = won.leader
    r.call("campaign again, new value", lambda: c.election.Campaign(
        epb.CampaignRequest(name=name, lease=lease, value=b"v2"), timeout=T))
    r.call("leader", lambda: c.election.Leader(epb.LeaderRequest(name=name), timeout=T))
    r.call("proclaim", lambda: c.election.Proclaim(epb.ProclaimRequest(leader=ldr, value=b"v3"), timeout=T))
    r.call("proclaim, no leader", lambda: c.election.Proclaim(epb.ProclaimRequest(value=b"v3"), timeout=T))
    stale = epb.LeaderKey()
    stale.CopyFrom(ldr)
    stale.rev = 1
    r.call("proclaim, other rev", lambda: c.election.Proclaim(epb.ProclaimRequest(leader=stale, value=b"x"), timeout=T))
    r.call("resign, other rev", lambda: c.election.Resign(epb.ResignRequest(leader=stale), timeout=T))
    r.call("resign, no leader", lambda: c.election.Resign(epb.ResignRequest(), timeout=T))
    r.call("leader, unchanged", lambda: c.election.Leader(epb.LeaderRequest(name=name), timeout=T))
    r.call("resign", lambda: c.election.Resign(epb.ResignRequest(leader=ldr), timeout=T))
    r.call("resign again", lambda: c.election.Resign(epb.ResignRequest(leader=ldr), timeout=T))
    r.call("proclaim after resign", lambda: c.election.Proclaim(
        epb.ProclaimRequest(leader=ldr, value=b"v4"), timeout=T))
    r.call("leader after resign", lambda: c.election.Leader(epb.LeaderRequest(name=name), timeout=T))
    r.call("campaign, lease 0", lambda: c.election.Campaign(
        epb.CampaignRequest(name=p + b"z", lease=0, value=b"v"), timeout=T))
    r.call("proclaim, empty key", lambda: c.election.Proclaim(
        epb.ProclaimRequest(leader=epb.LeaderKey(lease=lease), value=b"v"), timeout=T))
    r.call("resign, empty key", lambda: c.election.Resign(
        epb.ResignRequest(leader=epb.LeaderKey(lease=lease)), timeout=T))
    nokey = epb.LeaderKey(name=p + b"x", key=p + b"x/1", rev=0, lease=0)
    r.call("proclaim, lease 0, key absent", lambda: c.election.Proclaim(
        epb.ProclaimRequest(leader=nokey, value=b"v"), timeout=T))
    r.call("the key it put", lambda: c.kv.Range(pb.RangeRequest(key=p + b"x/1"), timeout=T))
    r.call("resign, lease unknown", lambda: c.election.Resign(
        epb.ResignRequest(leader=epb.LeaderKey(name=p + b"x", key=p + b"x/1", rev=5, lease=777)), timeout=T))
    r.call("leader, empty name", lambda: c.election.Leader(epb.LeaderRequest(name=b""), timeout=T))
    r.note("revision at the end", r.relrev())


def election_contention(r: Recorder, c: Client, p: bytes) -> None:
    name = p + b"e"
    obs = Observer(c, name)
    time.sleep(0.3)  # the observer is watching (etcd gives no sign of it)
    seen = 0
    # any key under the prefix counts as a leader for Observe
    c.kv.Put(pb.PutRequest(key=name + b"/other", value=b"x"), timeout=T)
    obs.wait_for(seen := seen + 1)
    c.kv.DeleteRange(pb.DeleteRangeRequest(key=name + b"/other"), timeout=T)
    first, second = c.grant(60), c.grant(2)
    r.lease(first), r.lease(second)
    a = r.call("A campaigns", lambda: c.election.Campaign(
        epb.CampaignRequest(name=name, lease=first, value=b"a1"), timeout=T))
    assert a is not None
    obs.wait_for(seen := seen + 1)
    waiting = c.election.Campaign.future(epb.CampaignRequest(name=name, lease=second, value=b"b1"), timeout=T)
    c.wait_keys(name + b"/", 2)
    r.note("B waits", not waiting.done())
    r.call("A proclaims", lambda: c.election.Proclaim(epb.ProclaimRequest(leader=a.leader, value=b"a2"), timeout=T))
    obs.wait_for(seen := seen + 1)
    r.call("A proclaims the same", lambda: c.election.Proclaim(
        epb.ProclaimRequest(leader=a.leader, value=b"a2"), timeout=T))
    obs.wait_for(seen := seen + 1)
    r.call("A resigns", lambda: c.election.Resign(epb.ResignRequest(leader=a.leader), timeout=T))
    r.outcome("B is elected", waiting)
    obs.wait_for(seen := seen + 1)
    r.call("leader", lambda: c.election.Leader(epb.LeaderRequest(name=name), timeout=T))
    c.wait_keys(name + b"/", 0)  # B's lease expires
    r.call("leader after B's lease expired", lambda: c.election.Leader(epb.LeaderRequest(name=name), timeout=T))
    r.call("C campaigns", lambda: c.election.Campaign(
        epb.CampaignRequest(name=name, lease=first, value=b"c1"), timeout=T))
    obs.wait_for(seen := seen + 1)
    # a waiting candidate that gives up resigns
    third = c.grant(60)
    r.lease(third)
    r.call("D with a deadline", lambda: c.election.Campaign(
        epb.CampaignRequest(name=name, lease=third, value=b"d"), timeout=1.5))
    c.wait_keys(name + b"/", 1)
    fut = c.election.Campaign.future(epb.CampaignRequest(name=name, lease=third, value=b"d"), timeout=T)
    c.wait_keys(name + b"/", 2)
    fut.cancel()
    c.wait_keys(name + b"/", 1)
    r.call("candidates after D gave up", lambda: c.kv.Range(
        pb.RangeRequest(key=name + b"/", range_end=name + b"0"), timeout=T))
    time.sleep(0.3)  # nothing more may reach the observer
    obs.cancel()
    for i, msg in enumerate(obs.messages):
        r.note(f"observed {i}", msg)
    r.note("observer ended", obs.end)
    # a new observer starts with the current leader; one of an empty election waits
    late = Observer(c, name, timeout=2.0)
    empty = Observer(c, p + b"nobody", timeout=1.0)
    late.wait_for(1)
    late._thread.join(10)
    empty._thread.join(10)
    for i, msg in enumerate(late.messages):
        r.note(f"late observer {i}", msg)
    r.note("late observer ended", late.end)
    r.note("empty election observer", f"{len(empty.messages)} messages, {empty.end}")


SCENARIOS: dict[str, Scenario] = {
    f.__name__: f
    for f in (lock_basics, lock_contention, lock_cancelled, lock_leases_expire, election_basics,
              election_contention)
}
_expected: dict[str, list[str]] = {}


def run(server: Server, name: str) -> list[str]:
    client = Client(server)
    try:
        rec = Recorder(client)
        SCENARIOS[name](rec, client, f"{name}/".encode())
        return rec.lines
    finally:
        client.close()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_as_etcd(name: str, etcd351: Server, petcd: Server) -> None:
    if name not in _expected:
        _expected[name] = run(etcd351, name)
    assert_same(_expected[name], run(petcd, name), f"petcd ({petcd.label})")
