"""What a client sees for each domain error: the gRPC code and etcd's exact text.

The one place (with the HTTP side, which reuses this table) that turns ``petcd.errors``
into what etcd's ``togRPCError`` returns. Texts are etcd 3.5's, byte for byte: clients
match on them (python-etcd3 and clientv3 turn some into typed errors by their text).
"""

from __future__ import annotations

import grpc

from petcd import errors as e

_IA = grpc.StatusCode.INVALID_ARGUMENT
_FP = grpc.StatusCode.FAILED_PRECONDITION
_UN = grpc.StatusCode.UNAVAILABLE
_OOR = grpc.StatusCode.OUT_OF_RANGE
_NF = grpc.StatusCode.NOT_FOUND
_RE = grpc.StatusCode.RESOURCE_EXHAUSTED
# errors etcd's togRPCError does not turn into a gRPC status (and the concurrency services'
# errors) reach clients as UNKNOWN with etcd's text: observed on etcd 3.4.23 and 3.5.1 alike.
_UNK = grpc.StatusCode.UNKNOWN

# class -> (code, text); None as text means "etcdserver: " + the instance's message
STATUS: dict[type[e.PetcdError], tuple[grpc.StatusCode, str | None]] = {
    e.EmptyKeyError: (_IA, "etcdserver: key is not provided"),
    e.KeyNotFoundError: (_IA, "etcdserver: key not found"),
    e.ValueProvidedError: (_IA, "etcdserver: value is provided"),
    e.LeaseProvidedError: (_IA, "etcdserver: lease is provided"),
    e.TooManyOpsError: (_IA, "etcdserver: too many operations in txn request"),
    e.DuplicateKeyError: (_IA, "etcdserver: duplicate key given in txn request"),
    e.InvalidSortOptionError: (_IA, "etcdserver: invalid sort option"),
    e.RequestTooLargeError: (_IA, "etcdserver: request is too large"),
    e.TooManyRequestsError: (_UNK, "etcdserver: too many requests"),
    e.UnsupportedRequestError: (_UN, None),
    e.CompactedError: (_OOR, "etcdserver: mvcc: required revision has been compacted"),
    e.FutureRevisionError: (_OOR, "etcdserver: mvcc: required revision is a future revision"),
    e.NoSpaceError: (_RE, "etcdserver: mvcc: database space exceeded"),
    e.CorruptError: (grpc.StatusCode.DATA_LOSS, "etcdserver: corrupt cluster"),
    e.LeaseNotFoundError: (_NF, "etcdserver: requested lease not found"),
    e.LeaseExistsError: (_FP, "etcdserver: lease already exists"),
    e.LeaseTTLTooLargeError: (_OOR, "etcdserver: too large lease TTL"),
    e.MemberExistsError: (_FP, "etcdserver: member ID already exist"),
    e.PeerURLExistsError: (_FP, "etcdserver: Peer URLs already exists"),
    e.MemberNotEnoughStartedError: (_UNK, "etcdserver: re-configuration failed due to not enough started members"),
    e.MemberBadURLsError: (_IA, "etcdserver: given member URLs are invalid"),
    e.MemberNotFoundError: (_NF, "etcdserver: member not found"),
    e.MemberNotLearnerError: (_FP, "etcdserver: can only promote a learner member"),
    e.LearnerNotReadyError: (_FP, "etcdserver: can only promote a learner member which is in sync with leader"),
    e.TooManyLearnersError: (_FP, "etcdserver: too many learner members in cluster"),
    e.ConfChangeRejectedError: (_FP, None),
    e.NoLeaderError: (_UN, "etcdserver: no leader"),
    e.NotLeaderError: (_FP, "etcdserver: not leader"),
    e.LeaderChangedError: (_UN, "etcdserver: leader changed"),
    e.NotCapableError: (_UN, "etcdserver: not capable"),
    e.StoppedError: (_UN, "etcdserver: server stopped"),
    e.RequestTimeoutError: (_UN, "etcdserver: request timed out"),
    e.TimeoutDueToLeaderFailError: (_UN, "etcdserver: request timed out, possibly due to previous leader failure"),
    e.TimeoutDueToConnectionLostError: (_UN, "etcdserver: request timed out, possibly due to connection lost"),
    e.UnhealthyClusterError: (_UN, "etcdserver: unhealthy cluster"),
    e.BadLeaderTransfereeError: (_FP, "etcdserver: bad leader transferee"),
    e.LeaderTransferTimeoutError: (_UN, "etcdserver: request timed out, leader transfer took too long"),
    e.RootUserNotExistError: (_FP, "etcdserver: root user does not exist"),
    e.RootRoleNotExistError: (_FP, "etcdserver: root user does not have root role"),
    e.UserAlreadyExistError: (_FP, "etcdserver: user name already exists"),
    e.UserEmptyError: (_IA, "etcdserver: user name is empty"),
    e.UserNotFoundError: (_FP, "etcdserver: user name not found"),
    e.RoleAlreadyExistError: (_FP, "etcdserver: role name already exists"),
    e.RoleNotFoundError: (_FP, "etcdserver: role name not found"),
    e.RoleEmptyError: (_IA, "etcdserver: role name is empty"),
    e.AuthFailedError: (_IA, "etcdserver: authentication failed, invalid user ID or password"),
    # etcd 3.5.1's togRPCError has no entry for NoPasswordUser and AuthOldRevision: they reach
    # the client as Unknown with the auth package's own text
    e.NoPasswordUserError: (_UNK, "auth: authentication failed, password was given for no password user"),
    e.PermissionNotGivenError: (_IA, "etcdserver: permission not given"),
    e.PermissionDeniedError: (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied"),
    e.RoleNotGrantedError: (_FP, "etcdserver: role is not granted to the user"),
    e.PermissionNotGrantedError: (_FP, "etcdserver: permission is not granted to the role"),
    e.AuthNotEnabledError: (_FP, "etcdserver: authentication is not enabled"),
    e.InvalidAuthTokenError: (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token"),
    e.InvalidAuthMgmtError: (_IA, "etcdserver: invalid auth management"),
    e.AuthOldRevisionError: (_UNK, "auth: revision in header is old"),
    e.TokenSignError: (_UNK, "auth: token signing attempted with verify-only key"),
    e.InvalidAuthOptsError: (_IA, "etcdserver: invalid auth options"),
    # etcd's Lock and Election services return these as plain Go errors: gRPC reports UNKNOWN
    e.ElectionNotLeaderError: (_UNK, "election: not leader"),
    e.ElectionNoLeaderError: (_UNK, "election: no leader"),
    e.SessionExpiredError: (_UNK, "mutex: session is expired"),
    e.MissingLeaderKeyError: (_UNK, '"leader" field must be provided'),
}


def status_of(exc: e.PetcdError) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and message etcd answers for ``exc``."""
    for cls in type(exc).__mro__:
        entry = STATUS.get(cls)
        if entry is not None:
            code, text = entry
            return code, text if text is not None else f"etcdserver: {exc}"
    return grpc.StatusCode.UNKNOWN, str(exc)


def unmapped_auth_status(exc: e.PetcdError) -> tuple[grpc.StatusCode, str]:
    """What etcd 3.5.1's Maintenance server answers when its admin check fails: the auth
    package's error as it is, not through togRPCError, so gRPC reports UNKNOWN with the text
    "auth: ..." (observed: "auth: permission denied", "auth: user name is empty")."""
    code, text = status_of(exc)
    if text.startswith("etcdserver: "):
        return grpc.StatusCode.UNKNOWN, "auth: " + text[len("etcdserver: "):]
    return code, text
