"""The errors a client sees, with etcd's gRPC status codes and messages.

Clients match on the text (``etcdserver: mvcc: database space exceeded``), so every
message here is exactly etcd's. Servicers raise :class:`EtcdError`; the gRPC layer
turns it into a status with ``code`` and ``message``.
"""

from __future__ import annotations

import grpc


class EtcdError(Exception):
    """An error with the gRPC code and message etcd returns for it."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"EtcdError({self.code.name}, {self.message!r})"


def _e(code: grpc.StatusCode, message: str) -> EtcdError:
    return EtcdError(code, message)


_IA = grpc.StatusCode.INVALID_ARGUMENT
_FP = grpc.StatusCode.FAILED_PRECONDITION
_UN = grpc.StatusCode.UNAVAILABLE
_OOR = grpc.StatusCode.OUT_OF_RANGE
_NF = grpc.StatusCode.NOT_FOUND
_RE = grpc.StatusCode.RESOURCE_EXHAUSTED
_UNK = grpc.StatusCode.UNKNOWN  # etcd sends these as UNKNOWN (see petcd/api/errors.py)

ERR_EMPTY_KEY = _e(_IA, "etcdserver: key is not provided")
ERR_KEY_NOT_FOUND = _e(_IA, "etcdserver: key not found")
ERR_VALUE_PROVIDED = _e(_IA, "etcdserver: value is provided")
ERR_LEASE_PROVIDED = _e(_IA, "etcdserver: lease is provided")
ERR_TOO_MANY_OPS = _e(_IA, "etcdserver: too many operations in txn request")
ERR_DUPLICATE_KEY = _e(_IA, "etcdserver: duplicate key given in txn request")
ERR_INVALID_SORT_OPTION = _e(_IA, "etcdserver: invalid sort option")
ERR_COMPACTED = _e(_OOR, "etcdserver: mvcc: required revision has been compacted")
ERR_FUTURE_REV = _e(_OOR, "etcdserver: mvcc: required revision is a future revision")
ERR_NO_SPACE = _e(_RE, "etcdserver: mvcc: database space exceeded")
ERR_LEASE_NOT_FOUND = _e(_NF, "etcdserver: requested lease not found")
ERR_LEASE_EXIST = _e(_FP, "etcdserver: lease already exists")
ERR_LEASE_TTL_TOO_LARGE = _e(_OOR, "etcdserver: too large lease TTL")
ERR_MEMBER_EXIST = _e(_FP, "etcdserver: member ID already exist")
ERR_PEER_URL_EXIST = _e(_FP, "etcdserver: Peer URLs already exists")
ERR_MEMBER_NOT_ENOUGH_STARTED = _e(
    _UNK, "etcdserver: re-configuration failed due to not enough started members"
)
ERR_MEMBER_BAD_URLS = _e(_IA, "etcdserver: given member URLs are invalid")
ERR_MEMBER_NOT_FOUND = _e(_NF, "etcdserver: member not found")
ERR_MEMBER_NOT_LEARNER = _e(_FP, "etcdserver: can only promote a learner member")
ERR_LEARNER_NOT_READY = _e(_FP, "etcdserver: can only promote a learner member which is in sync with leader")
ERR_TOO_MANY_LEARNERS = _e(_FP, "etcdserver: too many learner members in cluster")
ERR_REQUEST_TOO_LARGE = _e(_IA, "etcdserver: request is too large")
ERR_TOO_MANY_REQUESTS = _e(_UNK, "etcdserver: too many requests")
ERR_ROOT_USER_NOT_EXIST = _e(_FP, "etcdserver: root user does not exist")
ERR_ROOT_ROLE_NOT_EXIST = _e(_FP, "etcdserver: root user does not have root role")
ERR_USER_ALREADY_EXIST = _e(_FP, "etcdserver: user name already exists")
ERR_USER_EMPTY = _e(_IA, "etcdserver: user name is empty")
ERR_USER_NOT_FOUND = _e(_FP, "etcdserver: user name not found")
ERR_ROLE_ALREADY_EXIST = _e(_FP, "etcdserver: role name already exists")
ERR_ROLE_NOT_FOUND = _e(_FP, "etcdserver: role name not found")
ERR_ROLE_EMPTY = _e(_IA, "etcdserver: role name is empty")
ERR_AUTH_FAILED = _e(_IA, "etcdserver: authentication failed, invalid user ID or password")
ERR_PERMISSION_DENIED = _e(grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
ERR_ROLE_NOT_GRANTED = _e(_FP, "etcdserver: role is not granted to the user")
ERR_PERMISSION_NOT_GRANTED = _e(_FP, "etcdserver: permission is not granted to the role")
ERR_AUTH_NOT_ENABLED = _e(_FP, "etcdserver: authentication is not enabled")
ERR_INVALID_AUTH_TOKEN = _e(grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
ERR_INVALID_AUTH_MGMT = _e(_IA, "etcdserver: invalid auth management")
ERR_NO_LEADER = _e(_UN, "etcdserver: no leader")
ERR_NOT_LEADER = _e(_FP, "etcdserver: not leader")
ERR_LEADER_CHANGED = _e(_UN, "etcdserver: leader changed")
ERR_NOT_CAPABLE = _e(_UN, "etcdserver: not capable")
ERR_STOPPED = _e(_UN, "etcdserver: server stopped")
ERR_TIMEOUT = _e(_UN, "etcdserver: request timed out")
ERR_TIMEOUT_DUE_TO_LEADER_FAIL = _e(_UN, "etcdserver: request timed out, possibly due to previous leader failure")
ERR_TIMEOUT_DUE_TO_CONNECTION_LOST = _e(_UN, "etcdserver: request timed out, possibly due to connection lost")
ERR_UNHEALTHY = _e(_UN, "etcdserver: unhealthy cluster")
ERR_CORRUPT = _e(grpc.StatusCode.DATA_LOSS, "etcdserver: corrupt cluster")
ERR_BAD_LEADER_TRANSFEREE = _e(_FP, "etcdserver: bad leader transferee")
ERR_TIMEOUT_LEADER_TRANSFER = _e(_UN, "etcdserver: request timed out, leader transfer took too long")
