"""etcd 3.5's membership safety under --strict-reconfig-check (its default), the same on a real
etcd 3.5.1 cluster and a petcd one: a member add or a remove is
refused as "unhealthy cluster" until the peers have been connected for 5 s (here: after one of
them restarts); one learner at most;
a removed member stops serving and exits 0 saying it was removed, also when started again."""

from __future__ import annotations

import json
import time
from datetime import datetime

import grpc
import pytest

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import Kind, Server, ServerGroup
from tests.harness.ports import free_ports
from tests.robustness.cluster import followers_of, leader_of, wait_for

UNHEALTHY = (grpc.StatusCode.UNAVAILABLE, "etcdserver: unhealthy cluster")
TOO_MANY_LEARNERS = (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: too many learner members in cluster")
# what etcd (and petcd) logs when it learns it was removed
REMOVED_LOG = "the member has been permanently removed from the cluster"


def _cluster(server: Server) -> tuple[grpc.Channel, pb_grpc.ClusterStub]:
    ch = grpc.insecure_channel(server.endpoint)
    return ch, pb_grpc.ClusterStub(ch)  # type: ignore[no-untyped-call]


def _outcome(call: object, request: object) -> tuple[grpc.StatusCode, str]:
    try:
        call(request, timeout=10)  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def _unused_url() -> str:
    return f"http://127.0.0.1:{free_ports(1)[0]}"


def _link_up_times(server: Server, peer_id: int) -> list[float]:
    """When ``server`` saw its link to ``peer_id`` come up, from its own log."""
    out = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if server.kind == "etcd":
            if '"peer became active"' in line and f'"{peer_id:x}"' in line:
                out.append(datetime.fromisoformat(json.loads(line)["ts"].replace("Z", "+00:00")).timestamp())
        elif f"peer {peer_id:x}: " in line and " stream established " in line:
            # petcd's log stamps are local time
            out.append(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return out


def _answers(server: Server) -> bool:
    ch, _ = _cluster(server)
    with ch:
        try:
            pb_grpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=0.5)  # type: ignore[no-untyped-call]
        except grpc.RpcError:
            return False
    return True


@pytest.mark.parametrize("kind", ["etcd", "petcd"])
def test_reconfiguration_waits_for_five_seconds_of_connected_peers(servers: ServerGroup, kind: Kind) -> None:
    members = servers.start_cluster(kind, 3)
    leader = leader_of(members)
    a, b = followers_of(members, leader)
    # b comes back: its streams are new, so for 5 s the cluster is not healthy enough to change
    b.kill9()
    b.spawn()
    wait_for(lambda: _answers(b), f"the restarted {kind} member to answer", timeout=30, every=0.05)
    ch, cluster = _cluster(a)
    with ch:
        # removing the leader would leave a and a member connected for less than 5 s
        assert _outcome(cluster.MemberRemove, pb.MemberRemoveRequest(ID=leader.ids().member_id)) == UNHEALTHY
        assert _outcome(cluster.MemberAdd, pb.MemberAddRequest(peerURLs=[_unused_url()], isLearner=True)) \
            == UNHEALTHY
        # accepted once the streams have been up long enough
        learner: list[int] = []

        def added() -> bool:
            resp = cluster.MemberAdd(pb.MemberAddRequest(peerURLs=[_unused_url()], isLearner=True), timeout=10)
            learner.append(int(resp.member.ID))
            return True

        wait_for(added, "a learner add to be accepted", timeout=15, every=0.2)
        accepted = time.time()
        ups = [t for t in _link_up_times(a, b.ids().member_id) if t < accepted]
        assert ups, a.log_tail()
        # not before the link to the restarted member had been up for 5 s (log stamps are ms)
        assert accepted - ups[-1] > 4.9, (accepted, ups)
        assert _outcome(cluster.MemberAdd, pb.MemberAddRequest(peerURLs=[_unused_url()], isLearner=True)) \
            == TOO_MANY_LEARNERS
        # a learner that never started is removed without the checks
        assert _outcome(cluster.MemberRemove, pb.MemberRemoveRequest(ID=learner[0]))[0] == grpc.StatusCode.OK
        assert _outcome(cluster.MemberRemove, pb.MemberRemoveRequest(ID=b.ids().member_id))[0] == grpc.StatusCode.OK
    # the removed member stops serving and exits 0, saying why
    wait_for(lambda: not b.is_running(), f"the removed {kind} member to exit", timeout=15)
    assert b.stop() == 0
    log = b.log_path.read_text(errors="replace")
    assert REMOVED_LOG in log
    # started again on its data, it stops again at once
    b.spawn()
    wait_for(lambda: not b.is_running(), f"the restarted removed {kind} member to exit", timeout=15)
    assert b.stop() == 0
    assert b.log_path.read_text(errors="replace")[len(log):].count(REMOVED_LOG) >= 1
