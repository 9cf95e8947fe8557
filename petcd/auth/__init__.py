"""The auth store (etcd's): users, roles, key-range permissions, bcrypt passwords, tokens.

JWT tokens are in petcd.auth.jwt_tokens, not re-exported here: importing it pulls in PyJWT and
cryptography, which only a member started with --auth-token=jwt,... needs."""

from petcd.auth.applier import (
    ADMIN_REQUEST_KINDS,
    AUTH_REQUEST_KINDS,
    LeaseKeys,
    apply,
    authorize,
    check_delete_range,
    check_lease_revoke,
    check_put,
    check_range,
    check_read_still_current,
    check_txn,
    info_from_header,
    is_watch_permitted,
)
from petcd.auth.passwords import (
    DEFAULT_COST,
    check_password,
    hash_password,
    prepare_change_password,
    prepare_user_add,
)
from petcd.auth.permissions import IntervalSet, MergedPermissions
from petcd.auth.store import ROOT_ROLE, ROOT_USER, TOKEN_METADATA_KEYS, AuthStore, PasswordCheck
from petcd.auth.tokens import (
    AuthInfo,
    NopTokenProvider,
    SimpleTokenProvider,
    TokenOptions,
    TokenProvider,
    new_token_provider,
    parse_token_options,
)

__all__ = [
    "ADMIN_REQUEST_KINDS",
    "AUTH_REQUEST_KINDS",
    "DEFAULT_COST",
    "ROOT_ROLE",
    "ROOT_USER",
    "TOKEN_METADATA_KEYS",
    "AuthInfo",
    "AuthStore",
    "IntervalSet",
    "LeaseKeys",
    "MergedPermissions",
    "NopTokenProvider",
    "PasswordCheck",
    "SimpleTokenProvider",
    "TokenOptions",
    "TokenProvider",
    "apply",
    "authorize",
    "check_delete_range",
    "check_lease_revoke",
    "check_password",
    "check_put",
    "check_range",
    "check_read_still_current",
    "check_txn",
    "hash_password",
    "info_from_header",
    "is_watch_permitted",
    "new_token_provider",
    "parse_token_options",
    "prepare_change_password",
    "prepare_user_add",
]
