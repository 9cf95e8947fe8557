"""The auth store: users, roles, permissions and the auth switch, in the backend (etcd's authStore).

How it works
------------
State lives in three backend buckets, as etcd keeps it, so it survives restarts and travels in
backend snapshots:

* ``auth``: ``authEnabled`` (one byte, 1 or 0) and ``authRevision`` (8 bytes, big-endian);
* ``authUsers``: user name -> ``authpb.User`` (bcrypt hash, roles kept sorted, options);
* ``authRoles``: role name -> ``authpb.Role`` (permissions kept sorted by key).

Every change is an applied raft entry: the methods named after the Auth RPCs take the request
protobuf and return the response protobuf (the server fills in the header), or raise an error of
``petcd.errors``. They run on the apply thread, write into the backend's open batch (the same one
the entry's consistent index goes into) and are deterministic: passwords arrive already hashed
(see ``passwords.prepare_user_add``), tokens are completed from values carried in the entry.

The auth revision counts changes: every successful user or role change bumps it, and so does
``auth disable``; ``auth enable``, granting a role the user already has, and the reads do not.
It starts at 1 in a new store. Credentials remember the revision they were checked at: a request
whose revision is older than the store's fails with AuthOldRevisionError, so a change can never
race with a request authorised under the old rules.

Permission checks merge a user's roles into one read and one write interval set
(``permissions.MergedPermissions``), cached per user and dropped whenever the revision moves.
While auth is disabled every check passes.

Nothing here is thread-safe: like the KV store and the lessor it lives on the apply thread.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from petcd.auth import passwords
from petcd.auth.permissions import READ, WRITE, MergedPermissions
from petcd.auth.tokens import AuthInfo, TokenProvider
from petcd.backend import AUTH, AUTH_ROLES, AUTH_USERS, Backend
from petcd.errors import (
    AuthFailedError,
    AuthNotEnabledError,
    AuthOldRevisionError,
    InvalidAuthMgmtError,
    InvalidAuthTokenError,
    NoPasswordUserError,
    PermissionDeniedError,
    PermissionNotGivenError,
    PermissionNotGrantedError,
    RequestTooLargeError,
    RoleAlreadyExistError,
    RoleEmptyError,
    RoleNotFoundError,
    RoleNotGrantedError,
    RootRoleNotExistError,
    RootUserNotExistError,
    UserAlreadyExistError,
    UserEmptyError,
    UserNotFoundError,
)
from petcd.proto.authpb import auth_pb2 as authpb
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.serverpb import internal_pb2 as serverpb

log = logging.getLogger("petcd.auth")

ROOT_USER = "root"
ROOT_ROLE = "root"
ENABLED_KEY = b"authEnabled"
REVISION_KEY = b"authRevision"
_ENABLED = b"\x01"
_DISABLED = b"\x00"
_REVISION = struct.Struct(">Q")
# etcd lists users and roles over [0x00, 0xff)
_LIST_START = b"\x00"
_LIST_END = b"\xff"

# LMDB's key size limit (bbolt's is far larger): no user or role name can be longer, and none is empty
MAX_NAME_BYTES = 511

# gRPC metadata keys a token may come in (etcd's TokenFieldNameGRPC / TokenFieldNameSwagger)
TOKEN_METADATA_KEYS = ("token", "authorization")


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """What checking a password needs, read under one view: the stored hash and the revision."""

    hashed: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class _CachedUser:
    is_root: bool
    perms: MergedPermissions


def _has_root_role(user: authpb.User) -> bool:
    return ROOT_ROLE in user.roles


class AuthStore:
    """See the module docstring."""

    def __init__(self, backend: Backend, tokens: TokenProvider,
                 bcrypt_cost: int = passwords.DEFAULT_COST) -> None:
        self._be = backend
        self.tokens = tokens
        self.bcrypt_cost = passwords.effective_cost(bcrypt_cost)
        self._enabled = False
        self._revision = 0
        self._cache: dict[str, _CachedUser | None] = {}
        self._cache_revision = -1
        self._load()
        if self._revision == 0:
            # a new store starts at revision 1, as etcd's does; committed at once (etcd forces a
            # commit here too), so no batch stays open on the constructing thread
            self._commit_revision()
            self._be.force_commit()

    # -- state ------------------------------------------------------------------------------------
    def _load(self) -> None:
        with self._be.read() as tx:
            flag = tx.get(AUTH, ENABLED_KEY)
            rev = tx.get(AUTH, REVISION_KEY)
        self._enabled = flag == _ENABLED
        self._revision = _REVISION.unpack(rev)[0] if rev is not None and len(rev) == 8 else 0
        self._cache.clear()
        if self._enabled:
            self.tokens.enable()
        else:
            self.tokens.disable()

    def recover(self) -> None:
        """Reload the switch and the revision after the backend's contents were replaced (a
        snapshot was installed); the token provider follows the switch."""
        self._load()

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def revision(self) -> int:
        return self._revision

    def _commit_revision(self) -> None:
        self._revision += 1
        self._be.put(AUTH, REVISION_KEY, _REVISION.pack(self._revision))

    def _get_user(self, name: str) -> authpb.User | None:
        key = name.encode()
        raw = self._be.get(AUTH_USERS, key) if 0 < len(key) <= MAX_NAME_BYTES else None
        return None if raw is None else authpb.User.FromString(raw)

    def _get_role(self, name: str) -> authpb.Role | None:
        key = name.encode()
        raw = self._be.get(AUTH_ROLES, key) if 0 < len(key) <= MAX_NAME_BYTES else None
        return None if raw is None else authpb.Role.FromString(raw)

    @staticmethod
    def _check_name_length(name: str) -> None:
        if len(name.encode()) > MAX_NAME_BYTES:
            # etcd (bbolt) would store it; the backend cannot
            raise RequestTooLargeError(f"name longer than {MAX_NAME_BYTES} bytes")

    def _put_user(self, user: authpb.User) -> None:
        self._be.put(AUTH_USERS, user.name, user.SerializeToString())

    def _put_role(self, role: authpb.Role) -> None:
        self._be.put(AUTH_ROLES, role.name, role.SerializeToString())

    def _all_users(self) -> list[authpb.User]:
        return [authpb.User.FromString(v) for _, v in self._be.range(AUTH_USERS, _LIST_START, _LIST_END)]

    def _all_roles(self) -> list[authpb.Role]:
        return [authpb.Role.FromString(v) for _, v in self._be.range(AUTH_ROLES, _LIST_START, _LIST_END)]

    def _password_of(self, password: str, hashed: str) -> bytes:
        """The hash to store from a request (etcd's selectPassword)."""
        if password and not hashed:
            # only an entry written by a client of this module's API that skipped
            # passwords.prepare_*; etcd hashes such (pre-3.5) entries at apply too
            return passwords.hash_password(password, self.bcrypt_cost)
        try:
            return passwords.decode_hash(hashed)
        except ValueError:
            raise NoPasswordUserError() from None

    # -- the switch -------------------------------------------------------------------------------
    def auth_enable(self, req: pb.AuthEnableRequest | None = None) -> pb.AuthEnableResponse:
        if self._enabled:
            log.info("authentication is already enabled; ignored auth enable request")
            return pb.AuthEnableResponse()
        root = self._get_user(ROOT_USER)
        if root is None:
            raise RootUserNotExistError()
        if not _has_root_role(root):
            raise RootRoleNotExistError()
        self._be.put(AUTH, ENABLED_KEY, _ENABLED)
        self._enabled = True
        self.tokens.enable()
        self._cache.clear()
        log.info("enabled authentication")
        return pb.AuthEnableResponse()

    def auth_disable(self, req: pb.AuthDisableRequest | None = None) -> pb.AuthDisableResponse:
        if not self._enabled:
            return pb.AuthDisableResponse()
        self._be.put(AUTH, ENABLED_KEY, _DISABLED)
        self._commit_revision()
        self._enabled = False
        self.tokens.disable()
        log.info("disabled authentication")
        return pb.AuthDisableResponse()

    def auth_status(self, req: pb.AuthStatusRequest | None = None) -> pb.AuthStatusResponse:
        return pb.AuthStatusResponse(enabled=self._enabled, authRevision=self._revision)

    # -- authentication ---------------------------------------------------------------------------
    def password_check(self, name: str) -> PasswordCheck:
        """The first half of checking a password, on the member that takes an Authenticate,
        before the proposal: the stored hash and the revision it was read at. The bcrypt
        comparison (``passwords.check_password``) is slow; run it off the event loop."""
        if not self._enabled:
            raise AuthNotEnabledError()
        user = self._get_user(name)
        if user is None:
            raise AuthFailedError()
        if user.options.no_password:
            raise NoPasswordUserError()
        return PasswordCheck(user.password, self._revision)

    def check_password(self, name: str, password: str) -> int:
        """etcd's CheckPassword in one call: the auth revision the password was checked at, or
        AuthNotEnabled / AuthFailed / NoPasswordUser."""
        check = self.password_check(name)
        if not passwords.check_password(check.hashed, password):
            log.info("invalid password for user %r", name)
            raise AuthFailedError()
        return check.revision

    def gen_token_prefix(self) -> str:
        """The random part of a simple token, for InternalAuthenticateRequest.simple_token."""
        return self.tokens.gen_token_prefix()

    def authenticate(self, req: serverpb.InternalAuthenticateRequest, index: int) -> pb.AuthenticateResponse:
        """Apply an Authenticate entry at raft ``index``: issue the user's token. The password
        was checked before the proposal; the proposer compares the revision it checked at with
        ``revision`` after this and authenticates again if the store changed in between."""
        if not self._enabled:
            raise AuthNotEnabledError()
        user = self._get_user(req.name)
        if user is None or user.options.no_password:
            raise AuthFailedError()
        token = self.tokens.assign(req.name, self._revision, req.simple_token, index)
        log.debug("authenticated user %r", req.name)
        return pb.AuthenticateResponse(token=token)

    # -- users ------------------------------------------------------------------------------------
    def user_add(self, req: pb.AuthUserAddRequest) -> pb.AuthUserAddResponse:
        if not req.name:
            raise UserEmptyError()
        self._check_name_length(req.name)
        if self._get_user(req.name) is not None:
            raise UserAlreadyExistError()
        options = authpb.UserAddOptions(no_password=req.options.no_password)
        user = authpb.User(name=req.name.encode(), options=options)
        if not options.no_password:
            user.password = self._password_of(req.password, req.hashedPassword)
        self._put_user(user)
        self._commit_revision()
        log.info("added user %r", req.name)
        return pb.AuthUserAddResponse()

    def user_delete(self, req: pb.AuthUserDeleteRequest) -> pb.AuthUserDeleteResponse:
        if self._enabled and req.name == ROOT_USER:
            log.error("cannot delete 'root' user while auth is enabled")
            raise InvalidAuthMgmtError()
        if self._get_user(req.name) is None:
            raise UserNotFoundError()
        self._be.delete(AUTH_USERS, req.name.encode())
        self._commit_revision()
        self.tokens.invalidate_user(req.name)
        log.info("deleted user %r", req.name)
        return pb.AuthUserDeleteResponse()

    def user_change_password(self, req: pb.AuthUserChangePasswordRequest) -> pb.AuthUserChangePasswordResponse:
        user = self._get_user(req.name)
        if user is None:
            raise UserNotFoundError()
        updated = authpb.User(name=user.name, roles=user.roles)
        if user.HasField("options"):
            updated.options.CopyFrom(user.options)
        if not user.options.no_password:
            updated.password = self._password_of(req.password, req.hashedPassword)
        self._put_user(updated)
        self._commit_revision()
        self.tokens.invalidate_user(req.name)
        log.info("changed the password of user %r", req.name)
        return pb.AuthUserChangePasswordResponse()

    def user_grant_role(self, req: pb.AuthUserGrantRoleRequest) -> pb.AuthUserGrantRoleResponse:
        user = self._get_user(req.user)
        if user is None:
            raise UserNotFoundError()
        # the root role may be granted before it exists as a role record (etcd's rule)
        if req.role != ROOT_ROLE and self._get_role(req.role) is None:
            raise RoleNotFoundError()
        if req.role in user.roles:
            log.warning("ignored granting role %r to user %r: already granted", req.role, req.user)
            return pb.AuthUserGrantRoleResponse()
        roles = sorted([*user.roles, req.role])
        del user.roles[:]
        user.roles.extend(roles)
        self._put_user(user)
        self._commit_revision()
        log.info("granted role %r to user %r", req.role, req.user)
        return pb.AuthUserGrantRoleResponse()

    def user_revoke_role(self, req: pb.AuthUserRevokeRoleRequest) -> pb.AuthUserRevokeRoleResponse:
        if self._enabled and req.name == ROOT_USER and req.role == ROOT_ROLE:
            log.error("'root' user cannot revoke 'root' role while auth is enabled")
            raise InvalidAuthMgmtError()
        user = self._get_user(req.name)
        if user is None:
            raise UserNotFoundError()
        kept = [r for r in user.roles if r != req.role]
        if len(kept) == len(user.roles):
            raise RoleNotGrantedError()
        del user.roles[:]
        user.roles.extend(kept)
        self._put_user(user)
        self._commit_revision()
        log.info("revoked role %r from user %r", req.role, req.name)
        return pb.AuthUserRevokeRoleResponse()

    def user_get(self, req: pb.AuthUserGetRequest) -> pb.AuthUserGetResponse:
        user = self._get_user(req.name)
        if user is None:
            raise UserNotFoundError()
        return pb.AuthUserGetResponse(roles=user.roles)

    def user_list(self, req: pb.AuthUserListRequest | None = None) -> pb.AuthUserListResponse:
        return pb.AuthUserListResponse(users=[u.name.decode() for u in self._all_users()])

    def has_role(self, username: str, role: str) -> bool:
        user = self._get_user(username)
        return user is not None and role in user.roles

    # -- roles ------------------------------------------------------------------------------------
    def role_add(self, req: pb.AuthRoleAddRequest) -> pb.AuthRoleAddResponse:
        if not req.name:
            raise RoleEmptyError()
        self._check_name_length(req.name)
        if self._get_role(req.name) is not None:
            raise RoleAlreadyExistError()
        self._put_role(authpb.Role(name=req.name.encode()))
        self._commit_revision()
        log.info("created role %r", req.name)
        return pb.AuthRoleAddResponse()

    def role_delete(self, req: pb.AuthRoleDeleteRequest) -> pb.AuthRoleDeleteResponse:
        if self._enabled and req.role == ROOT_ROLE:
            log.error("cannot delete 'root' role while auth is enabled")
            raise InvalidAuthMgmtError()
        if self._get_role(req.role) is None:
            raise RoleNotFoundError()
        self._be.delete(AUTH_ROLES, req.role.encode())
        for user in self._all_users():
            if req.role in user.roles:
                kept = [r for r in user.roles if r != req.role]
                del user.roles[:]
                user.roles.extend(kept)
                self._put_user(user)
        self._commit_revision()
        log.info("deleted role %r", req.role)
        return pb.AuthRoleDeleteResponse()

    def role_get(self, req: pb.AuthRoleGetRequest) -> pb.AuthRoleGetResponse:
        role = self._get_role(req.role)
        if role is None:
            raise RoleNotFoundError()
        return pb.AuthRoleGetResponse(perm=role.keyPermission)

    def role_list(self, req: pb.AuthRoleListRequest | None = None) -> pb.AuthRoleListResponse:
        return pb.AuthRoleListResponse(roles=[r.name.decode() for r in self._all_roles()])

    def role_grant_permission(self, req: pb.AuthRoleGrantPermissionRequest) -> pb.AuthRoleGrantPermissionResponse:
        if not req.HasField("perm"):
            raise PermissionNotGivenError()
        role = self._get_role(req.name)
        if role is None:
            raise RoleNotFoundError()
        perms = list(role.keyPermission)
        # etcd looks at the first permission whose key is not below the new one's: the same
        # key and range end there means an update of its type, anything else an addition
        first = next((p for p in perms if p.key >= req.perm.key), None)
        if first is not None and first.key == req.perm.key and first.range_end == req.perm.range_end:
            first.permType = req.perm.permType
        else:
            perms.append(authpb.Permission(key=req.perm.key, range_end=req.perm.range_end,
                                           permType=req.perm.permType))
            perms.sort(key=lambda p: p.key)  # stable, as Go's sort is for etcd's small lists
        updated = authpb.Role(name=role.name, keyPermission=perms)
        self._put_role(updated)
        self._commit_revision()
        log.info("granted %s on a key range to role %r", authpb.Permission.Type.Name(req.perm.permType), req.name)
        return pb.AuthRoleGrantPermissionResponse()

    def role_revoke_permission(
        self, req: pb.AuthRoleRevokePermissionRequest
    ) -> pb.AuthRoleRevokePermissionResponse:
        role = self._get_role(req.role)
        if role is None:
            raise RoleNotFoundError()
        kept = [p for p in role.keyPermission if p.key != req.key or p.range_end != req.range_end]
        if len(kept) == len(role.keyPermission):
            raise PermissionNotGrantedError()
        self._put_role(authpb.Role(name=role.name, keyPermission=kept))
        self._commit_revision()
        log.info("revoked a permission on a key range from role %r", req.role)
        return pb.AuthRoleRevokePermissionResponse()

    # -- permission checks ------------------------------------------------------------------------
    def _cached(self, username: str) -> _CachedUser | None:
        if self._cache_revision != self._revision:
            self._cache.clear()
            self._cache_revision = self._revision
        if username in self._cache:
            return self._cache[username]
        user = self._get_user(username)
        entry: _CachedUser | None = None
        if user is not None:
            roles = [r for r in (self._get_role(name) for name in user.roles) if r is not None]
            entry = _CachedUser(_has_root_role(user), MergedPermissions.from_roles(roles))
        self._cache[username] = entry
        return entry

    def _check_op(self, info: AuthInfo | None, key: bytes, range_end: bytes, perm_type: int) -> None:
        if not self._enabled:
            return
        if info is None or info.revision == 0:
            raise UserEmptyError()
        if info.revision < self._revision:
            log.warning("request auth revision %d is less than the store's %d", info.revision, self._revision)
            raise AuthOldRevisionError()
        user = self._cached(info.username)
        if user is None:
            log.error("cannot find user %r for a permission check", info.username)
            raise PermissionDeniedError()
        if user.is_root or user.perms.allows(perm_type, key, range_end):
            return
        raise PermissionDeniedError()

    def is_range_permitted(self, info: AuthInfo | None, key: bytes, range_end: bytes = b"") -> None:
        """Read permission on ``key`` / ``range_end`` (etcd's encoding), or raise: UserEmpty (no
        credentials), AuthOldRevision, PermissionDenied. Passes while auth is disabled."""
        self._check_op(info, key, range_end, READ)

    def is_put_permitted(self, info: AuthInfo | None, key: bytes) -> None:
        self._check_op(info, key, b"", WRITE)

    def is_delete_range_permitted(self, info: AuthInfo | None, key: bytes, range_end: bytes = b"") -> None:
        self._check_op(info, key, range_end, WRITE)

    def is_admin_permitted(self, info: AuthInfo | None) -> None:
        """The root role, or raise: UserEmpty (no credentials), UserNotFound, PermissionDenied.
        etcd checks no revision here."""
        if not self._enabled:
            return
        if info is None or not info.username:
            raise UserEmptyError()
        user = self._cached(info.username)
        if user is None:
            raise UserNotFoundError()
        if not user.is_root:
            raise PermissionDeniedError()

    # -- credentials ------------------------------------------------------------------------------
    def token_wait_index(self, token: str) -> int:
        """The raft index this member must have applied before ``auth_info_from_token`` can
        know ``token`` (a simple token's; 0 for JWT)."""
        return self.tokens.wait_index(token)

    def auth_info_from_token(self, token: str) -> AuthInfo:
        """Who ``token`` belongs to, or InvalidAuthTokenError. A simple token is only known once
        its Authenticate entry is applied here: wait for ``token_wait_index`` first."""
        info = self.tokens.info(token, self._revision)
        if info is None:
            log.warning("invalid auth token")
            raise InvalidAuthTokenError()
        return info

    def auth_info_from_metadata(
        self, metadata: Mapping[str, str] | Sequence[tuple[str, str | bytes]]
    ) -> AuthInfo | None:
        """etcd's AuthInfoFromCtx: the token in gRPC metadata key ``token`` (or
        ``authorization``), None if there is none; InvalidAuthTokenError if it is not valid."""
        pairs = metadata.items() if isinstance(metadata, Mapping) else metadata
        found: dict[str, str] = {}
        for k, v in pairs:
            k = k.lower()
            if k in TOKEN_METADATA_KEYS and k not in found:
                found[k] = v.decode() if isinstance(v, bytes) else v
        for k in TOKEN_METADATA_KEYS:
            if k in found:
                return self.auth_info_from_token(found[k])
        return None

    def auth_info_from_cn(self, common_name: str) -> AuthInfo:
        """Credentials from a verified TLS client certificate (with --client-cert-auth, when the
        request carries no token): its common name as the user, at the current revision. Not for
        requests that came through the HTTP gateway (etcd ignores the CN there)."""
        return AuthInfo(common_name, self._revision)

