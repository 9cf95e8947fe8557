"""Auth on clusters and over time: the notebook's auth steps verbatim on 3-member clusters through
the peer-port endpoints (etcd 3.5.1 and petcd side by side), JWT tokens accepted by every member,
simple tokens expiring after --auth-token-ttl, and a member that joins later (by snapshot) having
the same users and roles."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.auth_server.common import ROOT, Side, ctl, enable_auth, run_steps, token, wait_authenticated
from tests.harness import Etcdctl, Server, ServerGroup, free_ports

pytestmark = pytest.mark.etcd


def test_notebook_auth_steps_on_peer_ports(servers: ServerGroup) -> None:
    etcd = servers.start_cluster("etcd", 3)
    petcd = servers.start_cluster("petcd", 3)
    # the notebook points etcdctl at the peer ports (2381-2383), where etcd answers clients too
    ref = Side(etcd, [m.peer_endpoint for m in etcd])
    tgt = Side(petcd, [m.peer_endpoint for m in petcd])
    run_steps([
        # `user add root` asks for the password on a terminal; the same without one:
        ctl("user", "add", "root", "--new-user-password=123456", expect="User root created"),
        ctl("user", "grant-role", "root", "root", expect="Role root is granted to user root"),
        ctl("--user=root:123456", "user", "list", expect="root"),
        ctl("auth", "enable", expect="Authentication Enabled"),
        ctl("--user", "root:123456", "defrag", expect="Finished defragmenting etcd member["),
        ctl("defrag", rc=1, expect="auth: user name is empty"),
        ctl("--user", "root:123456", "put", "k", "v", expect="OK"),
        ctl("--user", "root:123456", "get", "k"),
        ctl("--user", "root:123456", "member", "list"),
        ctl("--user", "root:123456", "alarm", "list"),
        ctl("put", "k", "v", rc=1, expect="etcdserver: user name is empty"),
        ctl("--user=root:654321", "user", "list", rc=2, expect="authentication failed"),
    ], ref, tgt)
    # every member, in member-list order (ids differ between the clusters, so the order does)
    for side in (ref, tgt):
        res = side.ctl.run("--user", "root:123456", "defrag", "--cluster")
        assert res.rc == 0 and sorted(side.norm.result(res, "simple").stdout.splitlines()) == [
            f"Finished defragmenting etcd member[http://<ENDPOINT{i}>]" for i in (1, 2, 3)], str(res)


def _rsa_keys(tmp: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv, pub = tmp / "jwt.key", tmp / "jwt.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def _rpc(endpoint: str, tok: str, fn: str, request: object) -> tuple[str, str]:
    with grpc.insecure_channel(endpoint) as ch:
        try:
            getattr(pb_grpc.KVStub(ch), fn)(request, metadata=[("token", tok)], timeout=10)
            return "OK", ""
        except grpc.RpcError as err:
            return err.code().name, err.details() or ""


def test_jwt_tokens_are_accepted_by_every_member(servers: ServerGroup, tmp_path: Path) -> None:
    priv, pub = _rsa_keys(tmp_path)
    opt = f"--auth-token=jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=10m"
    members = servers.start_cluster("petcd", 3, extra_args=(opt,))
    enable_auth(members[0].endpoint, ("u", "upw"))
    c = Etcdctl([m.endpoint for m in members])
    for args in (("role", "add", "r"), ("role", "grant-permission", "r", "readwrite", "k")):
        assert c.run(*args, "--user", ROOT).rc == 0
    assert c.run("user", "grant-role", "u", "r", "--user", ROOT).rc == 0
    tok = token(members[0].endpoint, "u", "upw")
    assert tok.count(".") == 2  # a JWT, not a simple token
    for m in members:
        assert _rpc(m.endpoint, tok, "Put", pb.PutRequest(key=b"k", value=m.name.encode())) == ("OK", "")
        assert _rpc(m.endpoint, tok, "Range", pb.RangeRequest(key=b"k")) == ("OK", "")
        assert _rpc(m.endpoint, tok, "Put", pb.PutRequest(key=b"other", value=b"x")) == (
            "PERMISSION_DENIED", "etcdserver: permission denied")
    # any auth change makes older tokens stale, on every member (the client authenticates again)
    assert c.run("user", "add", "v:vpw", "--user", ROOT).rc == 0
    for m in members:
        assert _rpc(m.endpoint, tok, "Range", pb.RangeRequest(key=b"k")) == ("UNKNOWN", "auth: revision in header is old")
    fresh = token(members[2].endpoint, "u", "upw")
    assert _rpc(members[1].endpoint, fresh, "Range", pb.RangeRequest(key=b"k")) == ("OK", "")


def test_simple_token_expires_after_ttl_like_etcd(servers: ServerGroup) -> None:
    outcomes = []
    for kind in ("etcd", "petcd"):
        s = servers.start(kind, extra_args=("--auth-token-ttl=2",))
        enable_auth(s.endpoint)
        tok = token(s.endpoint, "root", "123456")
        used = [_rpc(s.endpoint, tok, "Range", pb.RangeRequest(key=b"k"))]
        time.sleep(1.2)  # each use restarts the TTL
        used.append(_rpc(s.endpoint, tok, "Range", pb.RangeRequest(key=b"k")))
        time.sleep(1.2)
        used.append(_rpc(s.endpoint, tok, "Range", pb.RangeRequest(key=b"k")))
        time.sleep(3.5)
        used.append(_rpc(s.endpoint, tok, "Range", pb.RangeRequest(key=b"k")))
        outcomes.append(used)
    assert outcomes[0] == [("OK", ""), ("OK", ""), ("OK", ""), ("UNAUTHENTICATED", "etcdserver: invalid auth token")]
    assert outcomes[1] == outcomes[0]


def test_auth_survives_snapshot_catch_up(servers: ServerGroup) -> None:
    """A member that was down while users and roles changed, long enough to be sent a backend
    snapshot, comes back with the same auth state (and serves it)."""
    members = servers.start_cluster("petcd", 3, extra_args=("--snapshot-count=20", "--experimental-snapshot-catchup-entries=5"))
    c = Etcdctl([m.endpoint for m in members[:2]])
    members[2].stop()
    deadline = time.monotonic() + 30
    while c.run("put", "warm", "x").rc != 0:  # a new leader if the stopped member led
        assert time.monotonic() < deadline, "no leader after stopping a member"
        time.sleep(0.3)
    enable_auth(members[0].endpoint, ("u", "upw"))
    assert c.run("role", "add", "r", "--user", ROOT).rc == 0
    assert c.run("role", "grant-permission", "r", "read", "k", "--user", ROOT).rc == 0
    assert c.run("user", "grant-role", "u", "r", "--user", ROOT).rc == 0
    for i in range(60):  # well past the snapshot count: the lagging member needs a snapshot
        assert c.run("put", f"fill{i}", "x", "--user", ROOT).rc == 0
    members[2].spawn()
    late = Etcdctl(members[2].endpoint)
    deadline = time.monotonic() + 60
    while True:
        res = late.run("role", "get", "r", "--user", ROOT)
        if res.rc == 0:
            break
        assert time.monotonic() < deadline, str(res)
        time.sleep(0.5)
    assert "KV Read:\n\tk\n" in res.stdout, res.stdout
    assert late.run("put", "k", "v", "--user", "u:upw").rc == 1  # read-only for u, checked there too
    assert late.run("get", "k", "--user", "u:upw").rc == 0
    log = members[2].log_path.read_text()
    assert "installed snapshot" in log


def test_member_replaced_with_auth_on_joins_by_snapshot(servers: ServerGroup) -> None:
    """The notebook's member replacement with auth on (remove, add, start with
    --initial-cluster-state existing): the new member gets the users and roles in its snapshot."""
    args = ("--snapshot-count=20", "--experimental-snapshot-catchup-entries=5")
    members = servers.start_cluster("petcd", 3, extra_args=args)
    enable_auth(members[0].endpoint, ("u", "upw"))
    c = Etcdctl([m.endpoint for m in members[:2]])
    for cmd in (("role", "add", "r"), ("role", "grant-permission", "r", "readwrite", "k"),
                ("user", "grant-role", "u", "r")):
        assert c.run(*cmd, "--user", ROOT).rc == 0
    for i in range(40):
        assert c.run("put", f"fill{i}", "x", "--user", ROOT).rc == 0
    gone = members[2]
    gone_id = gone.ids().member_id
    gone.stop()
    deadline = time.monotonic() + 30
    while (res := c.run("member", "remove", f"{gone_id:x}", "--user", ROOT)).rc != 0:
        assert time.monotonic() < deadline, str(res)
        time.sleep(0.5)
    client_port, peer_port = free_ports(2)
    peer_url = f"http://127.0.0.1:{peer_port}"
    # admin only: a user without the root role cannot add it
    assert "permission denied" in c.run("member", "add", "m4", f"--peer-urls={peer_url}", "--user", "u:upw").stderr
    # strict reconfig (as etcd's) answers "unhealthy cluster" until the peers have been
    # connected for 5 s: retried as an operator would
    while (res := c.run("member", "add", "m4", f"--peer-urls={peer_url}", "--user", ROOT)).rc != 0:
        assert "unhealthy cluster" in res.stderr and time.monotonic() < deadline + 30, str(res)
        time.sleep(0.5)
    initial = ",".join([*(f"{m.name}={m.peer_url}" for m in members[:2]), f"m4={peer_url}"])
    new = Server("petcd", gone.workdir.parent / "m4", name="m4", extra_args=args, client_port=client_port,
                 peer_port=peer_port, initial_cluster=initial, cluster_state="existing")
    servers.servers.append(new)
    new.spawn()
    late = Etcdctl(new.endpoint)
    wait_authenticated(late, ROOT)
    assert late.run("put", "k", "from-m4", "--user", "u:upw").rc == 0
    assert late.run("put", "other", "x", "--user", "u:upw").rc == 1
    assert "u" in late.run("user", "list", "--user", ROOT).stdout.split()
    assert "installed snapshot" in new.log_tail(300)
