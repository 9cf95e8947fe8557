"""LMDB storage backend (etcd's bbolt backend): batched write transactions, buckets, defrag."""

from petcd.backend.backend import (
    DEFAULT_MAP_SIZE,
    DEFAULT_MAX_MAP_SIZE,
    Backend,
    BackendError,
    BackendFullError,
    ReadTx,
)
from petcd.backend.buckets import (
    ALARM,
    ALL_BUCKETS,
    AUTH,
    AUTH_ROLES,
    AUTH_USERS,
    CLUSTER,
    CONSISTENT_INDEX_KEY,
    DEFAULT_HASH_IGNORES,
    KEY,
    LEASE,
    MEMBERS,
    MEMBERS_REMOVED,
    META,
    TERM_KEY,
)

__all__ = [
    "ALARM",
    "ALL_BUCKETS",
    "AUTH",
    "AUTH_ROLES",
    "AUTH_USERS",
    "CLUSTER",
    "CONSISTENT_INDEX_KEY",
    "DEFAULT_HASH_IGNORES",
    "DEFAULT_MAP_SIZE",
    "DEFAULT_MAX_MAP_SIZE",
    "KEY",
    "LEASE",
    "MEMBERS",
    "MEMBERS_REMOVED",
    "META",
    "TERM_KEY",
    "Backend",
    "BackendError",
    "BackendFullError",
    "ReadTx",
]
