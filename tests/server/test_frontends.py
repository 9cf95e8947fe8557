"""Client front-end processes on real servers: how many run, how connections spread over them,
that errors, streams and metadata pass through them unchanged, and what happens when one of them,
or the member itself, dies or stops.

Front-ends are found as the member's children (ppid in /proc/*/stat, zombies excluded); "gone"
checks look for any process started with ``--parent=<member pid>``, so a front-end that outlived
its member (re-parented to init) still counts. Processes are only ever signalled by PID.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from petcd.frontend.supervisor import FrontendError, claim_ports
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.proto.v3electionpb import v3election_pb2 as elpb
from petcd.proto.v3electionpb import v3election_pb2_grpc as elpb_grpc
from tests.harness import Server, ServerGroup, free_ports, server_group
from tests.harness.waiting import wait_until

SMALL_REQUEST = 1024
MAX_TXN_OPS = 4
LIMIT_ARGS = (f"--max-request-bytes={SMALL_REQUEST}", f"--max-txn-ops={MAX_TXN_OPS}")

# ---------------------------------------------------------------------------------------------
# processes


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of ``pid``, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def frontends(member: int) -> list[int]:
    """Live front-end children of ``member``."""
    found = []
    for pid in _pids():
        st = _stat(pid)
        if st is not None and st[1] == member and st[0] != "Z" and "petcd.frontend" in _cmdline(pid):
            found.append(pid)
    return sorted(found)


def started_by(member: int) -> list[int]:
    """Every live front-end started by ``member``, its child or not any more."""
    flag = f"--parent={member}"
    found = []
    for pid in _pids():
        argv = _cmdline(pid)
        st = _stat(pid)
        if st is not None and st[0] != "Z" and "petcd.frontend" in argv and flag in argv:
            found.append(pid)
    return found


def member_pid(server: Server) -> int:
    assert server.pid is not None and server.is_running()
    return server.pid


def expected_default_count() -> int:
    cpus = len(os.sched_getaffinity(0))
    return 0 if cpus < 2 else min(cpus, 4)


def link_dir(frontend: int) -> Path:
    """The member's private socket directory, from a front-end's ``--link=`` argument."""
    for arg in _cmdline(frontend):
        if arg.startswith("--link="):
            return Path(arg.removeprefix("--link=")).parent
    raise AssertionError(f"front-end {frontend} has no --link= argument: {_cmdline(frontend)}")


def _tcp_sockets(port: int) -> list[tuple[str, int]]:
    """(state, inode) of every TCP socket whose local port is ``port`` (state "01" = established,
    "06" = TIME_WAIT)."""
    found: list[tuple[str, int]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port:
                    found.append((cols[3], int(cols[9])))
    return found


def _established_inodes(port: int) -> set[int]:
    return {inode for state, inode in _tcp_sockets(port) if state == "01"}


def _socket_inodes(pid: int) -> set[int]:
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    found.add(int(target[8:-1]))
    return found


def connections_by_frontend(member: int, port: int) -> dict[int, int]:
    """Established client connections each front-end of ``member`` holds on ``port``."""
    est = _established_inodes(port)
    return {pid: len(_socket_inodes(pid) & est) for pid in frontends(member)}


# ---------------------------------------------------------------------------------------------
# gRPC clients

# without a local subchannel pool, channels to one target share one TCP connection
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@contextlib.contextmanager
def channel(server: Server) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(server.endpoint, options=OWN_CONNECTION)
    try:
        yield ch
    finally:
        ch.close()


def rpc_error(fn: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    err: Any = info.value
    return err.code(), err.details()


class Requests:
    """A request iterator for a client-streaming call, fed from the test."""

    def __init__(self) -> None:
        self._q: queue.Queue[Any] = queue.Queue()

    def send(self, msg: Any) -> None:
        self._q.put(msg)

    def close(self) -> None:
        self._q.put(None)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._q.get, None)


# ---------------------------------------------------------------------------------------------
# shared servers


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerGroup]:
    with server_group(tmp_path_factory.mktemp("frontends")) as g:
        yield g


@pytest.fixture(scope="module")
def fronted(group: ServerGroup) -> Server:
    """Two front-ends (whatever the CPU count), small request and txn limits."""
    return group.start("petcd", label="fronted", extra_args=(*LIMIT_ARGS, "--client-frontends=2"))


@pytest.fixture(scope="module")
def direct(group: ServerGroup) -> Server:
    """--client-frontends=0 (the member serves clients itself), the same limits."""
    return group.start("petcd", label="direct", extra_args=(*LIMIT_ARGS, "--client-frontends=0"))


@pytest.fixture(scope="module")
def three(group: ServerGroup) -> Server:
    return group.start("petcd", label="three", extra_args=("--client-frontends=3",))


# ---------------------------------------------------------------------------------------------
# 1. how many front-ends


def test_default_count_is_one_per_cpu_up_to_four(servers: ServerGroup) -> None:
    server = servers.start("petcd")
    assert len(frontends(member_pid(server))) == expected_default_count()
    # whoever serves the port (front-ends or the member itself), no other process may bind it
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with s, pytest.raises(OSError) as info:
        s.bind(("127.0.0.1", server.client_port))
    assert info.value.errno == errno.EADDRINUSE


def test_members_on_one_machine_share_its_cpus(servers: ServerGroup) -> None:
    cpus = len(os.sched_getaffinity(0))
    members = servers.start_cluster("petcd", 3)
    want = 0 if cpus < 2 else max(1, min(cpus // 3, 4))
    for m in members:
        assert len(frontends(member_pid(m))) == want, m.name
        if want:
            assert f"3 members of --initial-cluster have peer URLs on this machine (m1, m2, m3): {want} client" \
                in m.log_tail(200)


def test_colocated_members_are_those_with_peer_urls_here() -> None:
    from petcd.config import settings_from_flags
    from petcd.server.main import colocated_members, frontend_count

    def here(cluster: str, own: str) -> list[str]:
        return colocated_members(settings_from_flags(
            ["--name=a", f"--initial-cluster={cluster}", f"--initial-advertise-peer-urls={own}",
             "--listen-peer-urls=http://0.0.0.0:2380"]))

    assert here("a=http://127.0.0.1:2380,b=http://127.0.0.1:2381,c=http://[::1]:2382",
                "http://127.0.0.1:2380") == ["a", "b", "c"]
    assert here("a=http://10.0.0.1:2380,b=http://10.0.0.2:2380,c=http://10.0.0.1:2390",
                "http://10.0.0.1:2380") == ["a", "c"]
    assert here("a=http://node1:2380,b=http://node2:2380,c=http://localhost:2390",
                "http://node1:2380") == ["a", "c"]
    assert frontend_count(-1, 1) == (0 if len(os.sched_getaffinity(0)) < 2 else min(len(os.sched_getaffinity(0)), 4))
    assert frontend_count(2, 3) == 2  # an explicit count is what it says


def test_zero_frontends_member_serves_itself(direct: Server) -> None:
    assert frontends(member_pid(direct)) == []
    with channel(direct) as ch:
        kv = pb_grpc.KVStub(ch)
        kv.Put(pb.PutRequest(key=b"direct/k", value=b"v"), timeout=5)
        assert kv.Range(pb.RangeRequest(key=b"direct/k"), timeout=5).kvs[0].value == b"v"


def test_three_frontends(three: Server) -> None:
    assert len(frontends(member_pid(three))) == 3


# ---------------------------------------------------------------------------------------------
# 2. connections spread over the front-ends


def test_connections_spread_over_frontends(three: Server) -> None:
    member = member_pid(three)
    n = 16
    with contextlib.ExitStack() as stack:
        chans = [stack.enter_context(channel(three)) for _ in range(n)]
        for i, ch in enumerate(chans):
            pb_grpc.KVStub(ch).Put(pb.PutRequest(key=f"spread/{i}".encode(), value=b"v"), timeout=5)
        by_fe = connections_by_frontend(member, three.client_port)
        assert sum(by_fe.values()) == n, f"expected {n} client connections, found {by_fe}"
        # three front-ends and 16 connections hashed over them: all on one has odds of ~1e-7
        busy = [pid for pid, conns in by_fe.items() if conns > 0]
        assert len(busy) >= 2, f"every connection went to one front-end: {by_fe}"
        # the member holds none: it only has a guard socket, which never listens
        assert not _socket_inodes(member) & _established_inodes(three.client_port)


def test_large_unary_request_and_response(three: Server) -> None:
    """Payloads far larger than a socket buffer cross the link both ways intact."""
    values = [bytes([i]) * 1_000_000 for i in range(3)]
    with channel(three) as ch:
        kv = pb_grpc.KVStub(ch)
        for i, v in enumerate(values):
            kv.Put(pb.PutRequest(key=f"big/{i}".encode(), value=v), timeout=10)
        resp = kv.Range(pb.RangeRequest(key=b"big/", range_end=b"big0"), timeout=10)
    assert [kv_.value for kv_ in resp.kvs] == values


# ---------------------------------------------------------------------------------------------
# 3. errors pass through unchanged


def _errors(server: Server) -> dict[str, tuple[grpc.StatusCode, str]]:
    with channel(server) as ch:
        kv = pb_grpc.KVStub(ch)
        rev = kv.Put(pb.PutRequest(key=b"err/k", value=b"v"), timeout=5).header.revision
        too_many = pb.TxnRequest(
            success=[pb.RequestOp(request_put=pb.PutRequest(key=f"err/{i}".encode())) for i in range(MAX_TXN_OPS + 1)]
        )
        election = elpb_grpc.ElectionStub(ch)
        observe = election.Observe(elpb.LeaderRequest(name=b"err/nobody"), timeout=0.5)
        return {
            "future": rpc_error(lambda: kv.Range(pb.RangeRequest(key=b"err/k", revision=rev + 100), timeout=5)),
            "large": rpc_error(lambda: kv.Put(pb.PutRequest(key=b"err/big", value=b"x" * 2000), timeout=5)),
            "grpc-limit": rpc_error(
                lambda: kv.Put(pb.PutRequest(key=b"err/huge", value=b"x" * (SMALL_REQUEST + 600 * 1024)), timeout=5)
            ),
            "txn-ops": rpc_error(lambda: kv.Txn(too_many, timeout=5)),
            "auth-not-enabled": rpc_error(
                lambda: pb_grpc.AuthStub(ch).Authenticate(pb.AuthenticateRequest(name="u", password="p"), timeout=5)
            ),
            # Campaign is relayed over the front-end's channel, as streams are
            "relayed-unary": rpc_error(
                lambda: election.Campaign(elpb.CampaignRequest(name=b"err/e", lease=999), timeout=5)
            ),
            "stream-deadline": rpc_error(lambda: list(observe)),
        }


def test_errors_are_the_same_with_and_without_frontends(fronted: Server, direct: Server) -> None:
    assert len(frontends(member_pid(fronted))) == 2
    via_frontend = _errors(fronted)
    in_member = _errors(direct)
    assert in_member["future"] == (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
    assert in_member["large"] == (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large")
    assert in_member["txn-ops"] == (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: too many operations in txn request")
    assert in_member["grpc-limit"][0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert in_member["auth-not-enabled"] == (grpc.StatusCode.FAILED_PRECONDITION,
                                             "etcdserver: authentication is not enabled")
    assert in_member["relayed-unary"] == (grpc.StatusCode.UNKNOWN, "etcdserver: requested lease not found")
    assert in_member["stream-deadline"][0] == grpc.StatusCode.DEADLINE_EXCEEDED
    for case, expected in in_member.items():
        assert via_frontend[case] == expected, f"{case}: {via_frontend[case]} through a front-end, {expected} direct"


@pytest.mark.parametrize("server_name", ["fronted", "direct"])
def test_undecodable_request_is_internal(server_name: str, request: pytest.FixtureRequest) -> None:
    """Bytes that do not parse as the request: INTERNAL, as etcd answers ("grpc: error
    unmarshalling request"), the same whoever serves the port."""
    server: Server = request.getfixturevalue(server_name)
    with channel(server) as ch:
        code, details = rpc_error(lambda: ch.unary_unary("/etcdserverpb.KV/Put")(b"\xff\xff\xff", timeout=5))
    assert code == grpc.StatusCode.INTERNAL
    assert details.startswith("grpc: error unmarshalling request: ")


@pytest.mark.parametrize("server_name", ["fronted", "direct"])
def test_methods_found_by_path_unknown_ones_unimplemented(server_name: str, request: pytest.FixtureRequest) -> None:
    """Methods are found by full path (no registered methods, petcd.api.handlers.PathHandler): a
    method of each service kind answers, and an unknown method of a known service, or of an
    unknown service, is UNIMPLEMENTED, as etcd answers, whoever serves the port."""
    server: Server = request.getfixturevalue(server_name)
    with channel(server) as ch:
        assert pb_grpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=5).header.member_id
        assert pb_grpc.ClusterStub(ch).MemberList(pb.MemberListRequest(), timeout=5).members
        assert pb_grpc.LeaseStub(ch).LeaseGrant(pb.LeaseGrantRequest(TTL=60), timeout=5).ID
        # nobody campaigns: etcd's "no leader" error, from the Election service's own code
        code, details = rpc_error(lambda: elpb_grpc.ElectionStub(ch).Leader(elpb.LeaderRequest(name=b"path"), timeout=5))
        assert code != grpc.StatusCode.UNIMPLEMENTED, details
        for path in ("/etcdserverpb.KV/NoSuchMethod", "/no.such.Service/Range", "/etcdserverpb.Lease/Put"):
            code, _ = rpc_error(lambda p=path: ch.unary_unary(p)(b"", timeout=5))
            assert code == grpc.StatusCode.UNIMPLEMENTED, path


# ---------------------------------------------------------------------------------------------
# 4. streams through a front-end


def test_watch_sees_puts_from_another_connection_and_cancels(fronted: Server) -> None:
    with channel(fronted) as wch, channel(fronted) as pch:
        reqs = Requests()
        stream = pb_grpc.WatchStub(wch).Watch(iter(reqs), timeout=10)
        reqs.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"w/", range_end=b"w0")))
        created = next(stream)
        assert created.created and not created.canceled
        kv = pb_grpc.KVStub(pch)
        for i in range(3):
            kv.Put(pb.PutRequest(key=f"w/{i}".encode(), value=f"v{i}".encode()), timeout=5)
        seen: list[tuple[bytes, bytes]] = []
        while len(seen) < 3:
            resp = next(stream)
            assert resp.watch_id == created.watch_id
            seen += [(e.kv.key, e.kv.value) for e in resp.events]
        assert seen == [(b"w/0", b"v0"), (b"w/1", b"v1"), (b"w/2", b"v2")]
        reqs.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"w/x")))
        second = next(stream)
        assert second.created and second.watch_id != created.watch_id
        reqs.send(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=created.watch_id)))
        canceled = next(stream)
        assert canceled.canceled and canceled.watch_id == created.watch_id
        # a client that half-closes keeps its watchers (as in etcd): the relay must not end the stream
        reqs.close()
        kv.Put(pb.PutRequest(key=b"w/x", value=b"x"), timeout=5)
        resp = next(stream)
        assert resp.watch_id == second.watch_id and [e.kv.key for e in resp.events] == [b"w/x"]
        stream.cancel()


def test_watch_client_cancel_and_channel_close(fronted: Server) -> None:
    for _ in range(3):
        with channel(fronted) as ch:
            reqs = Requests()
            stream = pb_grpc.WatchStub(ch).Watch(iter(reqs), timeout=10)
            reqs.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"wc/k")))
            assert next(stream).created
            stream.cancel()
            assert stream.code() == grpc.StatusCode.CANCELLED
        # and a stream whose channel simply goes away
        with channel(fronted) as ch:
            reqs = Requests()
            stream = pb_grpc.WatchStub(ch).Watch(iter(reqs), timeout=10)
            reqs.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"wc/k")))
            assert next(stream).created
    # the front-ends still serve streams afterwards
    with channel(fronted) as ch:
        reqs = Requests()
        stream = pb_grpc.WatchStub(ch).Watch(iter(reqs), timeout=10)
        reqs.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"wc/k")))
        assert next(stream).created
        pb_grpc.KVStub(ch).Put(pb.PutRequest(key=b"wc/k", value=b"after"), timeout=5)
        assert next(stream).events[0].kv.value == b"after"
        stream.cancel()


def test_lease_keepalive_round_trip(fronted: Server) -> None:
    with channel(fronted) as ch:
        lease = pb_grpc.LeaseStub(ch)
        granted = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=30), timeout=5)
        assert granted.ID != 0 and not granted.error
        reqs = Requests()
        stream = lease.LeaseKeepAlive(iter(reqs), timeout=10)
        for _ in range(2):
            reqs.send(pb.LeaseKeepAliveRequest(ID=granted.ID))
            resp = next(stream)
            assert resp.ID == granted.ID and 0 < resp.TTL <= 30
        reqs.close()
        assert list(stream) == []
        ttl = lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=granted.ID), timeout=5)
        assert ttl.ID == granted.ID and ttl.grantedTTL == 30


def test_snapshot_stream_has_valid_checksum(fronted: Server) -> None:
    with channel(fronted) as ch:
        pb_grpc.KVStub(ch).Put(pb.PutRequest(key=b"snap/k", value=b"v"), timeout=5)
        chunks = [r.blob for r in pb_grpc.MaintenanceStub(ch).Snapshot(pb.SnapshotRequest(), timeout=10)]
    data = b"".join(chunks)
    assert len(data) > 32
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]


# ---------------------------------------------------------------------------------------------
# 9. metadata reaches the member


def test_watch_with_require_leader_metadata(fronted: Server) -> None:
    with channel(fronted) as ch:
        reqs = Requests()
        stream = pb_grpc.WatchStub(ch).Watch(iter(reqs), timeout=10, metadata=(("hasleader", "true"),))
        reqs.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"md/k")))
        assert next(stream).created
        pb_grpc.KVStub(ch).Put(pb.PutRequest(key=b"md/k", value=b"v"), timeout=5)
        assert next(stream).events[0].kv.value == b"v"
        stream.cancel()


@pytest.mark.parametrize("server_name", ["fronted", "direct"])
def test_unary_calls_with_unusual_metadata(server_name: str, request: pytest.FixtureRequest) -> None:
    """Metadata the member ignores must not fail a call, whatever its shape."""
    server: Server = request.getfixturevalue(server_name)
    md = (
        ("x-plain", "value"),
        ("x-data-bin", bytes(range(256))),
        ("x-" + "k" * 300, "a key longer than 255 bytes"),
    )
    with channel(server) as ch:
        resp = pb_grpc.KVStub(ch).Put(pb.PutRequest(key=b"md/u", value=b"v"), timeout=5, metadata=md)
        assert resp.header.revision > 0


# ---------------------------------------------------------------------------------------------
# 5. a front-end killed under load


def test_kill9_frontend_is_restarted_and_no_acked_write_is_lost(three: Server) -> None:
    member = member_pid(three)
    before = frontends(member)
    assert len(before) == 3
    acked: dict[int, dict[bytes, bytes]] = {}
    after_kill: dict[int, int] = {}
    killed = threading.Event()
    stop = threading.Event()
    failures: list[str] = []

    def writer(w: int) -> None:
        mine = acked.setdefault(w, {})
        after_kill[w] = 0
        with channel(three) as ch:
            kv = pb_grpc.KVStub(ch)
            i = 0
            while not stop.is_set():
                key, value = f"k9/{w}/{i:05d}".encode(), f"v{w}.{i}".encode()
                try:
                    kv.Put(pb.PutRequest(key=key, value=value), timeout=3)
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                        failures.append(f"writer {w}: {exc.code()} {exc.details()}")  # type: ignore[attr-defined]
                        return
                    time.sleep(0.02)
                    continue  # retry the same key: it may or may not have been applied
                mine[key] = value
                if killed.is_set():
                    after_kill[w] += 1
                i += 1

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(6)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: sum(len(a) for a in acked.values()) >= 60 or bool(failures), 10, "writes before the kill")
        by_fe = connections_by_frontend(member, three.client_port)
        victim = max(by_fe, key=lambda pid: by_fe[pid])
        assert by_fe[victim] > 0, by_fe
        os.kill(victim, signal.SIGKILL)
        killed.set()
        wait_until(
            lambda: len(frontends(member)) == 3 and victim not in frontends(member), 5, "a replacement front-end"
        )
        wait_until(
            lambda: all(n >= 10 for n in after_kill.values()) or bool(failures), 10, "every writer writes again"
        )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not failures, failures
    # one replacement, the other two untouched. Polled: in one loaded CI run a single read here
    # found two front-ends just after three were seen, and the member logged no second exit
    wait_until(lambda: len(frontends(member)) == 3 and victim not in frontends(member)
               and len(set(frontends(member)) - set(before)) == 1, 10, "one replacement beside the other two")
    with channel(three) as ch:
        resp = pb_grpc.KVStub(ch).Range(pb.RangeRequest(key=b"k9/", range_end=b"k90"), timeout=5)
    found = {kv.key: kv.value for kv in resp.kvs}
    for mine in acked.values():
        lost = [k for k, v in mine.items() if found.get(k) != v]
        assert not lost, f"{len(lost)} acknowledged writes lost or changed, e.g. {lost[:3]}"


# ---------------------------------------------------------------------------------------------
# 6-7. the member dies or stops


def _put_through_client_port(server: Server, key: bytes) -> None:
    with channel(server) as ch:
        pb_grpc.KVStub(ch).Put(pb.PutRequest(key=key, value=b"v"), timeout=5)


def _open_clients(server: Server, n: int) -> list[grpc.Channel]:
    """``n`` client connections, each with a Put done and a Watch open, as real clients hold."""
    chans = []
    for i in range(n):
        ch = grpc.insecure_channel(server.endpoint, options=OWN_CONNECTION)
        chans.append(ch)
        pb_grpc.KVStub(ch).Put(pb.PutRequest(key=f"clients/{i}".encode(), value=b"v"), timeout=5)
        reqs = Requests()
        stream = pb_grpc.WatchStub(ch).Watch(iter(reqs))
        reqs.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"clients/0")))
        assert next(stream).created
    return chans


def _restart_on_same_ports(server: Server) -> None:
    """Restart at once; on failure say whether the server side of closed connections lingers."""
    try:
        server.restart(timeout=15)
    except Exception as exc:
        lingering = [state for state, _ in _tcp_sockets(server.client_port) if state == "06"]
        raise AssertionError(
            f"restart on the same ports failed with {len(lingering)} TIME_WAIT connections on the client port "
            f"{server.client_port}: {exc}"
        ) from None


def test_kill9_member_takes_frontends_along_and_restarts_on_same_ports(servers: ServerGroup) -> None:
    server = servers.start("petcd", extra_args=("--client-frontends=2",))
    member = member_pid(server)
    assert len(frontends(member)) == 2
    # clients connected when the member dies, as in production
    chans = _open_clients(server, 8)
    try:
        server.kill9()
        wait_until(lambda: not started_by(member), 2, "front-ends of a killed member exit")
    finally:
        for ch in chans:
            ch.close()
    _restart_on_same_ports(server)
    assert len(frontends(member_pid(server))) == 2
    _put_through_client_port(server, b"m9/after")


def test_sigterm_exits_0_and_cleans_up(servers: ServerGroup) -> None:
    server = servers.start("petcd", extra_args=("--client-frontends=2",))
    member = member_pid(server)
    fes = frontends(member)
    assert len(fes) == 2
    sockdir = link_dir(fes[0])
    assert sockdir.is_dir() and sockdir.name.startswith("petcd-")
    chans = _open_clients(server, 8)
    # and connections that never got as far as a call: the server closes them first, always
    idle = [socket.create_connection(("127.0.0.1", server.client_port), timeout=5) for _ in range(4)]
    try:
        assert server.stop() == 0
        for s in idle:
            while s.recv(65536):
                pass
    finally:
        for s in idle:
            s.close()
        for ch in chans:
            ch.close()
    assert not started_by(member)
    assert not sockdir.exists(), f"{sockdir} left behind: {list(sockdir.iterdir())}"
    # a clean stop with clients (and their watches) connected leaves the port reusable at once
    _restart_on_same_ports(server)
    _put_through_client_port(server, b"term/after")


# ---------------------------------------------------------------------------------------------
# 8. the client port


def test_port_taken_by_another_process_fails_startup(tmp_path: Path) -> None:
    client_port, peer_port = free_ports(2)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        squatter.bind(("127.0.0.1", client_port))
        squatter.listen()
        server = Server("petcd", tmp_path, client_port=client_port, peer_port=peer_port,
                        extra_args=("--client-frontends=2",))
        server.spawn()
        pid = member_pid(server)
        deadline = time.monotonic() + 20
        while server.is_running():
            assert time.monotonic() < deadline, "petcd still running with its client port taken"
            time.sleep(0.05)
        assert server.stop() == 1
        assert "bind: address already in use" in server.log_tail(), server.log_tail()
        assert not started_by(pid)
    finally:
        squatter.close()


def test_running_member_keeps_its_client_port(fronted: Server) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with s, pytest.raises(OSError) as info:
        s.bind(("127.0.0.1", fronted.client_port))
    assert info.value.errno == errno.EADDRINUSE


def test_claim_ports_refuses_a_listening_port() -> None:
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(FrontendError, match=f"listen tcp 127.0.0.1:{port}: bind: address already in use"):
            claim_ports([f"127.0.0.1:{port}"])


def test_claim_ports_takes_a_port_whose_old_connections_are_in_time_wait() -> None:
    """A restarted member must get its port back at once, as etcd and gRPC servers do: the server
    side of connections it closed first lingers in TIME_WAIT for a minute, listening on nothing."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server closes first
    wait_until(lambda: client.recv(1) == b"", 2, "the client sees the server's FIN")
    client.close()
    listener.close()
    wait_until(lambda: ("06", 0) in _tcp_sockets(port), 2, "the server's side in TIME_WAIT")
    guards = claim_ports([f"127.0.0.1:{port}"])
    for g in guards:
        g.close()
    assert len(guards) == 1
