"""Bucket (LMDB named database) names, the same names etcd gives its bbolt buckets."""

from __future__ import annotations

KEY = b"key"
META = b"meta"
LEASE = b"lease"
AUTH = b"auth"
AUTH_USERS = b"authUsers"
AUTH_ROLES = b"authRoles"
MEMBERS = b"members"
MEMBERS_REMOVED = b"members_removed"
CLUSTER = b"cluster"
ALARM = b"alarm"

ALL_BUCKETS: tuple[bytes, ...] = (
    KEY,
    META,
    LEASE,
    AUTH,
    AUTH_USERS,
    AUTH_ROLES,
    MEMBERS,
    MEMBERS_REMOVED,
    CLUSTER,
    ALARM,
)

# Keys of the meta bucket that differ between members holding the same data (they track how far
# each member has applied the raft log), so the backend hash leaves them out.
CONSISTENT_INDEX_KEY = b"consistent_index"
TERM_KEY = b"term"
DEFAULT_HASH_IGNORES: frozenset[tuple[bytes, bytes]] = frozenset(
    {(META, CONSISTENT_INDEX_KEY), (META, TERM_KEY)}
)
