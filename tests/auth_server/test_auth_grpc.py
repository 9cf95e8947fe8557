"""The Auth API and permission checks over gRPC, against real etcd 3.5.1 and petcd: requests
etcdctl cannot send (empty names, no-password users, a missing root role, bad tokens, a lease
revoke over keys the user cannot write, a refused watch), codes and texts compared exactly."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from petcd.proto.authpb import auth_pb2 as authpb
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from tests.auth_server.common import enable_auth, token
from tests.harness import Normaliser, Server, ServerGroup
from tests.harness.grpcdiff import message_dict

pytestmark = pytest.mark.etcd

PASSWORDS = {"root": "123456", "u": "upw", "w": "wpw"}
RW = authpb.Permission.READWRITE


@dataclass(frozen=True)
class Call:
    method: str  # "KV.Put", "Auth.UserAdd", ...
    request: Callable[[dict[str, int]], Message]
    user: str | None = None  # authenticate as this user first (a token per user, kept)
    token: str | None = None  # send this token as it is
    code: str = "OK"  # what real etcd must answer
    capture: str | None = None  # the response's ID under this name (lease grants)
    fresh_token: bool = False  # authenticate again (the old token is expected to be stale)


def req(msg: Message) -> Callable[[dict[str, int]], Message]:
    return lambda _v: msg


class Side:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.channel = grpc.insecure_channel(server.endpoint)
        self.stubs: dict[str, Any] = {
            "KV": pb_grpc.KVStub(self.channel), "Lease": pb_grpc.LeaseStub(self.channel),
            "Auth": pb_grpc.AuthStub(self.channel), "Maintenance": pb_grpc.MaintenanceStub(self.channel),
            "Cluster": pb_grpc.ClusterStub(self.channel), "Watch": pb_grpc.WatchStub(self.channel),
        }
        self.norm = Normaliser.for_servers([server], base_revision=0)
        self.tokens: dict[str, str] = {}
        self.vars: dict[str, int] = {}

    def token_of(self, user: str, fresh: bool) -> str:
        if fresh or user not in self.tokens:
            resp = self.stubs["Auth"].Authenticate(
                pb.AuthenticateRequest(name=user, password=PASSWORDS[user]), timeout=10)
            self.tokens[user] = resp.token
        return self.tokens[user]

    def call(self, c: Call) -> tuple[dict[str, Any], Any]:
        service, method = c.method.split(".")
        md: list[tuple[str, str]] = []
        if c.user is not None:
            md.append(("token", self.token_of(c.user, c.fresh_token)))
        if c.token is not None:
            md.append(("token", c.token))
        try:
            if method == "Watch":
                raw = {"code": "OK", "response": self._watch_first(c.request(self.vars), md)}
            else:
                resp = getattr(self.stubs[service], method)(c.request(self.vars), metadata=md, timeout=10)
                raw = {"code": "OK", "response": message_dict(resp)}
                if c.capture:
                    self.vars[c.capture] = int(resp.ID)
        except grpc.RpcError as err:
            raw = {"code": err.code().name, "details": err.details()}
        if "token" in raw.get("response", {}):
            raw["response"]["token"] = "<TOKEN>"
        return raw, self.norm.json_value(json.loads(json.dumps(raw)))

    def _watch_first(self, request: Message, md: list[tuple[str, str]]) -> dict[str, Any]:
        def requests() -> Iterator[pb.WatchRequest]:
            yield pb.WatchRequest(create_request=request)
            time.sleep(2)

        stream = self.stubs["Watch"].Watch(requests(), metadata=md, timeout=5)
        first = next(iter(stream))
        stream.cancel()
        return message_dict(first)

    def close(self) -> None:
        self.channel.close()


def perm(key: bytes, end: bytes = b"", kind: int = RW) -> authpb.Permission:
    return authpb.Permission(permType=kind, key=key, range_end=end)


CALLS: list[Call] = [
    Call("Auth.AuthStatus", req(pb.AuthStatusRequest())),
    Call("Auth.Authenticate", req(pb.AuthenticateRequest(name="root", password="x")), code="FAILED_PRECONDITION"),
    Call("Auth.UserAdd", req(pb.AuthUserAddRequest(name="", password="x")), code="INVALID_ARGUMENT"),
    Call("Auth.AuthEnable", req(pb.AuthEnableRequest()), code="FAILED_PRECONDITION"),
    Call("Auth.UserAdd", req(pb.AuthUserAddRequest(name="root", password="123456"))),
    Call("Auth.AuthEnable", req(pb.AuthEnableRequest()), code="FAILED_PRECONDITION"),
    Call("Auth.RoleAdd", req(pb.AuthRoleAddRequest(name="")), code="INVALID_ARGUMENT"),
    Call("Auth.UserGrantRole", req(pb.AuthUserGrantRoleRequest(user="root", role="root"))),
    Call("Auth.RoleAdd", req(pb.AuthRoleAddRequest(name="r"))),
    Call("Auth.RoleGrantPermission", req(pb.AuthRoleGrantPermissionRequest(name="r")), code="INVALID_ARGUMENT"),
    Call("Auth.RoleGrantPermission", req(pb.AuthRoleGrantPermissionRequest(name="r", perm=perm(b"a/", b"a0")))),
    Call("Auth.RoleGrantPermission", req(pb.AuthRoleGrantPermissionRequest(
        name="r", perm=perm(b"ro", kind=authpb.Permission.READ)))),
    Call("Auth.RoleGet", req(pb.AuthRoleGetRequest(role="r"))),
    Call("Auth.UserAdd", req(pb.AuthUserAddRequest(name="u", password="upw"))),
    Call("Auth.UserAdd", req(pb.AuthUserAddRequest(name="w", password="wpw"))),
    Call("Auth.UserAdd", req(pb.AuthUserAddRequest(name="np", options=authpb.UserAddOptions(no_password=True)))),
    Call("Auth.UserGrantRole", req(pb.AuthUserGrantRoleRequest(user="u", role="r"))),
    Call("Auth.UserGet", req(pb.AuthUserGetRequest(name="u"))),
    Call("Auth.UserList", req(pb.AuthUserListRequest())),
    Call("Auth.RoleList", req(pb.AuthRoleListRequest())),
    Call("Auth.AuthEnable", req(pb.AuthEnableRequest())),
    Call("Auth.AuthStatus", req(pb.AuthStatusRequest()), user="root"),
    Call("Auth.AuthStatus", req(pb.AuthStatusRequest()), code="INVALID_ARGUMENT"),
    Call("Auth.AuthStatus", req(pb.AuthStatusRequest()), user="u", code="PERMISSION_DENIED"),
    Call("Auth.Authenticate", req(pb.AuthenticateRequest(name="u", password="bad")), code="INVALID_ARGUMENT"),
    Call("Auth.Authenticate", req(pb.AuthenticateRequest(name="nobody", password="x")), code="INVALID_ARGUMENT"),
    Call("Auth.Authenticate", req(pb.AuthenticateRequest(name="np", password="x")), code="UNKNOWN"),
    Call("Auth.Authenticate", req(pb.AuthenticateRequest(name="u", password="upw"))),
    # tokens
    Call("KV.Put", req(pb.PutRequest(key=b"a/1", value=b"v")), token="bogus", code="UNAUTHENTICATED"),
    # (a simple token of an index not applied yet waits: etcd until the client's deadline, petcd
    # for at most the request timeout; not compared)
    Call("KV.Put", req(pb.PutRequest(key=b"a/1", value=b"v")), code="INVALID_ARGUMENT"),
    # key permissions
    Call("KV.Put", req(pb.PutRequest(key=b"a/1", value=b"v")), user="u"),
    Call("KV.Put", req(pb.PutRequest(key=b"b", value=b"v")), user="u", code="PERMISSION_DENIED"),
    Call("KV.Put", req(pb.PutRequest(key=b"ro", value=b"v")), user="u", code="PERMISSION_DENIED"),
    Call("KV.Range", req(pb.RangeRequest(key=b"ro")), user="u"),
    Call("KV.Range", req(pb.RangeRequest(key=b"a/", range_end=b"a0")), user="u"),
    Call("KV.Range", req(pb.RangeRequest(key=b"a/", range_end=b"b")), user="u", code="PERMISSION_DENIED"),
    Call("KV.Range", req(pb.RangeRequest(key=b"b", serializable=True)), user="u", code="PERMISSION_DENIED"),
    Call("KV.Range", req(pb.RangeRequest(key=b"b")), user="w", code="PERMISSION_DENIED"),
    Call("KV.DeleteRange", req(pb.DeleteRangeRequest(key=b"a/1", prev_kv=True)), user="u"),
    Call("KV.DeleteRange", req(pb.DeleteRangeRequest(key=b"b")), user="u", code="PERMISSION_DENIED"),
    Call("KV.Txn", req(pb.TxnRequest(
        compare=[pb.Compare(key=b"a/1", target=pb.Compare.VERSION, result=pb.Compare.EQUAL, version=0)],
        success=[pb.RequestOp(request_put=pb.PutRequest(key=b"a/2", value=b"x"))],
        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=b"ro"))])), user="u"),
    Call("KV.Txn", req(pb.TxnRequest(
        success=[pb.RequestOp(request_put=pb.PutRequest(key=b"a/2", value=b"x"))],
        failure=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"ro"))])), user="u",
        code="PERMISSION_DENIED"),
    Call("KV.Txn", req(pb.TxnRequest(
        success=[pb.RequestOp(request_range=pb.RangeRequest(key=b"ro"))],
        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=b"zz"))])), user="u", code="PERMISSION_DENIED"),
    Call("KV.Compact", req(pb.CompactionRequest(revision=1)), user="w"),
    # leases: revoking needs write on every attached key
    Call("Lease.LeaseGrant", req(pb.LeaseGrantRequest(TTL=600)), user="u", capture="L"),
    Call("KV.Put", lambda v: pb.PutRequest(key=b"a/l", value=b"v", lease=v["L"]), user="u"),
    Call("KV.Put", lambda v: pb.PutRequest(key=b"zz", value=b"v", lease=v["L"]), user="root"),
    Call("KV.Put", lambda v: pb.PutRequest(key=b"a/l2", value=b"v", lease=v["L"]), user="u",
         code="PERMISSION_DENIED"),
    Call("Lease.LeaseRevoke", lambda v: pb.LeaseRevokeRequest(ID=v["L"]), user="u", code="PERMISSION_DENIED"),
    Call("Lease.LeaseRevoke", lambda v: pb.LeaseRevokeRequest(ID=v["L"]), user="w", code="PERMISSION_DENIED"),
    Call("Lease.LeaseRevoke", lambda v: pb.LeaseRevokeRequest(ID=v["L"]), user="root"),
    # watch creation
    Call("Watch.Watch", req(pb.WatchCreateRequest(key=b"zz", watch_id=7)), user="u"),
    Call("Watch.Watch", req(pb.WatchCreateRequest(key=b"a/", range_end=b"a0")), user="u"),
    Call("Watch.Watch", req(pb.WatchCreateRequest(key=b"a/")), token="bogus"),
    # management of oneself and of others
    Call("Auth.UserGet", req(pb.AuthUserGetRequest(name="u")), user="u"),
    Call("Auth.UserGet", req(pb.AuthUserGetRequest(name="w")), user="u", code="PERMISSION_DENIED"),
    Call("Auth.RoleGet", req(pb.AuthRoleGetRequest(role="r")), user="u"),
    Call("Auth.RoleGet", req(pb.AuthRoleGetRequest(role="r")), user="w", code="PERMISSION_DENIED"),
    Call("Auth.UserAdd", req(pb.AuthUserAddRequest(name="x", password="x")), user="u", code="PERMISSION_DENIED"),
    Call("Auth.UserAdd", req(pb.AuthUserAddRequest(name="u", password="x")), user="root",
         code="FAILED_PRECONDITION"),
    Call("Auth.UserDelete", req(pb.AuthUserDeleteRequest(name="root")), user="root", code="INVALID_ARGUMENT"),
    # admin-only maintenance and cluster calls; the others pass
    Call("Maintenance.Hash", req(pb.HashRequest()), user="u", code="UNKNOWN"),
    Call("Maintenance.HashKV", req(pb.HashKVRequest()), code="UNKNOWN"),
    Call("Maintenance.Defragment", req(pb.DefragmentRequest()), token="bogus", code="UNKNOWN"),
    Call("Maintenance.Alarm", req(pb.AlarmRequest(action=pb.AlarmRequest.GET)), user="u"),
    Call("Maintenance.Status", req(pb.StatusRequest())),
    Call("Cluster.MemberList", req(pb.MemberListRequest())),
    Call("Cluster.MemberRemove", req(pb.MemberRemoveRequest(ID=1234)), user="u", code="PERMISSION_DENIED"),
    Call("Cluster.MemberAdd", req(pb.MemberAddRequest(peerURLs=["http://127.0.0.1:1"])), code="INVALID_ARGUMENT"),
    # a changed password ends the user's simple tokens
    Call("Auth.UserChangePassword", req(pb.AuthUserChangePasswordRequest(name="u", password="upw")), user="root"),
    Call("KV.Range", req(pb.RangeRequest(key=b"ro")), user="u", code="UNAUTHENTICATED"),
    Call("KV.Range", req(pb.RangeRequest(key=b"ro")), user="u", fresh_token=True),
    Call("Auth.RoleRevokePermission", req(pb.AuthRoleRevokePermissionRequest(role="r", key=b"ro")), user="root"),
    Call("KV.Range", req(pb.RangeRequest(key=b"ro")), user="u", code="PERMISSION_DENIED"),
    Call("Auth.RoleDelete", req(pb.AuthRoleDeleteRequest(role="r")), user="root"),
    Call("Auth.UserGet", req(pb.AuthUserGetRequest(name="u")), user="root"),
    Call("Auth.AuthDisable", req(pb.AuthDisableRequest()), user="u", code="PERMISSION_DENIED"),
    Call("Auth.AuthDisable", req(pb.AuthDisableRequest()), user="root"),
    Call("KV.Put", req(pb.PutRequest(key=b"b", value=b"v")), token="bogus", code="UNAUTHENTICATED"),
    Call("KV.Put", req(pb.PutRequest(key=b"b", value=b"v"))),
    Call("Auth.AuthStatus", req(pb.AuthStatusRequest())),
]


def test_auth_api_like_etcd(servers: ServerGroup) -> None:
    ref, tgt = Side(servers.start("etcd")), Side(servers.start_target())
    diffs: list[str] = []
    try:
        for i, c in enumerate(CALLS, 1):
            raw, expected = ref.call(c)
            assert raw["code"] == c.code, f"call {i} {c.method} is wrong against real etcd: {raw}"
            _, got = tgt.call(c)
            if got != expected:
                diffs.append(f"call {i} {c.method}:\n etcd:  {expected}\n petcd: {got}")
    finally:
        ref.close()
        tgt.close()
    assert not diffs, f"{len(diffs)} of {len(CALLS)} calls differ:\n" + "\n".join(diffs)


def test_leases_expire_with_auth_on_like_etcd(servers: ServerGroup) -> None:
    """The leader revokes expired leases itself, as root: a user's lease expires and takes its
    keys with it although no client asked (and the user could not revoke keys it cannot write)."""
    for kind in ("etcd", "petcd"):
        s = servers.start(kind)
        enable_auth(s.endpoint)
        tok = token(s.endpoint, "root", "123456")
        md = [("token", tok)]
        with grpc.insecure_channel(s.endpoint) as ch:
            kv, lease = pb_grpc.KVStub(ch), pb_grpc.LeaseStub(ch)
            lease_id = lease.LeaseGrant(pb.LeaseGrantRequest(TTL=2), metadata=md, timeout=10).ID
            kv.Put(pb.PutRequest(key=b"leased", value=b"v", lease=lease_id), metadata=md, timeout=10)
            deadline = time.monotonic() + 20
            while kv.Range(pb.RangeRequest(key=b"leased"), metadata=md, timeout=10).count:
                assert time.monotonic() < deadline, f"{kind}: the lease never expired"
                time.sleep(0.3)
            left = lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lease_id), metadata=md, timeout=10)
            assert left.TTL == -1, kind
        s.stop()
