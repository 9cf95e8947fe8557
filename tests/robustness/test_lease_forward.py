"""Leases through a follower, as etcd serves them: keep-alives and time-to-live questions a
follower gets are forwarded to the leader, also across a leader change; LeaseLeases is answered
by the follower itself (etcd 3.5.1 does not forward it)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.harness import Etcdctl, Normaliser, Server, ServerGroup, free_ports
from tests.robustness.cluster import followers_of, leader_of, wait_for

CHECKPOINT = ("--experimental-enable-lease-checkpoint",)


def _grant(server: Server, ttl: int, key: bytes) -> int:
    with grpc.insecure_channel(server.endpoint) as ch:
        lease = pb_grpc.LeaseStub(ch)  # type: ignore[no-untyped-call]
        kv = pb_grpc.KVStub(ch)  # type: ignore[no-untyped-call]
        lease_id = int(lease.LeaseGrant(pb.LeaseGrantRequest(TTL=ttl), timeout=10).ID)
        kv.Put(pb.PutRequest(key=key, value=b"v", lease=lease_id), timeout=10)
        return lease_id


def _has_key(server: Server, key: bytes) -> bool:
    with grpc.insecure_channel(server.endpoint) as ch:
        kv = pb_grpc.KVStub(ch)  # type: ignore[no-untyped-call]
        return bool(kv.Range(pb.RangeRequest(key=key), timeout=10).count)


def _time_to_live(server: Server, lease_id: int) -> pb.LeaseTimeToLiveResponse:
    with grpc.insecure_channel(server.endpoint) as ch:
        lease = pb_grpc.LeaseStub(ch)  # type: ignore[no-untyped-call]
        resp: pb.LeaseTimeToLiveResponse = lease.LeaseTimeToLive(
            pb.LeaseTimeToLiveRequest(ID=lease_id, keys=True), timeout=15
        )
        return resp


async def _keep_alive(server: Server, lease_id: int, seconds: float, every: float,
                      during: object = None) -> list[int]:
    """One LeaseKeepAlive stream to ``server`` for ``seconds``, a request every ``every`` s;
    the TTLs answered. ``during`` (a callable) starts in a thread halfway through; the stream
    goes on meanwhile and waits for it at the end."""
    ttls: list[int] = []
    side: asyncio.Future[object] | None = None
    async with grpc.aio.insecure_channel(server.endpoint) as ch:
        stub = pb_grpc.LeaseStub(ch)  # type: ignore[no-untyped-call]
        call = stub.LeaseKeepAlive()
        end = time.monotonic() + seconds
        fired = during is None
        while time.monotonic() < end:
            await call.write(pb.LeaseKeepAliveRequest(ID=lease_id))
            resp = await asyncio.wait_for(call.read(), 20)
            ttls.append(int(resp.TTL))
            if not fired and time.monotonic() > end - seconds / 2:
                fired = True
                side = asyncio.ensure_future(asyncio.to_thread(during))  # type: ignore[arg-type]
            await asyncio.sleep(every)
        await call.done_writing()
    if side is not None:
        await side
    return ttls


def test_keep_alive_stream_through_a_follower_outlives_the_ttl(servers: ServerGroup) -> None:
    members = servers.start_cluster("petcd", 3)
    follower = followers_of(members, leader_of(members))[0]
    lease_id = _grant(follower, 3, b"fwd/ka")
    ttls = asyncio.run(_keep_alive(follower, lease_id, seconds=7.0, every=1.0))
    assert ttls and all(t == 3 for t in ttls), ttls
    assert _has_key(follower, b"fwd/ka"), "the key went with its lease although it was kept alive"
    # the TTL is real: with no more keep-alives the leader expires the lease
    wait_for(lambda: not _has_key(follower, b"fwd/ka"), "the lease to expire", timeout=15)
    assert _time_to_live(follower, lease_id).TTL == -1


def _ctl_steps(follower: Server) -> list[str]:
    ctl = Etcdctl.for_server(follower)
    # the answering member is <MEMBER1>: headers must name the follower, not the leader
    norm = Normaliser.for_servers([follower])
    out: list[str] = []
    grant = ctl.run("lease", "grant", "60")
    assert grant.rc == 0, grant
    lease_hex = grant.stdout.split()[1]
    assert ctl.run("put", "fwd/k", "v", f"--lease={lease_hex}").rc == 0
    for args in (
        ("lease", "keep-alive", "--once", lease_hex),
        ("lease", "timetolive", lease_hex),
        ("lease", "timetolive", "--keys", lease_hex),
        ("lease", "timetolive", "--keys", lease_hex, "-w", "json"),
        ("lease", "timetolive", "1234"),
        ("lease", "keep-alive", "--once", "1234"),
        ("lease", "list"),
    ):
        r = ctl.run(*args)
        fmt = "json" if "json" in args else "simple"
        n = norm.result(r, fmt)
        shown = " ".join(args).replace(lease_hex, "<L>")
        out.append(f"$ {shown}\nrc={n.rc}\n{n.stdout}{n.stderr}")
    return out


@pytest.mark.etcd
def test_etcdctl_lease_commands_on_a_follower_match_etcd(servers: ServerGroup) -> None:
    got: dict[str, list[str]] = {}
    for kind in ("etcd", "petcd"):
        members = servers.start_cluster(kind, 3, label=f"{kind}-ctl")
        follower = followers_of(members, leader_of(members))[0]
        got[kind] = _ctl_steps(follower)
    for want, have in zip(got["etcd"], got["petcd"], strict=True):
        assert have == want


def test_leases_through_a_follower_survive_killing_the_leader(servers: ServerGroup) -> None:
    members = servers.start_cluster("petcd", 3, extra_args=CHECKPOINT)
    leader = leader_of(members)
    follower = followers_of(members, leader)[0]
    lease_id = _grant(follower, 4, b"fwd/failover")
    # one stream through the follower: the leader dies halfway, the stream goes on
    def kill_and_restart() -> None:
        leader.kill9()
        time.sleep(2.0)
        leader.restart()

    ttls = asyncio.run(_keep_alive(follower, lease_id, seconds=14.0, every=1.0, during=kill_and_restart))
    assert all(t == 4 for t in ttls), ttls
    new_leader = leader_of(members)
    assert new_leader is not leader
    assert _has_key(follower, b"fwd/failover")
    ttl = _time_to_live(follower, lease_id)
    assert ttl.grantedTTL == 4 and 0 <= ttl.TTL <= 4 and list(ttl.keys) == [b"fwd/failover"]
    # the dead leader came back as a follower and sees the same lease through forwarding
    assert _time_to_live(leader, lease_id).grantedTTL == 4


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def test_member_promote_through_a_follower(servers: ServerGroup) -> None:
    members = servers.start_cluster("petcd", 3)
    follower = followers_of(members, leader_of(members))[0]
    ctl = Etcdctl.for_server(follower)
    # refusals the leader gives come back through the follower as themselves
    voter = f"{follower.ids().member_id:x}"
    assert _last_line(ctl.run("member", "promote", voter).stderr) == \
        "Error: etcdserver: can only promote a learner member"
    assert _last_line(ctl.run("member", "promote", "1234").stderr) == "Error: etcdserver: member not found"
    client_port, peer_port = free_ports(2)
    peer_url = f"http://127.0.0.1:{peer_port}"
    adds: list[str] = []

    def add() -> bool:
        # strict reconfig (as etcd's): refused as an unhealthy cluster until the peers have been
        # connected for 5 s, which a cluster that has just started has not
        r = ctl.run("member", "add", "m4", f"--peer-urls={peer_url}", "--learner")
        if r.rc == 0:
            adds.append(r.stdout)
            return True
        assert "etcdserver: unhealthy cluster" in r.stderr, r
        return False

    wait_for(add, "the learner to be added", timeout=30, every=0.5)
    learner_id = adds[0].split()[1]
    initial = ",".join([*(f"{m.name}={m.peer_url}" for m in members), f"m4={peer_url}"])
    learner = Server("petcd", members[0].workdir.parent / "m4", name="m4", client_port=client_port,
                     peer_port=peer_port, initial_cluster=initial, cluster_state="existing")
    servers.servers.append(learner)
    learner.spawn()
    promoted: list[str] = []

    def promote() -> bool:
        r = ctl.run("member", "promote", learner_id)
        if r.rc == 0:
            promoted.append(r.stdout)
            return True
        # a learner that has not caught up yet is the leader's answer, forwarded
        assert "can only promote a learner member which is in sync with leader" in r.stderr, r
        return False

    wait_for(promote, "the learner to catch up and be promoted", timeout=40, every=0.5)
    cluster_hex = f"{follower.ids().cluster_id:x}"
    assert promoted[0].split() == ["Member", learner_id, "promoted", "in", "cluster", cluster_hex]
    listed = ctl.run("member", "list").stdout
    assert f"{learner_id}, started, m4, {peer_url}" in listed and listed.count(", false") == 4, listed


def _no_leader_answers(members: list[Server]) -> list[tuple[str, str, str]]:
    """What a follower left without a quorum answers when asked to forward (all at once)."""
    from concurrent.futures import ThreadPoolExecutor

    leader = leader_of(members)
    rest = followers_of(members, leader)
    with grpc.insecure_channel(rest[0].endpoint) as ch:
        lease = pb_grpc.LeaseStub(ch)  # type: ignore[no-untyped-call]
        cluster = pb_grpc.ClusterStub(ch)  # type: ignore[no-untyped-call]
        lease_id = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=60), timeout=10).ID
        leader.kill9()
        rest[1].kill9()
        calls = {
            "timetolive": lambda: lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lease_id), timeout=20),
            "promote": lambda: cluster.MemberPromote(pb.MemberPromoteRequest(ID=1234), timeout=20),
            "keepalive": lambda: next(lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=lease_id)]), timeout=20)),
        }

        def one(name: str) -> tuple[str, str, str]:
            start = time.monotonic()
            try:
                calls[name]()
            except grpc.RpcError as exc:
                took = time.monotonic() - start
                # etcd gives up at its request timeout (5 s + 2 election timeouts), well before 20 s
                return name, f"{exc.code().name}: {exc.details()}", "before the deadline" if took < 15 else "late"
            return name, "answered", ""

        with ThreadPoolExecutor(3) as pool:
            return sorted(pool.map(one, calls))


@pytest.mark.etcd
def test_forwarding_without_a_quorum_answers_as_etcd(servers: ServerGroup) -> None:
    args = ("--heartbeat-interval=50", "--election-timeout=500")
    got = {kind: _no_leader_answers(servers.start_cluster(kind, 3, label=f"{kind}-nl", extra_args=args))
           for kind in ("etcd", "petcd")}
    assert got["etcd"] == [(n, "UNAVAILABLE: etcdserver: no leader", "before the deadline")
                           for n in ("keepalive", "promote", "timetolive")]
    assert got["petcd"] == got["etcd"]


def test_leader_forward_service_checks_identity_and_never_forwards_again(servers: ServerGroup) -> None:
    from petcd.proto.peerpb import peer_pb2 as peerpb
    from petcd.proto.peerpb import peer_pb2_grpc as peer_grpc

    members = servers.start_cluster("petcd", 3)
    leader = leader_of(members)
    follower = followers_of(members, leader)[0]
    lease_id = _grant(follower, 30, b"fwd/ids")
    ids = leader.ids()
    sender = follower.ids().member_id

    def renew(target: Server, **override: int) -> peerpb.ForwardLeaseRenewResponse:
        fields = {"cluster_id": ids.cluster_id, "sender_id": sender, "receiver_id": target.ids().member_id,
                  "lease_id": lease_id, **override}
        with grpc.insecure_channel(target.peer_endpoint) as ch:
            stub = peer_grpc.LeaderForwardStub(ch)  # type: ignore[no-untyped-call]
            resp: peerpb.ForwardLeaseRenewResponse = stub.LeaseRenew(
                peerpb.ForwardLeaseRenewRequest(**fields), timeout=10)
            return resp

    assert renew(leader).ttl == 30
    for bad, text in (({"cluster_id": 1}, "cluster ID mismatch"), ({"receiver_id": 2}, "member ID mismatch")):
        with pytest.raises(grpc.RpcError) as err:
            renew(leader, **bad)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and text in err.value.details()
    # a follower asked as if it led refuses at once (the asking member tries the leader again)
    with pytest.raises(grpc.RpcError) as err:
        renew(followers_of(members, leader)[1])
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "NotLeaderError" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        renew(leader, lease_id=lease_id + 1)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "LeaseNotFoundError" in err.value.details()
