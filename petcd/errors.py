"""The errors of petcd's domain: plain Python exceptions, no gRPC, no HTTP.

Every layer raises these (a fresh instance each time, so a traceback or a note added to one
never leaks into another request). ``petcd.api.errors`` alone knows what a client sees for
each class: the gRPC status code and etcd's exact text (clients match on the text, e.g.
``etcdserver: mvcc: database space exceeded``); the HTTP side maps the same classes to JSON.

The message given to an instance is for logs and for errors whose client text carries a
detail (``UnsupportedRequestError``); the client text of every other class is fixed.
"""

from __future__ import annotations


class PetcdError(Exception):
    """Base of every error petcd reports to a client."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message or type(self).__doc__ or type(self).__name__)


# -- requests ---------------------------------------------------------------------------
class EmptyKeyError(PetcdError):
    """key is not provided"""


class KeyNotFoundError(PetcdError):
    """key not found"""


class ValueProvidedError(PetcdError):
    """value is provided (ignore_value set)"""


class LeaseProvidedError(PetcdError):
    """lease is provided (ignore_lease set)"""


class TooManyOpsError(PetcdError):
    """too many operations in txn request"""


class DuplicateKeyError(PetcdError):
    """duplicate key given in txn request"""


class InvalidSortOptionError(PetcdError):
    """invalid sort option"""


class RequestTooLargeError(PetcdError):
    """request is too large"""


class TooManyRequestsError(PetcdError):
    """too many requests (raft dropped the proposal)"""


class UnsupportedRequestError(PetcdError):
    """the request kind is not known to this member"""


# -- mvcc / quota -----------------------------------------------------------------------
class CompactedError(PetcdError):
    """required revision has been compacted"""


class FutureRevisionError(PetcdError):
    """required revision is a future revision"""


class NoSpaceError(PetcdError):
    """database space exceeded (NOSPACE alarm)"""


class CorruptError(PetcdError):
    """corrupt cluster (CORRUPT alarm)"""


# -- leases -----------------------------------------------------------------------------
class LeaseNotFoundError(PetcdError):
    """requested lease not found"""


class LeaseExistsError(PetcdError):
    """lease already exists"""


class LeaseTTLTooLargeError(PetcdError):
    """too large lease TTL"""


# -- membership -------------------------------------------------------------------------
class MemberExistsError(PetcdError):
    """member ID already exist"""


class PeerURLExistsError(PetcdError):
    """Peer URLs already exists"""


class MemberNotEnoughStartedError(PetcdError):
    """re-configuration failed due to not enough started members"""


class MemberBadURLsError(PetcdError):
    """given member URLs are invalid"""


class MemberNotFoundError(PetcdError):
    """member not found"""


class MemberNotLearnerError(PetcdError):
    """can only promote a learner member"""


class LearnerNotReadyError(PetcdError):
    """can only promote a learner member which is in sync with leader"""


class TooManyLearnersError(PetcdError):
    """too many learner members in cluster"""


class ConfChangeRejectedError(PetcdError):
    """raft refused the membership change; the message says why"""


# -- raft / availability ----------------------------------------------------------------
class NoLeaderError(PetcdError):
    """no leader"""


class NotLeaderError(PetcdError):
    """not leader"""


class LeaderChangedError(PetcdError):
    """leader changed"""


class NotCapableError(PetcdError):
    """not capable"""


class StoppedError(PetcdError):
    """server stopped"""


class RequestTimeoutError(PetcdError):
    """request timed out"""


class TimeoutDueToLeaderFailError(PetcdError):
    """request timed out, possibly due to previous leader failure"""


class TimeoutDueToConnectionLostError(PetcdError):
    """request timed out, possibly due to connection lost"""


class UnhealthyClusterError(PetcdError):
    """unhealthy cluster"""


class BadLeaderTransfereeError(PetcdError):
    """bad leader transferee"""


class LeaderTransferTimeoutError(PetcdError):
    """request timed out, leader transfer took too long"""


# -- auth -------------------------------------------------------------------------------
class RootUserNotExistError(PetcdError):
    """root user does not exist"""


class RootRoleNotExistError(PetcdError):
    """root user does not have root role"""


class UserAlreadyExistError(PetcdError):
    """user name already exists"""


class UserEmptyError(PetcdError):
    """user name is empty"""


class UserNotFoundError(PetcdError):
    """user name not found"""


class RoleAlreadyExistError(PetcdError):
    """role name already exists"""


class RoleNotFoundError(PetcdError):
    """role name not found"""


class RoleEmptyError(PetcdError):
    """role name is empty"""


class AuthFailedError(PetcdError):
    """authentication failed, invalid user ID or password"""


class PermissionNotGivenError(PetcdError):
    """permission not given (a grant without a permission)"""


class PermissionDeniedError(PetcdError):
    """permission denied"""


class RoleNotGrantedError(PetcdError):
    """role is not granted to the user"""


class PermissionNotGrantedError(PetcdError):
    """permission is not granted to the role"""


class AuthNotEnabledError(PetcdError):
    """authentication is not enabled"""


class InvalidAuthTokenError(PetcdError):
    """invalid auth token"""


class InvalidAuthMgmtError(PetcdError):
    """invalid auth management"""


class AuthOldRevisionError(PetcdError):
    """revision in header is old (the auth store changed since the token was checked)"""


class NoPasswordUserError(PetcdError):
    """the user was added with --no-password and cannot authenticate with one"""


class TokenSignError(PetcdError):
    """a token could not be issued (a verify-only JWT key, or signing failed)"""


class InvalidAuthOptsError(PetcdError):
    """the --auth-token options are invalid"""


# -- concurrency services ---------------------------------------------------------------
class ElectionNotLeaderError(PetcdError):
    """election: not leader"""


class ElectionNoLeaderError(PetcdError):
    """election: no leader"""


class SessionExpiredError(PetcdError):
    """mutex: session is expired (the lease of a waiting Lock ran out before it got the lock)"""


class MissingLeaderKeyError(PetcdError):
    """an election request without its "leader" field"""
