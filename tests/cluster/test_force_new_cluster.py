"""--force-new-cluster: a member of a three-member cluster whose peers are gone restarts alone,
keeping its data, as etcd does (real petcd processes)."""

from __future__ import annotations

import time

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import Server, ServerGroup

CALL = 10.0


def _put(server: Server, key: bytes, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    with grpc.insecure_channel(server.endpoint) as ch:
        kv = pb_grpc.KVStub(ch)  # type: ignore[no-untyped-call]
        while True:
            try:
                kv.Put(pb.PutRequest(key=key, value=b"v"), timeout=CALL)
                return
            except grpc.RpcError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)


def _state(server: Server) -> tuple[list[int], list[bytes], int, int]:
    with grpc.insecure_channel(server.endpoint) as ch:
        members = pb_grpc.ClusterStub(ch).MemberList(pb.MemberListRequest(), timeout=CALL)  # type: ignore[no-untyped-call]
        kvs = pb_grpc.KVStub(ch).Range(pb.RangeRequest(key=b"k", range_end=b"l"), timeout=CALL)  # type: ignore[no-untyped-call]
        status = pb_grpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=CALL)  # type: ignore[no-untyped-call]
    return ([m.ID for m in members.members], [kv.key for kv in kvs.kvs], status.leader,
            status.header.cluster_id)


def test_force_new_cluster_keeps_the_data_and_drops_the_peers(servers: ServerGroup) -> None:
    members = servers.start_cluster("petcd", 3, extra_args=("--client-frontends=0",))
    _put(members[0], b"k1")
    _put(members[1], b"k2")
    ids_before, _keys, _leader, cluster = _state(members[0])
    assert len(ids_before) == 3
    for m in members:
        m.stop()
    survivor = members[0]
    survivor.extra_args = (*survivor.extra_args, "--force-new-cluster")
    survivor.start()
    ids, keys, leader, cluster_after = _state(survivor)
    me = survivor.ids().member_id
    assert ids == [me] and leader == me and cluster_after == cluster
    assert keys == [b"k1", b"k2"]
    _put(survivor, b"k3")
    # and it stays a one-member cluster without the flag
    survivor.extra_args = tuple(a for a in survivor.extra_args if a != "--force-new-cluster")
    survivor.restart()
    ids, keys, leader, _ = _state(survivor)
    assert ids == [me] and leader == me and keys == [b"k1", b"k2", b"k3"]
