"""bcrypt hashing as etcd does it: $2a$ hashes at the configured cost, hashed before the proposal."""

from __future__ import annotations

import base64

from petcd.auth import passwords
from petcd.proto.authpb import auth_pb2 as authpb
from petcd.proto.etcdserverpb import rpc_pb2 as pb


def test_hash_and_check() -> None:
    h = passwords.hash_password("secret", 5)
    assert h.startswith(b"$2a$05$") and len(h) == 60
    assert passwords.check_password(h, "secret")
    assert not passwords.check_password(h, "Secret")
    assert not passwords.check_password(b"", "")
    assert not passwords.check_password(b"not a hash", "x")
    assert passwords.check_password(passwords.hash_password("", 4), "")


def test_only_the_first_72_bytes_count_as_in_go() -> None:
    long = "p" * 72
    h = passwords.hash_password(long + "tail", 4)
    assert passwords.check_password(h, long)
    assert passwords.check_password(h, long + "other tail")
    assert not passwords.check_password(h, long[:-1])


def test_cost_rule() -> None:
    assert passwords.effective_cost(4) == 4 and passwords.effective_cost(31) == 31
    assert passwords.effective_cost(3) == 10 and passwords.effective_cost(32) == 10


def test_prepare_user_add_hashes_and_drops_the_password() -> None:
    req = pb.AuthUserAddRequest(name="alice", password="pw")
    out = passwords.prepare_user_add(req, 4)
    assert out.password == "" and req.password == "pw"  # the caller's request is left alone
    assert passwords.check_password(base64.b64decode(out.hashedPassword), "pw")
    nopw = pb.AuthUserAddRequest(name="svc", password="pw", options=authpb.UserAddOptions(no_password=True))
    assert passwords.prepare_user_add(nopw, 4) == nopw


def test_prepare_change_password() -> None:
    out = passwords.prepare_change_password(pb.AuthUserChangePasswordRequest(name="a", password="x"), 4)
    assert out.password == "" and passwords.check_password(passwords.decode_hash(out.hashedPassword), "x")
    given = pb.AuthUserChangePasswordRequest(name="a", hashedPassword="abc=")
    assert passwords.prepare_change_password(given, 4) == given
