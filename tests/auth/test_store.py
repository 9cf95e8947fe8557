"""The auth store's operations: outcomes, errors and auth-revision bumps as etcd 3.5.1's, and
persistence through restarts and backend snapshots."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from petcd import errors as e
from petcd.auth import AuthInfo, AuthStore, SimpleTokenProvider, passwords
from petcd.auth.store import ENABLED_KEY, REVISION_KEY
from petcd.backend import AUTH, AUTH_ROLES, AUTH_USERS, Backend
from petcd.clock import ManualClock
from petcd.proto.authpb import auth_pb2 as authpb
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from tests.auth.conftest import COST
from tests.auth.helpers import (
    READ,
    READWRITE,
    WRITE,
    add_role,
    add_user,
    change_password,
    enable,
    grant_perm,
    grant_role,
    login,
    setup_root,
)


def test_new_store_starts_at_revision_1_disabled(store: AuthStore, backend: Backend) -> None:
    assert store.revision == 1 and not store.enabled
    assert store.auth_status() == pb.AuthStatusResponse(enabled=False, authRevision=1)
    assert backend.get(AUTH, REVISION_KEY) == (1).to_bytes(8, "big")


def test_enable_needs_root_user_with_root_role(store: AuthStore) -> None:
    with pytest.raises(e.RootUserNotExistError):
        enable(store)
    add_user(store, "root")
    with pytest.raises(e.RootRoleNotExistError):
        enable(store)
    # the root role can be granted without a root role record
    grant_role(store, "root", "root")
    rev = store.revision
    enable(store)
    assert store.enabled and store.revision == rev  # enabling does not bump the revision
    enable(store)  # already enabled: ignored
    assert store.revision == rev


def test_disable_bumps_revision_once(store: AuthStore) -> None:
    store.auth_disable()  # not enabled: nothing happens
    assert store.revision == 1
    setup_root(store)
    enable(store)
    rev = store.revision
    store.auth_disable()
    assert not store.enabled and store.revision == rev + 1
    store.auth_disable()
    assert store.revision == rev + 1


def test_user_add_errors_and_revision(store: AuthStore) -> None:
    with pytest.raises(e.UserEmptyError):
        add_user(store, "")
    add_user(store, "alice")
    assert store.revision == 2
    with pytest.raises(e.UserAlreadyExistError):
        add_user(store, "alice")
    assert store.revision == 2
    assert store.user_list().users == ["alice"]


def test_user_record_holds_a_bcrypt_hash_never_the_password(store: AuthStore, backend: Backend) -> None:
    add_user(store, "alice", "s3cret")
    raw = backend.get(AUTH_USERS, b"alice")
    assert raw is not None and b"s3cret" not in raw
    user = authpb.User.FromString(raw)
    assert user.password.startswith(b"$2a$04$") and passwords.check_password(user.password, "s3cret")
    assert user.HasField("options") and not user.options.no_password


def test_no_password_user(store: AuthStore) -> None:
    add_user(store, "svc", "ignored", no_password=True)
    user = authpb.User.FromString(store._be.get(AUTH_USERS, b"svc") or b"")
    assert user.password == b"" and user.options.no_password
    setup_root(store)
    enable(store)
    with pytest.raises(e.NoPasswordUserError):
        store.check_password("svc", "ignored")
    # changing the password of a no-password user keeps it without one
    change_password(store, "svc", "new")
    assert authpb.User.FromString(store._be.get(AUTH_USERS, b"svc") or b"").password == b""


def test_bad_hash_in_request_is_no_password_user_error(store: AuthStore) -> None:
    with pytest.raises(e.NoPasswordUserError):
        store.user_add(pb.AuthUserAddRequest(name="x", hashedPassword="***not base64***"))


def test_check_password(store: AuthStore) -> None:
    add_user(store, "alice", "pw")
    with pytest.raises(e.AuthNotEnabledError):
        store.check_password("alice", "pw")
    setup_root(store)
    enable(store)
    assert store.check_password("alice", "pw") == store.revision
    with pytest.raises(e.AuthFailedError):
        store.check_password("alice", "wrong")
    with pytest.raises(e.AuthFailedError):
        store.check_password("nobody", "pw")
    change_password(store, "alice", "pw2")
    with pytest.raises(e.AuthFailedError):
        store.check_password("alice", "pw")
    store.check_password("alice", "pw2")


def test_user_delete(store: AuthStore) -> None:
    with pytest.raises(e.UserNotFoundError):
        store.user_delete(pb.AuthUserDeleteRequest(name="alice"))
    setup_root(store)
    add_user(store, "alice")
    rev = store.revision
    store.user_delete(pb.AuthUserDeleteRequest(name="alice"))
    assert store.revision == rev + 1 and store.user_list().users == ["root"]
    enable(store)
    with pytest.raises(e.InvalidAuthMgmtError):
        store.user_delete(pb.AuthUserDeleteRequest(name="root"))
    store.auth_disable()
    store.user_delete(pb.AuthUserDeleteRequest(name="root"))  # allowed while disabled


def test_grant_and_revoke_roles(store: AuthStore) -> None:
    add_user(store, "alice")
    with pytest.raises(e.UserNotFoundError):
        grant_role(store, "bob", "r1")
    with pytest.raises(e.RoleNotFoundError):
        grant_role(store, "alice", "r1")
    add_role(store, "r2")
    add_role(store, "r1")
    grant_role(store, "alice", "r2")
    grant_role(store, "alice", "r1")
    rev = store.revision
    grant_role(store, "alice", "r1")  # already granted: no change, no bump
    assert store.revision == rev
    assert list(store.user_get(pb.AuthUserGetRequest(name="alice")).roles) == ["r1", "r2"]  # sorted
    with pytest.raises(e.RoleNotGrantedError):
        store.user_revoke_role(pb.AuthUserRevokeRoleRequest(name="alice", role="r3"))
    with pytest.raises(e.UserNotFoundError):
        store.user_revoke_role(pb.AuthUserRevokeRoleRequest(name="bob", role="r1"))
    store.user_revoke_role(pb.AuthUserRevokeRoleRequest(name="alice", role="r1"))
    assert store.revision == rev + 1
    assert list(store.user_get(pb.AuthUserGetRequest(name="alice")).roles) == ["r2"]
    with pytest.raises(e.UserNotFoundError):
        store.user_get(pb.AuthUserGetRequest(name="bob"))


def test_root_cannot_lose_root_role_while_enabled(store: AuthStore) -> None:
    setup_root(store)
    enable(store)
    with pytest.raises(e.InvalidAuthMgmtError):
        store.user_revoke_role(pb.AuthUserRevokeRoleRequest(name="root", role="root"))
    store.auth_disable()
    store.user_revoke_role(pb.AuthUserRevokeRoleRequest(name="root", role="root"))


def test_roles(store: AuthStore) -> None:
    with pytest.raises(e.RoleEmptyError):
        add_role(store, "")
    add_role(store, "b")
    add_role(store, "a")
    with pytest.raises(e.RoleAlreadyExistError):
        add_role(store, "a")
    assert store.role_list().roles == ["a", "b"]
    with pytest.raises(e.RoleNotFoundError):
        store.role_get(pb.AuthRoleGetRequest(role="c"))
    with pytest.raises(e.RoleNotFoundError):
        store.role_delete(pb.AuthRoleDeleteRequest(role="c"))
    assert store.role_get(pb.AuthRoleGetRequest(role="a")).perm == []


def test_role_delete_removes_it_from_users(store: AuthStore) -> None:
    add_role(store, "r")
    add_role(store, "s")
    add_user(store, "alice")
    add_user(store, "bob")
    grant_role(store, "alice", "r")
    grant_role(store, "alice", "s")
    grant_role(store, "bob", "s")
    rev = store.revision
    store.role_delete(pb.AuthRoleDeleteRequest(role="r"))
    assert store.revision == rev + 1  # one bump for the whole deletion
    assert list(store.user_get(pb.AuthUserGetRequest(name="alice")).roles) == ["s"]
    assert list(store.user_get(pb.AuthUserGetRequest(name="bob")).roles) == ["s"]
    assert store.role_list().roles == ["s"]


def test_root_role_cannot_be_deleted_while_enabled(store: AuthStore) -> None:
    add_role(store, "root")
    setup_root(store)
    enable(store)
    with pytest.raises(e.InvalidAuthMgmtError):
        store.role_delete(pb.AuthRoleDeleteRequest(role="root"))


def test_grant_permission_updates_or_adds_sorted(store: AuthStore) -> None:
    with pytest.raises(e.PermissionNotGivenError):
        store.role_grant_permission(pb.AuthRoleGrantPermissionRequest(name="r"))
    with pytest.raises(e.RoleNotFoundError):
        grant_perm(store, "r", READ, b"k")
    add_role(store, "r")
    grant_perm(store, "r", READ, b"m")
    grant_perm(store, "r", WRITE, b"a", b"c")
    grant_perm(store, "r", READ, b"a")
    rev = store.revision
    grant_perm(store, "r", READWRITE, b"a", b"c")  # same key and end as the first "a": updated
    assert store.revision == rev + 1  # an update bumps too
    perms = [(p.key, p.range_end, p.permType) for p in store.role_get(pb.AuthRoleGetRequest(role="r")).perm]
    assert perms == [(b"a", b"c", READWRITE), (b"a", b"", READ), (b"m", b"", READ)]


def test_revoke_permission_exact_match(store: AuthStore) -> None:
    add_role(store, "r")
    grant_perm(store, "r", READ, b"a", b"c")
    with pytest.raises(e.PermissionNotGrantedError):
        store.role_revoke_permission(pb.AuthRoleRevokePermissionRequest(role="r", key=b"a"))
    with pytest.raises(e.RoleNotFoundError):
        store.role_revoke_permission(pb.AuthRoleRevokePermissionRequest(role="x", key=b"a"))
    rev = store.revision
    store.role_revoke_permission(pb.AuthRoleRevokePermissionRequest(role="r", key=b"a", range_end=b"c"))
    assert store.revision == rev + 1 and store.role_get(pb.AuthRoleGetRequest(role="r")).perm == []


def _alice_with(store: AuthStore, *perms: tuple[authpb.Permission.Type, bytes, bytes]) -> AuthInfo:
    setup_root(store)
    add_user(store, "alice", "pw")
    add_role(store, "r")
    for t, k, end in perms:
        grant_perm(store, "r", t, k, end)
    grant_role(store, "alice", "r")
    enable(store)
    return login(store, "alice", "pw")[1]


def test_permission_checks(store: AuthStore) -> None:
    info = _alice_with(store, (READ, b"a", b"c"), (WRITE, b"w", b""))
    store.is_range_permitted(info, b"a")
    store.is_range_permitted(info, b"a", b"c")
    store.is_range_permitted(info, b"b", b"bz")
    with pytest.raises(e.PermissionDeniedError):
        store.is_range_permitted(info, b"a", b"d")
    with pytest.raises(e.PermissionDeniedError):
        store.is_range_permitted(info, b"a", b"\x00")
    store.is_put_permitted(info, b"w")
    with pytest.raises(e.PermissionDeniedError):
        store.is_put_permitted(info, b"a")
    with pytest.raises(e.PermissionDeniedError):
        store.is_delete_range_permitted(info, b"w", b"x")
    with pytest.raises(e.PermissionDeniedError):
        store.is_admin_permitted(info)
    root = login(store, "root", "rootpw", index=101)[1]
    store.is_admin_permitted(root)
    store.is_range_permitted(root, b"\x00", b"\x00")  # root bypasses the key checks
    store.is_put_permitted(root, b"anything")


def test_checks_without_credentials_and_with_unknown_user(store: AuthStore) -> None:
    _alice_with(store)
    with pytest.raises(e.UserEmptyError):
        store.is_range_permitted(None, b"a")
    with pytest.raises(e.UserEmptyError):
        store.is_put_permitted(AuthInfo("", 0), b"a")
    with pytest.raises(e.UserEmptyError):
        store.is_admin_permitted(AuthInfo("", 5))
    with pytest.raises(e.PermissionDeniedError):
        store.is_put_permitted(AuthInfo("ghost", store.revision), b"a")
    with pytest.raises(e.UserNotFoundError):
        store.is_admin_permitted(AuthInfo("ghost", store.revision))


def test_old_revision_is_refused_for_key_checks_not_admin(store: AuthStore) -> None:
    info = _alice_with(store, (READ, b"a", b""))
    root = AuthInfo("root", store.revision)
    add_role(store, "other")  # any change moves the revision on
    with pytest.raises(e.AuthOldRevisionError):
        store.is_range_permitted(info, b"a")
    with pytest.raises(e.AuthOldRevisionError):
        store.is_range_permitted(root, b"a")
    store.is_admin_permitted(root)  # etcd checks no revision for admin


def test_cache_follows_changes(store: AuthStore) -> None:
    _alice_with(store, (READ, b"a", b""))
    store.is_range_permitted(AuthInfo("alice", store.revision), b"a")
    store.role_revoke_permission(pb.AuthRoleRevokePermissionRequest(role="r", key=b"a"))
    with pytest.raises(e.PermissionDeniedError):
        store.is_range_permitted(AuthInfo("alice", store.revision), b"a")
    grant_perm(store, "r", READ, b"a")
    store.is_range_permitted(AuthInfo("alice", store.revision), b"a")
    store.user_revoke_role(pb.AuthUserRevokeRoleRequest(name="alice", role="r"))
    with pytest.raises(e.PermissionDeniedError):
        store.is_range_permitted(AuthInfo("alice", store.revision), b"a")
    grant_role(store, "alice", "root")
    store.is_put_permitted(AuthInfo("alice", store.revision), b"zzz")
    store.is_admin_permitted(AuthInfo("alice", store.revision))


def test_disabled_allows_everything(store: AuthStore) -> None:
    store.is_put_permitted(None, b"k")
    store.is_range_permitted(AuthInfo("nobody", 0), b"k", b"\x00")
    store.is_admin_permitted(None)


def test_authenticate_apply(store: AuthStore) -> None:
    from petcd.proto.serverpb import internal_pb2 as serverpb

    add_user(store, "alice", "pw")
    req = serverpb.InternalAuthenticateRequest(name="alice", simple_token="abc")
    with pytest.raises(e.AuthNotEnabledError):
        store.authenticate(req, 5)
    setup_root(store)
    enable(store)
    assert store.authenticate(req, 5).token == "abc.5"
    assert store.auth_info_from_token("abc.5") == AuthInfo("alice", store.revision)
    with pytest.raises(e.AuthFailedError):
        store.authenticate(serverpb.InternalAuthenticateRequest(name="bob", simple_token="x"), 6)
    add_user(store, "svc", no_password=True)
    with pytest.raises(e.AuthFailedError):
        store.authenticate(serverpb.InternalAuthenticateRequest(name="svc", simple_token="x"), 7)


def test_tokens_end_with_user_delete_password_change_and_disable(store: AuthStore) -> None:
    setup_root(store)
    add_user(store, "alice", "pw")
    add_user(store, "bob", "pw")
    enable(store)
    ta, _ = login(store, "alice", "pw", 10)
    tb, _ = login(store, "bob", "pw", 11)
    tr, _ = login(store, "root", "rootpw", 12)
    change_password(store, "alice", "pw2")
    with pytest.raises(e.InvalidAuthTokenError):
        store.auth_info_from_token(ta)
    store.auth_info_from_token(tb)
    store.user_delete(pb.AuthUserDeleteRequest(name="bob"))
    with pytest.raises(e.InvalidAuthTokenError):
        store.auth_info_from_token(tb)
    store.auth_info_from_token(tr)
    store.auth_disable()
    with pytest.raises(e.InvalidAuthTokenError):
        store.auth_info_from_token(tr)


def test_metadata_and_cn(store: AuthStore) -> None:
    setup_root(store)
    enable(store)
    token, info = login(store, "root", "rootpw")
    assert store.auth_info_from_metadata({}) is None
    assert store.auth_info_from_metadata([("token", token)]) == info
    assert store.auth_info_from_metadata([("authorization", token.encode())]) == info
    assert store.auth_info_from_metadata((("user-agent", "x"), ("token", token))) == info
    with pytest.raises(e.InvalidAuthTokenError):
        store.auth_info_from_metadata({"token": "nope.1"})
    assert store.auth_info_from_cn("alice") == AuthInfo("alice", store.revision)
    assert store.token_wait_index(token) == 100


def _reopen(path: Path, clock: ManualClock) -> tuple[Backend, AuthStore]:
    be = Backend(path, map_size=64 << 20)
    return be, AuthStore(be, SimpleTokenProvider(clock, random.Random(1)), bcrypt_cost=COST)


def test_state_survives_restart(tmp_path: Path, clock: ManualClock) -> None:
    be, store = _reopen(tmp_path / "db", clock)
    setup_root(store)
    add_user(store, "alice", "pw")
    add_role(store, "r")
    grant_perm(store, "r", READ, b"a", b"b")
    grant_role(store, "alice", "r")
    enable(store)
    token, _ = login(store, "alice", "pw")
    rev = store.revision
    be.force_commit()
    be.close()
    be, store = _reopen(tmp_path / "db", clock)
    try:
        assert store.enabled and store.revision == rev
        assert store.user_list().users == ["alice", "root"]
        assert [(p.key, p.range_end) for p in store.role_get(pb.AuthRoleGetRequest(role="r")).perm] == [
            (b"a", b"b")]
        store.check_password("alice", "pw")
        store.is_range_permitted(AuthInfo("alice", rev), b"a")
        with pytest.raises(e.InvalidAuthTokenError):  # simple tokens live in memory only
            store.auth_info_from_token(token)
    finally:
        be.close()


def test_state_travels_in_a_backend_snapshot(tmp_path: Path, clock: ManualClock) -> None:
    be, store = _reopen(tmp_path / "db", clock)
    setup_root(store)
    add_user(store, "alice", "pw")
    enable(store)
    be.force_commit()
    be.snapshot_to(tmp_path / "snap.db")
    be.close()
    be2, restored = _reopen(tmp_path / "snap.db", clock)
    try:
        assert restored.enabled and restored.revision == store.revision
        assert restored.user_list().users == ["alice", "root"]
        assert be2.get(AUTH, ENABLED_KEY) == b"\x01"
        assert be2.get(AUTH_ROLES, b"root") is None  # the root role was granted without a record
    finally:
        be2.close()


def test_recover_after_backend_contents_change(backend: Backend, clock: ManualClock, store: AuthStore) -> None:
    # another store instance on the same backend stands in for an installed snapshot
    setup_root(store)
    enable(store)
    other = AuthStore(backend, SimpleTokenProvider(clock, random.Random(2)), bcrypt_cost=COST)
    other.auth_disable()
    assert store.enabled
    store.recover()
    assert not store.enabled and store.revision == other.revision


def test_invalid_cost_falls_back_to_default(backend: Backend, clock: ManualClock) -> None:
    s = AuthStore(backend, SimpleTokenProvider(clock, random.Random(1)), bcrypt_cost=99)
    assert s.bcrypt_cost == 10


def test_empty_and_overlong_names(store: AuthStore) -> None:
    # the backend (LMDB) has no empty keys and none past 511 bytes: lookups of such names find
    # nothing, adding one is refused
    setup_root(store)
    enable(store)
    assert not store.has_role("", "root")
    with pytest.raises(e.UserNotFoundError):
        store.user_get(pb.AuthUserGetRequest(name=""))
    with pytest.raises(e.RoleNotFoundError):
        store.role_get(pb.AuthRoleGetRequest(role="x" * 600))
    with pytest.raises(e.PermissionDeniedError):
        store.is_put_permitted(AuthInfo("", store.revision), b"k")  # e.g. a certificate without a CN
    with pytest.raises(e.RequestTooLargeError):
        add_user(store, "u" * 512)
    with pytest.raises(e.RequestTooLargeError):
        add_role(store, "r" * 512)
    add_role(store, "r" * 511)


def test_two_members_applying_the_same_entries_hold_the_same_bytes(tmp_path: Path, clock: ManualClock) -> None:
    """Hashing happens before the proposal, so applying is deterministic: the backends of two
    members that applied the same entries hash the same (Maintenance.Hash / corruption checks)."""
    from petcd.auth import apply, prepare_user_add
    from petcd.proto.serverpb import internal_pb2 as serverpb

    entries = [
        serverpb.InternalRequest(auth_user_add=prepare_user_add(pb.AuthUserAddRequest(name="root", password="p"), COST)),
        serverpb.InternalRequest(auth_user_grant_role=pb.AuthUserGrantRoleRequest(user="root", role="root")),
        serverpb.InternalRequest(auth_role_add=pb.AuthRoleAddRequest(name="r")),
        serverpb.InternalRequest(auth_role_grant_permission=pb.AuthRoleGrantPermissionRequest(
            name="r", perm=authpb.Permission(permType=READ, key=b"a", range_end=b"\x00"))),
        serverpb.InternalRequest(auth_enable=pb.AuthEnableRequest()),
        serverpb.InternalRequest(authenticate=serverpb.InternalAuthenticateRequest(name="root", simple_token="T" * 16)),
    ]
    hashes, tokens = [], []
    for i in range(2):
        be, s = _reopen(tmp_path / f"m{i}.db", clock)
        for index, req in enumerate(entries, start=10):
            resp = apply(s, req, index)
        assert isinstance(resp, pb.AuthenticateResponse)
        tokens.append(resp.token)
        # every member knows the simple token issued by the entry
        assert s.auth_info_from_token(resp.token).username == "root"
        be.force_commit()
        hashes.append(be.hash())
        be.close()
    assert hashes[0] == hashes[1] and tokens[0] == tokens[1] == "T" * 16 + ".15"
