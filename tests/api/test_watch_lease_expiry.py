"""A lease that expires deletes its keys, and a watcher on them sees the deletes (one revision),
on real etcd and on petcd alike."""

from __future__ import annotations

import time

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.api.watch_client import WatchClient, events
from tests.harness import Server


def test_watchers_see_the_deletes_of_an_expired_lease(server: Server) -> None:
    w = WatchClient(server.endpoint)
    try:
        lease = pb_grpc.LeaseStub(w.channel)  # type: ignore[no-untyped-call]
        lease_id = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=2), timeout=10).ID
        w.created(b"wexp/", b"wexp0")
        revs = [
            w.kv.Put(pb.PutRequest(key=k, value=b"v", lease=lease_id), timeout=10).header.revision
            for k in (b"wexp/a", b"wexp/b")
        ]
        puts = []
        while len(puts) < 2:
            puts += events(w.next())
        assert puts == [("PUT", b"wexp/a", revs[0]), ("PUT", b"wexp/b", revs[1])]
        deadline = time.monotonic() + 20
        deletes: list[tuple[str, bytes, int]] = []
        while len(deletes) < 2 and time.monotonic() < deadline:
            resp = w.next(timeout=20)
            batch = events(resp)
            if batch:
                assert len(batch) == 2, "a revoke's deletes arrive together in one response"
            deletes += batch
        assert [(t, k) for t, k, _ in deletes] == [("DELETE", b"wexp/a"), ("DELETE", b"wexp/b")]
        assert deletes[0][2] == deletes[1][2] == revs[1] + 1
    finally:
        w.close()
