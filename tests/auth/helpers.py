"""Requests as the API layer would propose them, applied to an AuthStore."""

from __future__ import annotations

from petcd.auth import AuthInfo, AuthStore, prepare_change_password, prepare_user_add
from petcd.proto.authpb import auth_pb2 as authpb
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.serverpb import internal_pb2 as serverpb

READ, WRITE, READWRITE = authpb.Permission.READ, authpb.Permission.WRITE, authpb.Permission.READWRITE


def add_user(store: AuthStore, name: str, password: str = "pw", no_password: bool = False) -> None:
    req = pb.AuthUserAddRequest(name=name, password=password,
                                options=authpb.UserAddOptions(no_password=no_password))
    store.user_add(prepare_user_add(req, store.bcrypt_cost))


def change_password(store: AuthStore, name: str, password: str) -> None:
    req = pb.AuthUserChangePasswordRequest(name=name, password=password)
    store.user_change_password(prepare_change_password(req, store.bcrypt_cost))


def add_role(store: AuthStore, name: str) -> None:
    store.role_add(pb.AuthRoleAddRequest(name=name))


def grant_role(store: AuthStore, user: str, role: str) -> None:
    store.user_grant_role(pb.AuthUserGrantRoleRequest(user=user, role=role))


def grant_perm(store: AuthStore, role: str, perm_type: authpb.Permission.Type,
               key: bytes, range_end: bytes = b"") -> None:
    store.role_grant_permission(pb.AuthRoleGrantPermissionRequest(
        name=role, perm=authpb.Permission(permType=perm_type, key=key, range_end=range_end)))


def setup_root(store: AuthStore, password: str = "rootpw") -> None:
    add_user(store, "root", password)
    grant_role(store, "root", "root")


def enable(store: AuthStore) -> None:
    store.auth_enable(pb.AuthEnableRequest())


def login(store: AuthStore, name: str, password: str, index: int = 100) -> tuple[str, AuthInfo]:
    """Authenticate as the server would: check the password, propose, apply at ``index``."""
    store.check_password(name, password)
    req = serverpb.InternalAuthenticateRequest(name=name, simple_token=store.gen_token_prefix())
    token = store.authenticate(req, index).token
    return token, store.auth_info_from_token(token)
