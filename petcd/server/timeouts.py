"""Which of etcd's timeout errors a proposal that timed out gets (etcd's parseProposeCtxErr).

Clients tell them apart: "possibly due to previous leader failure" says the write may be lost
with the old leader, "possibly due to connection lost" that this member could not reach the
leader (or, as leader, a quorum) for the whole wait, and a plain "request timed out" says neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from petcd import errors

if TYPE_CHECKING:
    from petcd.server.etcdserver import EtcdServer


def timeout_error(srv: EtcdServer, started: float) -> errors.PetcdError:
    """The error for a proposal made at ``started`` (clock time) that timed out: a new leader
    was elected soon after it started (within two election timeouts), or the link to the leader
    (the leader's links to a quorum) was not up all along, or neither."""
    elected = srv.leader_elected_at
    if elected - 2 * srv.settings.election_timeout_ms / 1000.0 < started < elected:
        return errors.TimeoutDueToLeaderFailError()
    leader = srv.leader
    if leader == srv.member_id:
        members = srv.membership.members
        up = sum(1 for m in members if m == srv.member_id or _connected_since(srv, m, started))
        if up < len(members) // 2 + 1:
            return errors.TimeoutDueToConnectionLostError()
    elif leader != 0 and not _connected_since(srv, leader, started):
        return errors.TimeoutDueToConnectionLostError()
    return errors.RequestTimeoutError()


def _connected_since(srv: EtcdServer, member_id: int, when: float) -> bool:
    since = srv.peering.active_since(member_id)
    return since is not None and since <= when
