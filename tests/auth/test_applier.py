"""The apply-chain and read-path checks for whole requests, and the auth entries' dispatch."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from petcd import errors as e
from petcd.auth import (
    ADMIN_REQUEST_KINDS,
    AUTH_REQUEST_KINDS,
    AuthInfo,
    AuthStore,
    LeaseKeys,
    apply,
    authorize,
    check_read_still_current,
    check_txn,
    info_from_header,
    is_watch_permitted,
)
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.serverpb import internal_pb2 as serverpb
from tests.auth.helpers import (
    READ,
    READWRITE,
    WRITE,
    add_role,
    add_user,
    enable,
    grant_perm,
    grant_role,
    setup_root,
)


@pytest.fixture
def alice(store: AuthStore) -> AuthInfo:
    """alice reads [a, c), writes w*, reads and writes x; root exists; auth enabled."""
    setup_root(store)
    add_user(store, "alice", "pw")
    add_role(store, "r")
    grant_perm(store, "r", READ, b"a", b"c")
    grant_perm(store, "r", WRITE, b"w", b"x")
    grant_perm(store, "r", READWRITE, b"x")
    grant_role(store, "alice", "r")
    enable(store)
    return AuthInfo("alice", store.revision)


def _leases(mapping: dict[int, list[bytes]]) -> LeaseKeys:
    def keys(lease_id: int) -> Iterable[bytes]:
        return mapping.get(lease_id, [])
    return keys


def test_kinds_match_the_proto() -> None:
    oneof = serverpb.InternalRequest.DESCRIPTOR.oneofs_by_name["request"]
    auth_fields = {f.name for f in oneof.fields if f.name.startswith("auth") or f.name == "authenticate"}
    assert auth_fields == AUTH_REQUEST_KINDS
    assert {"authenticate", "auth_user_get", "auth_role_get"}.isdisjoint(ADMIN_REQUEST_KINDS)


def test_admin_requests(store: AuthStore, alice: AuthInfo) -> None:
    root = AuthInfo("root", store.revision)
    for kind in sorted(ADMIN_REQUEST_KINDS):
        req = serverpb.InternalRequest()
        getattr(req, kind).SetInParent()
        with pytest.raises(e.PermissionDeniedError):
            authorize(store, alice, req)
        with pytest.raises(e.UserEmptyError):
            authorize(store, info_from_header(serverpb.RequestHeader()), req)
        authorize(store, root, req)
    # Authenticate needs nothing
    authorize(store, None, serverpb.InternalRequest(authenticate=serverpb.InternalAuthenticateRequest()))


def test_user_get_and_role_get_for_oneself(store: AuthStore, alice: AuthInfo) -> None:
    authorize(store, alice, serverpb.InternalRequest(auth_user_get=pb.AuthUserGetRequest(name="alice")))
    with pytest.raises(e.PermissionDeniedError):
        authorize(store, alice, serverpb.InternalRequest(auth_user_get=pb.AuthUserGetRequest(name="root")))
    authorize(store, alice, serverpb.InternalRequest(auth_role_get=pb.AuthRoleGetRequest(role="r")))
    with pytest.raises(e.PermissionDeniedError):
        authorize(store, alice, serverpb.InternalRequest(auth_role_get=pb.AuthRoleGetRequest(role="root")))
    with pytest.raises(e.UserEmptyError):
        authorize(store, None, serverpb.InternalRequest(auth_user_get=pb.AuthUserGetRequest(name="")))


def test_put_rules(store: AuthStore, alice: AuthInfo) -> None:
    authorize(store, alice, serverpb.InternalRequest(put=pb.PutRequest(key=b"w1")))
    with pytest.raises(e.PermissionDeniedError):
        authorize(store, alice, serverpb.InternalRequest(put=pb.PutRequest(key=b"a")))
    # prev_kv needs read too
    with pytest.raises(e.PermissionDeniedError):
        authorize(store, alice, serverpb.InternalRequest(put=pb.PutRequest(key=b"w1", prev_kv=True)))
    authorize(store, alice, serverpb.InternalRequest(put=pb.PutRequest(key=b"x", prev_kv=True)))
    # a lease whose keys alice cannot write cannot get more keys
    leases = _leases({5: [b"w2", b"secret"], 6: [b"w3"]})
    with pytest.raises(e.PermissionDeniedError):
        authorize(store, alice, serverpb.InternalRequest(put=pb.PutRequest(key=b"w1", lease=5)), leases)
    authorize(store, alice, serverpb.InternalRequest(put=pb.PutRequest(key=b"w1", lease=6)), leases)
    authorize(store, alice, serverpb.InternalRequest(put=pb.PutRequest(key=b"w1", lease=7)), leases)


def test_delete_range_rules(store: AuthStore, alice: AuthInfo) -> None:
    authorize(store, alice, serverpb.InternalRequest(delete_range=pb.DeleteRangeRequest(key=b"w", range_end=b"x")))
    with pytest.raises(e.PermissionDeniedError):
        authorize(store, alice, serverpb.InternalRequest(
            delete_range=pb.DeleteRangeRequest(key=b"w", range_end=b"x", prev_kv=True)))
    with pytest.raises(e.PermissionDeniedError):
        authorize(store, alice, serverpb.InternalRequest(delete_range=pb.DeleteRangeRequest(key=b"a")))


def test_lease_revoke(store: AuthStore, alice: AuthInfo) -> None:
    leases = _leases({5: [b"w2", b"secret"], 6: [b"w3", b"x"]})
    with pytest.raises(e.PermissionDeniedError):
        authorize(store, alice, serverpb.InternalRequest(lease_revoke=pb.LeaseRevokeRequest(ID=5)), leases)
    authorize(store, alice, serverpb.InternalRequest(lease_revoke=pb.LeaseRevokeRequest(ID=6)), leases)


def _op_range(key: bytes, end: bytes = b"") -> pb.RequestOp:
    return pb.RequestOp(request_range=pb.RangeRequest(key=key, range_end=end))


def _op_put(key: bytes, prev_kv: bool = False) -> pb.RequestOp:
    return pb.RequestOp(request_put=pb.PutRequest(key=key, prev_kv=prev_kv))


def test_txn_checks_compares_and_both_branches(store: AuthStore, alice: AuthInfo) -> None:
    ok = pb.TxnRequest(compare=[pb.Compare(key=b"a", range_end=b"b")], success=[_op_put(b"w1")],
                       failure=[_op_range(b"b")])
    check_txn(store, alice, ok)
    bad_compare = pb.TxnRequest(compare=[pb.Compare(key=b"w1")])
    with pytest.raises(e.PermissionDeniedError):
        check_txn(store, alice, bad_compare)
    bad_failure = pb.TxnRequest(success=[_op_put(b"w1")], failure=[_op_put(b"a")])
    with pytest.raises(e.PermissionDeniedError):
        check_txn(store, alice, bad_failure)
    bad_delete = pb.TxnRequest(failure=[pb.RequestOp(
        request_delete_range=pb.DeleteRangeRequest(key=b"x", prev_kv=True))])
    check_txn(store, alice, bad_delete)
    bad_delete.failure[0].request_delete_range.key = b"w1"
    with pytest.raises(e.PermissionDeniedError):
        check_txn(store, alice, bad_delete)


def test_txn_nested_and_put_options_are_checked(store: AuthStore, alice: AuthInfo) -> None:
    # stricter than etcd 3.5.1, which skips nested txns and a txn put's prev_kv and lease
    nested = pb.TxnRequest(success=[pb.RequestOp(request_txn=pb.TxnRequest(failure=[_op_range(b"secret")]))])
    with pytest.raises(e.PermissionDeniedError):
        authorize(store, alice, serverpb.InternalRequest(txn=nested))
    with pytest.raises(e.PermissionDeniedError):
        check_txn(store, alice, pb.TxnRequest(success=[_op_put(b"w1", prev_kv=True)]))
    leased = pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=b"w1", lease=5))])
    with pytest.raises(e.PermissionDeniedError):
        check_txn(store, alice, leased, _leases({5: [b"secret"]}))


def test_watch(store: AuthStore, alice: AuthInfo) -> None:
    assert is_watch_permitted(store, alice, pb.WatchCreateRequest(key=b"a", range_end=b"b"))
    assert not is_watch_permitted(store, alice, pb.WatchCreateRequest(key=b"a", range_end=b"\x00"))
    assert not is_watch_permitted(store, None, pb.WatchCreateRequest(key=b"a"))
    add_role(store, "later")
    assert not is_watch_permitted(store, alice, pb.WatchCreateRequest(key=b"a"))  # old revision


def test_everything_passes_while_disabled(store: AuthStore) -> None:
    authorize(store, None, serverpb.InternalRequest(auth_user_add=pb.AuthUserAddRequest(name="x")))
    authorize(store, None, serverpb.InternalRequest(put=pb.PutRequest(key=b"k", prev_kv=True, lease=1)),
              _leases({1: [b"z"]}))
    assert is_watch_permitted(store, None, pb.WatchCreateRequest(key=b"\x00", range_end=b"\x00"))


def test_dispatch(store: AuthStore) -> None:
    r = apply(store, serverpb.InternalRequest(auth_role_add=pb.AuthRoleAddRequest(name="r")), 3)
    assert isinstance(r, pb.AuthRoleAddResponse)
    listed = apply(store, serverpb.InternalRequest(auth_role_list=pb.AuthRoleListRequest()), 4)
    assert isinstance(listed, pb.AuthRoleListResponse) and list(listed.roles) == ["r"]
    status = apply(store, serverpb.InternalRequest(auth_status=pb.AuthStatusRequest()), 5)
    assert isinstance(status, pb.AuthStatusResponse) and status.authRevision == store.revision
    with pytest.raises(e.RoleAlreadyExistError):
        apply(store, serverpb.InternalRequest(auth_role_add=pb.AuthRoleAddRequest(name="r")), 6)
    with pytest.raises(ValueError):
        apply(store, serverpb.InternalRequest(put=pb.PutRequest(key=b"k")), 7)
    setup_root(store)
    enable(store)
    token = apply(store, serverpb.InternalRequest(
        authenticate=serverpb.InternalAuthenticateRequest(name="root", simple_token="P" * 16)), 8)
    assert isinstance(token, pb.AuthenticateResponse) and token.token == "P" * 16 + ".8"


def test_read_still_current(store: AuthStore, alice: AuthInfo) -> None:
    check_read_still_current(store, alice)
    check_read_still_current(store, None)
    check_read_still_current(store, AuthInfo("", 0))
    add_role(store, "later")
    with pytest.raises(e.AuthOldRevisionError):
        check_read_still_current(store, alice)
