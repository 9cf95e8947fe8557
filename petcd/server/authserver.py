"""The member's side of auth: whose request this is, and the Auth RPCs (etcd's v3_server.go).

Credentials travel with a request as etcd's travel in its Go context: the API layer resolves
them once per call (:func:`credentials`, from the gRPC metadata ``token``, or a verified client
certificate's common name) and :func:`run_as` puts them in the :data:`CALLER` context variable
of the task serving the call. ``EtcdServer.propose`` stamps every proposal's header with them
(``username``, ``auth_revision``), the apply chain checks them on every member
(``petcd.server.apply.AuthApplier``), and the read path checks them before reading locally.

Requests the member makes itself (the leader's lease-expiry revocations) run as :data:`SERVER`:
root at the auth revision of the moment they are proposed (etcd's ``WithRoot``).

Slow work stays off the event loop: bcrypt hashing (UserAdd, UserChangePassword) and the
password comparison of Authenticate run in worker threads (``bcrypt`` releases the GIL).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from petcd import auth, errors
from petcd.auth import AuthInfo, AuthStore
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.serverpb import internal_pb2 as serverpb

if TYPE_CHECKING:
    from petcd.server.etcdserver import EtcdServer

log = logging.getLogger("petcd.server")


class _Server:
    """The marker for requests the member makes itself: root, at the current auth revision."""

    __slots__ = ()


SERVER = _Server()

# the credentials of the call this task serves (None: none given)
CALLER: ContextVar[AuthInfo | _Server | None] = ContextVar("petcd_caller", default=None)

Metadata = Iterable[tuple[str, str | bytes]]


def caller_info(store: AuthStore) -> AuthInfo | None:
    """The current task's credentials as the auth store checks them."""
    who = CALLER.get()
    if isinstance(who, _Server):
        return AuthInfo(auth.ROOT_USER, store.revision)
    return who


def stamp(header: serverpb.RequestHeader, store: AuthStore) -> None:
    """Every proposal but Authenticate carries its caller's credentials (etcd's raftRequest)."""
    info = caller_info(store)
    if info is not None:
        header.username = info.username
        header.auth_revision = info.revision


def _token_of(metadata: Metadata) -> str | None:
    found: dict[str, str] = {}
    for key, value in metadata:
        k = key.lower()
        if k in auth.TOKEN_METADATA_KEYS and k not in found:
            found[k] = value.decode() if isinstance(value, bytes) else value
    for k in auth.TOKEN_METADATA_KEYS:
        if k in found:
            return found[k]
    return None


async def credentials(srv: EtcdServer, metadata: Metadata, common_name: str | None = None) -> AuthInfo | None:
    """etcd's AuthInfoFromCtx: the token's user (a simple token is known only once its
    Authenticate entry is applied here, so wait for its index), InvalidAuthTokenError for a token
    that is not valid (also while auth is disabled: then no token is, as in etcd); without a token,
    the verified client certificate's common name when there is one and auth is on; else nobody."""
    token = _token_of(metadata)
    if token is not None:
        index = srv.auth_store.token_wait_index(token)
        if index > srv.applied_index:
            await srv.wait_applied(index)
        # the store is looked up again: a snapshot may have replaced it while waiting
        return srv.auth_store.auth_info_from_token(token)
    if common_name and srv.auth_store.enabled:
        return srv.auth_store.auth_info_from_cn(common_name)
    return None


def credentials_now(srv: EtcdServer, metadata: Metadata, common_name: str | None = None) -> AuthInfo | None:
    """:func:`credentials` without waiting (a simple token not yet applied here is invalid)."""
    token = _token_of(metadata)
    if token is not None:
        return srv.auth_store.auth_info_from_token(token)
    if common_name and srv.auth_store.enabled:
        return srv.auth_store.auth_info_from_cn(common_name)
    return None


def run_as(info: AuthInfo | None) -> None:
    """The rest of the current task runs with ``info`` as its caller."""
    CALLER.set(info)


def check_admin(srv: EtcdServer, info: AuthInfo | None) -> None:
    """The root role (Defragment, Snapshot, Hash, HashKV, member changes), or raise."""
    srv.auth_store.is_admin_permitted(info)


# -- the Auth RPCs ------------------------------------------------------------------------------

async def _propose(srv: EtcdServer, req: serverpb.InternalRequest) -> Any:
    resp = await srv.propose(req)
    resp.header.CopyFrom(srv.header())
    return resp


_KIND_OF: dict[type[Any], str] = {
    pb.AuthEnableRequest: "auth_enable",
    pb.AuthDisableRequest: "auth_disable",
    pb.AuthStatusRequest: "auth_status",
    pb.AuthUserDeleteRequest: "auth_user_delete",
    pb.AuthUserGetRequest: "auth_user_get",
    pb.AuthUserListRequest: "auth_user_list",
    pb.AuthUserGrantRoleRequest: "auth_user_grant_role",
    pb.AuthUserRevokeRoleRequest: "auth_user_revoke_role",
    pb.AuthRoleAddRequest: "auth_role_add",
    pb.AuthRoleGetRequest: "auth_role_get",
    pb.AuthRoleListRequest: "auth_role_list",
    pb.AuthRoleDeleteRequest: "auth_role_delete",
    pb.AuthRoleGrantPermissionRequest: "auth_role_grant_permission",
    pb.AuthRoleRevokePermissionRequest: "auth_role_revoke_permission",
    pb.AuthUserAddRequest: "auth_user_add",
    pb.AuthUserChangePasswordRequest: "auth_user_change_password",
}


async def auth_request(srv: EtcdServer, req: Any) -> Any:
    """Any Auth RPC but Authenticate: proposed as it is (passwords hashed first, off the loop),
    applied by the auth store on every member, answered with the usual header."""
    kind = _KIND_OF[type(req)]
    prepare: Callable[[Any, int], Any] | None = None
    if kind == "auth_user_add":
        prepare = auth.prepare_user_add
    elif kind == "auth_user_change_password":
        prepare = auth.prepare_change_password
    if prepare is not None:
        req = await asyncio.to_thread(prepare, req, srv.auth_store.bcrypt_cost)
    return await _propose(srv, serverpb.InternalRequest(**{kind: req}))


async def authenticate(srv: EtcdServer, req: pb.AuthenticateRequest) -> pb.AuthenticateResponse:
    """etcd's Authenticate: after a linearizable read, check the password here (bcrypt in a
    thread), then propose the token's issue without credentials; if the auth store changed
    between the check and the apply, the check is stale: start again."""
    while True:
        await srv.linearizable_read()
        store = srv.auth_store
        chk = store.password_check(req.name)
        if not await asyncio.to_thread(auth.check_password, chk.hashed, req.password):
            log.info("invalid password for user %r", req.name)
            raise errors.AuthFailedError()
        entry = serverpb.InternalAuthenticateRequest(name=req.name, simple_token=store.gen_token_prefix())
        previous = CALLER.set(None)
        try:
            resp: pb.AuthenticateResponse = await _propose(srv, serverpb.InternalRequest(authenticate=entry))
        finally:
            CALLER.reset(previous)
        if chk.revision == srv.auth_store.revision:
            log.info("authenticated user %r", req.name)
            return resp
        log.info("auth revision changed while authenticating %r; retrying", req.name)
