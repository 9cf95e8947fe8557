"""Leases: the lessor (grant, revoke, keep-alive, expiry, checkpoints) and its server glue."""

from petcd.lease.lessor import (
    DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_EXPIRED_RETRY_INTERVAL,
    FOREVER_SECONDS,
    MAX_LEASE_TTL,
    NO_LEASE,
    REVOKE_RATE,
    Lease,
    LeaseExpiredError,
    Lessor,
    NotPrimaryError,
    lease_key,
    min_lease_ttl,
)

__all__ = [
    "DEFAULT_CHECKPOINT_INTERVAL",
    "DEFAULT_EXPIRED_RETRY_INTERVAL",
    "FOREVER_SECONDS",
    "MAX_LEASE_TTL",
    "NO_LEASE",
    "REVOKE_RATE",
    "Lease",
    "LeaseExpiredError",
    "Lessor",
    "NotPrimaryError",
    "lease_key",
    "min_lease_ttl",
]
