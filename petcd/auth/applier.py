"""Auth in the apply path and the read path: what each request needs, and the auth entries' dispatch.

etcd checks permissions where a request takes effect, so the check and the change see the same
auth state: in the apply chain for everything that goes through raft (its authApplierV3), and
just before answering for reads served without raft (serializable / linearizable Range and
read-only Txn, Watch creation). :func:`authorize` is the apply-chain check for one
InternalRequest, run with the credentials its header carries; the ``check_*`` functions are the
same checks for one request of each kind, for the read path.

Rules (etcd 3.5.1's):

* auth management, AuthStatus, UserList and RoleList need the root role; UserGet also passes for
  the user themself, RoleGet for a user holding that role; Authenticate needs nothing;
* Range needs read on its range; Put needs write on its key, read on it too with ``prev_kv``, and
  write on every key already attached to its lease; DeleteRange needs write on its range, read too
  with ``prev_kv``; Txn needs read on every compare's range and, for every op of both branches,
  what that op needs on its own; LeaseRevoke needs write on every key attached to the lease;
* everything passes while auth is disabled.

Two deliberate differences from etcd 3.5.1, both stricter: ops nested in a Txn are checked (3.5.1
skips nested Txns entirely, which lets any user read and write everything through one), and a
Txn's Put is checked like a Put on its own (``prev_kv`` and lease keys; 3.5.1 checks only its key).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from petcd.auth.store import AuthStore
from petcd.auth.tokens import AuthInfo
from petcd.errors import AuthOldRevisionError, PetcdError
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.serverpb import internal_pb2 as serverpb

# The keys attached to a lease (none if there is no such lease): lease id -> keys.
LeaseKeys = Callable[[int], Iterable[bytes]]

# InternalRequest kinds (oneof field names) the auth store applies.
AUTH_REQUEST_KINDS = frozenset({
    "auth_enable", "auth_disable", "auth_status", "authenticate",
    "auth_user_add", "auth_user_delete", "auth_user_change_password", "auth_user_grant_role",
    "auth_user_revoke_role", "auth_user_get", "auth_user_list",
    "auth_role_add", "auth_role_delete", "auth_role_get", "auth_role_list",
    "auth_role_grant_permission", "auth_role_revoke_permission",
})

# ... and those that need the root role.
ADMIN_REQUEST_KINDS = AUTH_REQUEST_KINDS - {"authenticate", "auth_user_get", "auth_role_get"}


def no_lease_keys(lease_id: int) -> Iterable[bytes]:
    return ()


def info_from_header(header: serverpb.RequestHeader) -> AuthInfo:
    """The credentials an entry was proposed with (empty ones if it carried none)."""
    return AuthInfo(header.username, header.auth_revision)


def check_range(store: AuthStore, info: AuthInfo | None, req: pb.RangeRequest) -> None:
    store.is_range_permitted(info, req.key, req.range_end)


def check_put(store: AuthStore, info: AuthInfo | None, req: pb.PutRequest,
              lease_keys: LeaseKeys = no_lease_keys) -> None:
    store.is_put_permitted(info, req.key)
    if req.lease:
        # a user who could not revoke the lease must not attach more keys to it
        check_lease_keys(store, info, lease_keys(req.lease))
    if req.prev_kv:
        store.is_range_permitted(info, req.key)


def check_delete_range(store: AuthStore, info: AuthInfo | None, req: pb.DeleteRangeRequest) -> None:
    store.is_delete_range_permitted(info, req.key, req.range_end)
    if req.prev_kv:
        store.is_range_permitted(info, req.key, req.range_end)


def check_lease_keys(store: AuthStore, info: AuthInfo | None, keys: Iterable[bytes]) -> None:
    """Write permission on each key attached to a lease (LeaseRevoke, and Put with a lease)."""
    for key in keys:
        store.is_put_permitted(info, key)


def check_lease_revoke(store: AuthStore, info: AuthInfo | None, keys: Iterable[bytes]) -> None:
    check_lease_keys(store, info, keys)


def check_txn(store: AuthStore, info: AuthInfo | None, req: pb.TxnRequest,
              lease_keys: LeaseKeys = no_lease_keys) -> None:
    for cmp in req.compare:
        store.is_range_permitted(info, cmp.key, cmp.range_end)
    for op in (*req.success, *req.failure):
        kind = op.WhichOneof("request")
        if kind == "request_range":
            check_range(store, info, op.request_range)
        elif kind == "request_put":
            check_put(store, info, op.request_put, lease_keys)
        elif kind == "request_delete_range":
            check_delete_range(store, info, op.request_delete_range)
        elif kind == "request_txn":
            check_txn(store, info, op.request_txn, lease_keys)


def check_read_still_current(store: AuthStore, info: AuthInfo | None) -> None:
    """After a read served without raft: AuthOldRevisionError if the auth store changed while it
    ran (etcd's doSerialize), so a read never answers under rules that no longer hold."""
    if info is not None and info.revision != 0 and info.revision != store.revision:
        raise AuthOldRevisionError()


def is_watch_permitted(store: AuthStore, info: AuthInfo | None, req: pb.WatchCreateRequest) -> bool:
    """Whether a watch may be created: read on its range. etcd answers a refused one with a
    created-and-canceled response whose cancel reason is
    "rpc error: code = PermissionDenied desc = etcdserver: permission denied"."""
    try:
        store.is_range_permitted(info, req.key, req.range_end)
    except PetcdError:
        return False
    return True


def authorize(store: AuthStore, info: AuthInfo | None, req: serverpb.InternalRequest,
              lease_keys: LeaseKeys = no_lease_keys) -> None:
    """The apply chain's auth step for one committed request, run with the credentials of its
    header (:func:`info_from_header`) before it is dispatched; raises what etcd answers."""
    kind = req.WhichOneof("request")
    if kind is None:
        return
    if kind in ADMIN_REQUEST_KINDS:
        store.is_admin_permitted(info)
    elif kind == "auth_user_get":
        try:
            store.is_admin_permitted(info)
        except PetcdError:
            if info is None or req.auth_user_get.name != info.username:
                raise
    elif kind == "auth_role_get":
        try:
            store.is_admin_permitted(info)
        except PetcdError:
            if info is None or not store.has_role(info.username, req.auth_role_get.role):
                raise
    elif kind == "put":
        check_put(store, info, req.put, lease_keys)
    elif kind == "delete_range":
        check_delete_range(store, info, req.delete_range)
    elif kind == "txn":
        check_txn(store, info, req.txn, lease_keys)
    elif kind == "lease_revoke":
        check_lease_revoke(store, info, lease_keys(req.lease_revoke.ID))


def apply(store: AuthStore, req: serverpb.InternalRequest, index: int) -> object:
    """Apply one committed auth request (a kind in AUTH_REQUEST_KINDS) at raft ``index``;
    returns its response protobuf without a header, or raises."""
    kind = req.WhichOneof("request")
    match kind:
        case "auth_enable":
            return store.auth_enable(req.auth_enable)
        case "auth_disable":
            return store.auth_disable(req.auth_disable)
        case "auth_status":
            return store.auth_status(req.auth_status)
        case "authenticate":
            return store.authenticate(req.authenticate, index)
        case "auth_user_add":
            return store.user_add(req.auth_user_add)
        case "auth_user_delete":
            return store.user_delete(req.auth_user_delete)
        case "auth_user_change_password":
            return store.user_change_password(req.auth_user_change_password)
        case "auth_user_grant_role":
            return store.user_grant_role(req.auth_user_grant_role)
        case "auth_user_revoke_role":
            return store.user_revoke_role(req.auth_user_revoke_role)
        case "auth_user_get":
            return store.user_get(req.auth_user_get)
        case "auth_user_list":
            return store.user_list(req.auth_user_list)
        case "auth_role_add":
            return store.role_add(req.auth_role_add)
        case "auth_role_delete":
            return store.role_delete(req.auth_role_delete)
        case "auth_role_get":
            return store.role_get(req.auth_role_get)
        case "auth_role_list":
            return store.role_list(req.auth_role_list)
        case "auth_role_grant_permission":
            return store.role_grant_permission(req.auth_role_grant_permission)
        case "auth_role_revoke_permission":
            return store.role_revoke_permission(req.auth_role_revoke_permission)
    raise ValueError(f"not an auth request: {kind}")
