"""HTTP/1 on the peer URL, petcd against etcd 3.5.1 (petcd.http.peerhttp): every path of
etcd's peer handler, what cmux does with bytes that are not HTTP/2, and the client API over gRPC
on the same port."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from petcd.http.peerhttp import classify_peer
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from tests.harness import Etcdctl, Server, server_group
from tests.http.helpers import Answer, raw, request

# (method, path, body)
CASES: list[tuple[str, str, bytes | None]] = [
    ("GET", "/version", None), ("POST", "/version", None), ("HEAD", "/version", None), ("GET", "/version/", None),
    ("OPTIONS", "/version", None),
    ("GET", "/members", None), ("POST", "/members", None), ("GET", "/members/", None), ("GET", "/members/x", None),
    ("GET", "/MEMBERS", None),
    ("GET", "/raft", None), ("POST", "/raft", b"x"), ("PUT", "/raft", None), ("GET", "/raft/", None),
    ("POST", "/raft/", None), ("GET", "/raft/probing", None), ("POST", "/raft/probing", None),
    ("HEAD", "/raft/probing", None), ("GET", "/raft/probing/", None),
    ("GET", "/raft/stream", None), ("POST", "/raft/stream", None), ("GET", "/raft/stream?a=1", None),
    ("GET", "/raft/stream/", None), ("GET", "/raft/stream/message/1", None),
    ("POST", "/raft/stream/message/1", None), ("GET", "/raft/stream/msgappv2/1", None),
    ("GET", "/raft/snapshot", None), ("POST", "/raft/snapshot", b""), ("POST", "/raft/snapshot/", None),
    ("GET", "/leases", None), ("PUT", "/leases", None), ("POST", "/leases", b""), ("POST", "/leases", b"garbage"),
    ("POST", "/leases", b"\x08\x01"), ("GET", "/leases/internal", None), ("POST", "/leases/internal", b"\x0a\x02\x08\x01"),
    ("POST", "/leases/internal", b"garbage"), ("POST", "/leases/x", None), ("GET", "/leases/", None),
    ("GET", "/members/promote/1", None), ("POST", "/members/promote/1", None), ("POST", "/members/promote/x", None),
    ("POST", "/members/promote/", None), ("POST", "/members/promote/-1", None), ("GET", "/members/promote", None),
    ("POST", "/members/promote/18446744073709551616", None),
    ("GET", "/members/hashkv", None), ("POST", "/members/hashkv", b"{}"), ("GET", "/members/hashkv", b"{}"),
    ("GET", "/members/hashkv", b'{"revision":1}'), ("GET", "/members/hashkv", b'{"REVISION":1}'),
    ("GET", "/members/hashkv", b'{"revision":99999}'), ("GET", "/members/hashkv", b'{"revision":"1"}'),
    ("GET", "/members/hashkv", b"zz"), ("GET", "/members/hashkv", b"null"), ("GET", "/members/hashkv/", None),
    ("GET", "/downgrade/enabled", None), ("POST", "/downgrade/enabled", None), ("GET", "/downgrade/enabled/", None),
    ("GET", "/downgrade", None),
    ("GET", "/", None), ("GET", "/health", None), ("GET", "/metrics", None), ("GET", "/nope", None),
    ("GET", "/v3/kv/range", None),
]
_NOW = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    with server_group(tmp_path_factory.mktemp("peerport")) as group:
        yield group.start("etcd"), group.start_target()


def _json_shape(value: Any) -> Any:
    """The JSON's structure: keys and value types, not the values (ids, URLs, times differ)."""
    if isinstance(value, dict):
        return {k: _json_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_shape(v) for v in value]
    return type(value).__name__


def _shape(a: Answer) -> tuple[int, str | None, Any]:
    body: Any = a.body
    if a.body.startswith((b"{", b"[")):
        body = (_json_shape(json.loads(a.body)), a.body.endswith(b"\n"))
    return a.status, a.header("Content-Type"), body


def _cluster_id(server: Server) -> str:
    out = Etcdctl(server.endpoint).run("member", "list", "-w", "json")
    assert out.rc == 0, out
    return f"{json.loads(out.stdout)['header']['cluster_id']:x}"


def test_classify_peer() -> None:
    assert classify_peer(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == "grpc"
    assert classify_peer(b"PRI * HT") == "more"
    assert classify_peer(b"GET / HTTP/1.1\r\n") == "http"
    assert classify_peer(b"PRX") == "http"  # cmux's HTTP/2 matcher gives up at the first mismatch
    assert classify_peer(b"\x16\x03\x01") == "more"  # Go waits for the end of the line
    assert classify_peer(b"\x16\x03\x01\n") == "http"


@pytest.mark.parametrize(("method", "path", "body"), CASES)
def test_peer_url_serves_http_as_etcd(servers: tuple[Server, Server], method: str, path: str,
                                      body: bytes | None) -> None:
    etcd, petcd = servers
    want = request(etcd.peer_url, method, path, body)
    got = request(petcd.peer_url, method, path, body)
    assert _shape(got) == _shape(want)
    assert got.header_names() == want.header_names()
    # a JSON body's length varies with its values; /raft/probing's holds the time, whose
    # nanoseconds Go prints without trailing zeros (so even a HEAD's length varies, by a byte)
    varies = want.body.startswith((b"{", b"[")) or path == "/raft/probing"
    for name in ("Allow", "Location", "X-Server-Version", "Content-Length"):
        if name != "Content-Length" or not varies:
            assert got.header(name) == want.header(name), name
    if want.header("X-Etcd-Cluster-Id") is not None:
        assert got.header("X-Etcd-Cluster-Id") == _cluster_id(petcd)


def test_peer_url_answers_with_the_members_data(servers: tuple[Server, Server]) -> None:
    _, petcd = servers
    members = request(petcd.peer_url, "GET", "/members").json()
    listed = json.loads(Etcdctl(petcd.endpoint).run("member", "list", "-w", "json").stdout)["members"]
    assert members == [{"id": m["ID"], "peerURLs": m["peerURLs"], "name": m["name"], "clientURLs": m["clientURLs"]}
                       for m in listed]
    assert members[0]["peerURLs"] == [petcd.peer_url]
    assert request(petcd.peer_url, "GET", "/version").json() == {"etcdserver": "3.5.1", "etcdcluster": "3.5.0"}
    probe = request(petcd.peer_url, "GET", "/raft/probing").json()
    assert probe["OK"] is True and _NOW.match(probe["Now"]), probe
    # the hash is the member's own, as its gRPC HashKV gives it
    assert Etcdctl(petcd.endpoint).run("put", "peerport/k", "v").rc == 0
    got = request(petcd.peer_url, "GET", "/members/hashkv", b'{"revision":0}').json()
    hk = json.loads(Etcdctl(petcd.endpoint).run("endpoint", "hashkv", "-w", "json").stdout)[0]["HashKV"]
    assert got == {"header": {"revision": hk["header"]["revision"]}, "hash": hk["hash"], "compact_revision": -1}
    assert request(petcd.peer_url, "GET", "/downgrade/enabled").body == b"false"


def _lease(server: Server) -> int:
    out = Etcdctl(server.endpoint).run("lease", "grant", "60")
    assert out.rc == 0, out
    lease = int(out.stdout.split()[1], 16)
    assert Etcdctl(server.endpoint).run("put", "peerport/leased", "v", f"--lease={lease:x}").rc == 0
    return lease


def test_lease_paths_use_the_lessor(servers: tuple[Server, Server]) -> None:
    """/leases and /leases/internal keep real leases alive and report them, as on etcd."""
    answers = []
    for server in servers:
        lease = _lease(server)
        keep = request(server.peer_url, "POST", "/leases", pb.LeaseKeepAliveRequest(ID=lease).SerializeToString())
        assert keep.status == 200 and keep.header("Content-Type") == "application/protobuf", keep
        ka = pb.LeaseKeepAliveResponse.FromString(keep.body)
        assert (ka.ID, ka.TTL) == (lease, 60)
        inner = pb.LeaseTimeToLiveRequest(ID=lease, keys=True).SerializeToString()
        ttl = request(server.peer_url, "POST", "/leases/internal", b"\x0a" + bytes([len(inner)]) + inner)
        assert ttl.status == 200, ttl
        # LeaseInternalResponse: field 1 holds the LeaseTimeToLiveResponse
        assert ttl.body[0] == 0x0A and ttl.body[1] == len(ttl.body) - 2
        resp = pb.LeaseTimeToLiveResponse.FromString(ttl.body[2:])
        assert resp.HasField("header") and resp.header.ByteSize() == 0
        assert (resp.ID, resp.grantedTTL, list(resp.keys)) == (lease, 60, [b"peerport/leased"])
        assert 55 <= resp.TTL <= 60
        answers.append(ttl.header_names())
    assert answers[0] == answers[1]


def test_promote_a_learner_not_in_sync(servers: tuple[Server, Server]) -> None:
    """A learner that never started cannot be promoted: etcd's 412, the same on petcd."""
    answers = []
    for i, server in enumerate(servers):
        ctl = Etcdctl(server.endpoint)
        out = ctl.run("member", "add", f"learner{i}", "--learner", f"--peer-urls=http://127.0.0.1:{1 + i}",
                      "-w", "json")
        assert out.rc == 0, out
        learner = json.loads(out.stdout)["member"]["ID"]
        try:
            answers.append(request(server.peer_url, "POST", f"/members/promote/{learner}"))
            listed = request(server.peer_url, "GET", "/members").json()
            assert [m for m in listed if m["id"] == learner] == [
                {"id": learner, "peerURLs": [f"http://127.0.0.1:{1 + i}"], "isLearner": True}]
        finally:
            assert ctl.run("member", "remove", f"{learner:x}").rc == 0
    want, got = answers
    assert (got.status, got.body, got.header_names()) == (want.status, want.body, want.header_names())
    assert want.status == 412


@pytest.mark.parametrize("data", [
    b"GARBAGE\r\n\r\n", b"PRX\r\n\r\n", b"\x16\x03\x01\x00\xa5", b"\x16\x03\x01\r\n\r\n", b"x" * 20,
    b"GET /version HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n",
    b"POST /leases/internal HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
])
def test_bytes_that_are_not_http2(servers: tuple[Server, Server], data: bytes) -> None:
    # cmux hands etcd's peer HTTP server anything but the HTTP/2 preface: Go's bare 400 for
    # what does not parse, nothing while a request line is incomplete
    etcd, petcd = servers
    assert raw(petcd.peer_url, data, timeout=1.5) == raw(etcd.peer_url, data, timeout=1.5)


def test_client_api_over_grpc_on_the_peer_url(servers: tuple[Server, Server]) -> None:
    for server in servers:
        ctl = Etcdctl(server.peer_url)
        assert ctl.run("put", "peerport/g", "v").rc == 0
        out = ctl.run("get", "peerport/g")
        assert out.rc == 0 and out.stdout.splitlines() == ["peerport/g", "v"]


def _leader_first(members: list[Server]) -> list[Server]:
    out = Etcdctl(",".join(m.endpoint for m in members)).run("endpoint", "status", "-w", "json")
    assert out.rc == 0, out
    status = json.loads(out.stdout)
    leader = status[0]["Status"]["leader"]
    ids = [s["Status"]["header"]["member_id"] for s in status]
    return sorted(members, key=lambda m: ids[members.index(m)] != leader)


def test_three_members_peer_http_as_etcd(tmp_path_factory: pytest.TempPathFactory) -> None:
    """In a 3-member cluster: /members lists all three alike, a follower's lessor is not
    primary (etcd's followers forward keep-alives to the leader's /leases), the leader renews."""
    answers: dict[str, list[Answer]] = {}
    with server_group(tmp_path_factory.mktemp("peer3")) as group:
        for kind in ("etcd", "petcd"):
            members = _leader_first(group.start_cluster(kind))  # type: ignore[arg-type]
            leader, follower = members[0], members[1]
            lease = _lease(leader)
            keep = pb.LeaseKeepAliveRequest(ID=lease).SerializeToString()
            answers[kind] = [request(follower.peer_url, "GET", "/members"),
                             request(follower.peer_url, "POST", "/leases", keep),
                             request(leader.peer_url, "POST", "/leases", keep)]
            listed = answers[kind][0].json()
            assert sorted(m["peerURLs"][0] for m in listed) == sorted(m.peer_url for m in members)
            assert [m["id"] for m in listed] == sorted(m["id"] for m in listed)
    for want, got in zip(answers["etcd"], answers["petcd"], strict=True):
        assert got.header_names() == want.header_names()
    for want, got in zip(answers["etcd"][:2], answers["petcd"][:2], strict=True):
        assert _shape(got) == _shape(want)
    assert answers["petcd"][1].body == b"not a primary lessor\n"
    # the renewal: the same answer but for the lease's id
    want, got = (pb.LeaseKeepAliveResponse.FromString(answers[k][2].body) for k in ("etcd", "petcd"))
    assert answers["petcd"][2].status == answers["etcd"][2].status == 200
    assert (got.TTL, got.HasField("header")) == (want.TTL, want.HasField("header")) == (60, False)
