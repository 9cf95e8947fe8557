"""Leases on a running server (real etcd and the server under test, each in turn): expiry deletes
the attached keys in one revision, keep-alive streams keep leases alive, and a lease survives a
restart and still expires afterwards. These run in real time with etcd's minimum TTL (2 s)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import Server, ServerGroup

CALL_TIMEOUT = 10.0
EXPIRY_DEADLINE = 15.0  # TTL + election timeout + expiry loop, with room for a loaded machine


class Client:
    def __init__(self, server: Server) -> None:
        self.channel = grpc.insecure_channel(server.endpoint)
        self.kv = pb_grpc.KVStub(self.channel)  # type: ignore[no-untyped-call]
        self.lease = pb_grpc.LeaseStub(self.channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.channel.close()

    def grant(self, ttl: int) -> int:
        resp = self.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=ttl), timeout=CALL_TIMEOUT)
        return int(resp.ID)

    def put(self, key: bytes, lease: int = 0) -> int:
        resp = self.kv.Put(pb.PutRequest(key=key, value=b"v", lease=lease), timeout=CALL_TIMEOUT)
        return int(resp.header.revision)

    def keys(self, prefix: bytes) -> tuple[list[bytes], int]:
        resp = self.kv.Range(pb.RangeRequest(key=prefix, range_end=prefix[:-1] + b"0"), timeout=CALL_TIMEOUT)
        return [kv.key for kv in resp.kvs], int(resp.header.revision)

    def ttl(self, lease_id: int) -> pb.LeaseTimeToLiveResponse:
        resp: pb.LeaseTimeToLiveResponse = self.lease.LeaseTimeToLive(
            pb.LeaseTimeToLiveRequest(ID=lease_id, keys=True), timeout=CALL_TIMEOUT
        )
        return resp

    def keep_alive(self, *ids: int) -> list[pb.LeaseKeepAliveResponse]:
        reqs = iter([pb.LeaseKeepAliveRequest(ID=i) for i in ids])
        return list(self.lease.LeaseKeepAlive(reqs, timeout=CALL_TIMEOUT))

    def wait_gone(self, lease_id: int, deadline: float = EXPIRY_DEADLINE) -> float:
        """Seconds until TimeToLive says the lease is gone."""
        start = time.monotonic()
        while self.ttl(lease_id).TTL != -1:
            if time.monotonic() - start > deadline:
                raise AssertionError(f"lease {lease_id:x} still there after {deadline} s")
            time.sleep(0.1)
        return time.monotonic() - start


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    c = Client(server)
    yield c
    c.close()


def test_expiry_deletes_the_attached_keys_in_one_revision(client: Client, server: Server) -> None:
    lease = client.grant(2)
    plain = client.grant(600)
    client.put(b"expiry/a", lease)
    client.put(b"expiry/b", lease)
    client.put(b"expiry/c", plain)
    last = client.put(b"expiry/d")
    client.wait_gone(lease)
    keys, rev = client.keys(b"expiry/")
    assert keys == [b"expiry/c", b"expiry/d"]
    assert rev == last + 1, "the two deletes must share one revision"
    assert client.ttl(plain).keys == [b"expiry/c"]


def test_keep_alive_stream_keeps_a_lease_alive(client: Client, server: Server) -> None:
    lease = client.grant(2)
    client.put(b"ka/k", lease)
    start = time.monotonic()
    while time.monotonic() - start < 4.0:  # twice the TTL
        (resp,) = client.keep_alive(lease)
        assert (resp.ID, resp.TTL) == (lease, 2)
        time.sleep(0.5)
    assert client.keys(b"ka/")[0] == [b"ka/k"]
    # one stream, several requests, a missing lease answered with TTL 0 and the stream going on
    answers = client.keep_alive(lease, 0x7FFF_0BAD, lease)
    assert [(r.ID, r.TTL) for r in answers] == [(lease, 2), (0x7FFF_0BAD, 0), (lease, 2)]
    client.wait_gone(lease)
    assert client.keys(b"ka/")[0] == []
    assert [(r.ID, r.TTL) for r in client.keep_alive(lease)] == [(lease, 0)]


@pytest.mark.parametrize("kind", ["etcd", "target"])
def test_a_lease_survives_a_crash_and_expires_after_it(kind: str, servers: ServerGroup) -> None:
    srv = servers.start("etcd") if kind == "etcd" else servers.start_target()
    c = Client(srv)
    lease = c.grant(5)
    short = c.grant(2)
    c.put(b"r/k", lease)
    c.put(b"r/s", short)
    c.close()
    srv.kill9()  # a crash: what was acknowledged must come back from the WAL and backend
    time.sleep(3)  # past the short lease's TTL while the server is down
    srv.start()
    c = Client(srv)
    try:
        # restored at its full TTL: both are still there, and keep-alive works on them
        assert c.ttl(lease).grantedTTL == 5
        assert sorted(c.keys(b"r/")[0]) == [b"r/k", b"r/s"]
        assert [(r.ID, r.TTL) for r in c.keep_alive(lease)] == [(lease, 5)]
        # and the clock runs again: without keep-alives both expire with their keys
        c.wait_gone(short)
        c.wait_gone(lease)
        assert c.keys(b"r/")[0] == []
    finally:
        c.close()


@pytest.mark.parametrize("kind", ["etcd", "target"])
def test_keep_alive_keeps_a_lease_alive_across_a_restart(kind: str, servers: ServerGroup) -> None:
    srv = servers.start("etcd") if kind == "etcd" else servers.start_target()
    c = Client(srv)
    lease = c.grant(3)
    c.put(b"kar/k", lease)
    for _ in range(3):
        assert [(r.ID, r.TTL) for r in c.keep_alive(lease)] == [(lease, 3)]
        time.sleep(0.5)
    c.close()
    srv.stop()
    srv.start()
    c = Client(srv)
    try:
        start = time.monotonic()
        while time.monotonic() - start < 7.0:  # more than twice the TTL, kept alive all along
            assert [(r.ID, r.TTL) for r in c.keep_alive(lease)] == [(lease, 3)]
            time.sleep(0.5)
        assert c.keys(b"kar/")[0] == [b"kar/k"]
        c.wait_gone(lease)
        assert c.keys(b"kar/")[0] == []
    finally:
        c.close()
