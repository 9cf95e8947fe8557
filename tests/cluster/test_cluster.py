"""Three-member clusters of real petcd processes: replication, losing the leader, and the
notebook's member replacement (remove, add, start empty with --initial-cluster-state=existing),
where the new member catches up from a snapshot of the leader's backend."""

from __future__ import annotations

import time

import grpc

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import Server, ServerGroup
from tests.harness.ports import free_ports

CALL = 10.0


def _stubs(server: Server) -> tuple[grpc.Channel, pb_grpc.KVStub, pb_grpc.MaintenanceStub, pb_grpc.ClusterStub]:
    ch = grpc.insecure_channel(server.endpoint)
    return ch, pb_grpc.KVStub(ch), pb_grpc.MaintenanceStub(ch), pb_grpc.ClusterStub(ch)  # type: ignore[no-untyped-call]


def _put(server: Server, key: bytes, value: bytes = b"v", deadline: float = 20.0) -> int:
    """Put, retrying while the cluster elects a leader; returns the revision."""
    end = time.monotonic() + deadline
    ch, kv, _, _ = _stubs(server)
    with ch:
        while True:
            try:
                return int(kv.Put(pb.PutRequest(key=key, value=value), timeout=CALL).header.revision)
            except grpc.RpcError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)


def _get(server: Server, prefix: bytes, serializable: bool = False) -> dict[bytes, bytes]:
    ch, kv, _, _ = _stubs(server)
    with ch:
        resp = kv.Range(pb.RangeRequest(key=prefix, range_end=prefix[:-1] + bytes([prefix[-1] + 1]),
                                        serializable=serializable), timeout=CALL)
        return {x.key: x.value for x in resp.kvs}


def _leader(members: list[Server]) -> Server:
    for m in members:
        if not m.is_running():
            continue
        ch, _, maint, _ = _stubs(m)
        with ch:
            st = maint.Status(pb.StatusRequest(), timeout=CALL)
        if st.leader == st.header.member_id:
            return m
    raise AssertionError("no leader")


def _has_leader(members: list[Server]) -> bool:
    try:
        _leader(members)
        return True
    except (AssertionError, grpc.RpcError):
        return False


def _wait_for(cond, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _add_when_healthy(cluster: pb_grpc.ClusterStub, req: pb.MemberAddRequest) -> pb.MemberAddResponse:
    """MemberAdd, retried as an operator would while strict reconfig (etcd's, on by default)
    answers "unhealthy cluster": the peers have not been connected for 5 s yet."""
    end = time.monotonic() + 30
    while True:
        try:
            resp: pb.MemberAddResponse = cluster.MemberAdd(req, timeout=CALL)
            return resp
        except grpc.RpcError as exc:
            if exc.details() != "etcdserver: unhealthy cluster" or time.monotonic() > end:  # type: ignore[attr-defined]
                raise
        time.sleep(0.5)


def test_replication_and_losing_the_leader(servers: ServerGroup) -> None:
    members = servers.start_cluster("petcd", 3)
    for i, m in enumerate(members):
        _put(m, f"rep/{i}".encode())
    for m in members:
        _wait_for(lambda m=m: len(_get(m, b"rep/", serializable=True)) == 3, f"{m.name} to catch up")
    leader = _leader(members)
    leader.kill9()
    rest = [m for m in members if m is not leader]
    _put(rest[0], b"rep/after")
    assert _get(rest[1], b"rep/")[b"rep/after"] == b"v"
    assert _leader(rest) in rest
    leader.restart()
    _wait_for(lambda: b"rep/after" in _get(leader, b"rep/", serializable=True), "the old leader to catch up")
    # every member holds the same history (a put retried after the leader died may have been
    # applied twice, as with etcd: a timeout does not mean the write failed)
    def views() -> list[list[tuple[bytes, int, int]]]:
        out = []
        for m in members:
            ch, kv, _, _ = _stubs(m)
            with ch:
                resp = kv.Range(pb.RangeRequest(key=b"rep/", range_end=b"rep0", serializable=True), timeout=CALL)
            out.append([(x.key, x.mod_revision, x.version) for x in resp.kvs])
        return out

    _wait_for(lambda: all(v == views()[0] for v in views()), "the same history on every member")
    # raft ran over framed streams between the members' plain-text peer URLs (petcd.peer.frames)
    for m in members:
        text = m.log_path.read_text(errors="replace")
        assert text.count("framed stream established") >= 2, m.name
        assert "gRPC stream established" not in text, m.name


def test_member_replacement_catches_up_from_a_snapshot(servers: ServerGroup) -> None:
    args = ("--snapshot-count=40", "--experimental-snapshot-catchup-entries=5")
    members = servers.start_cluster("petcd", 3, extra_args=args)
    for i in range(150):
        _put(members[i % 3], f"data/{i:03d}".encode(), f"v{i}".encode())
    gone = members[2]
    gone_id = gone.ids().member_id
    gone.stop()
    # as an operator would: find the surviving leader first (the stopped member may have led)
    _wait_for(lambda: _has_leader(members[:2]), "a leader among the survivors")
    ch, _, maint, cluster = _stubs(members[0])
    with ch:
        cluster.MemberRemove(pb.MemberRemoveRequest(ID=gone_id), timeout=CALL)
        client_port, peer_port = free_ports(2)
        peer_url = f"http://127.0.0.1:{peer_port}"
        added = _add_when_healthy(cluster, pb.MemberAddRequest(peerURLs=[peer_url]))
    initial = ",".join([*(f"{m.name}={m.peer_url}" for m in members[:2]), f"m4={peer_url}"])
    new = Server("petcd", gone.workdir.parent / "m4", name="m4", extra_args=args, client_port=client_port,
                 peer_port=peer_port, initial_cluster=initial, cluster_state="existing")
    servers.servers.append(new)
    new.start()
    _wait_for(lambda: len(_get(new, b"data/", serializable=True)) == 150, "the new member to catch up")
    assert _get(new, b"data/", serializable=True)[b"data/149"] == b"v149"
    ch, _, maint, cluster = _stubs(new)
    with ch:
        assert maint.Status(pb.StatusRequest(), timeout=CALL).header.member_id == added.member.ID
        names = sorted(m.name for m in cluster.MemberList(pb.MemberListRequest(), timeout=CALL).members)
    assert names == ["m1", "m2", "m4"]
    assert "installed snapshot" in new.log_tail(200)
    # the replaced cluster takes writes through the new member too
    _put(new, b"data/new")
    assert _get(members[0], b"data/")[b"data/new"] == b"v"


def test_move_leader(servers: ServerGroup) -> None:
    members = servers.start_cluster("petcd", 3)
    _put(members[0], b"ml/k")
    leader = _leader(members)
    follower = next(m for m in members if m is not leader)
    target = follower.ids().member_id
    ch, _, maint, _ = _stubs(follower)
    with ch:
        try:
            maint.MoveLeader(pb.MoveLeaderRequest(targetID=target), timeout=CALL)
            raise AssertionError("a follower accepted MoveLeader")
        except grpc.RpcError as exc:
            assert exc.details() == "etcdserver: not leader"
    ch, _, maint, _ = _stubs(leader)
    with ch:
        try:
            maint.MoveLeader(pb.MoveLeaderRequest(targetID=12345), timeout=CALL)
            raise AssertionError("moved leadership to a non-member")
        except grpc.RpcError as exc:
            assert exc.details() == "etcdserver: bad leader transferee"
        maint.MoveLeader(pb.MoveLeaderRequest(targetID=target), timeout=CALL)
    assert _leader(members) is follower
    _put(follower, b"ml/after")
