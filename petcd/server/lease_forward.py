"""Requests only the leader can answer, forwarded there by a follower, as etcd does.

A lease's clock runs only in the leader's lessor, so a keep-alive or a time-to-live question
that reaches a follower goes to the leader; so does a learner promotion, since only the
leader knows how far the learner has caught up. etcd 3.5 posts these to the leader's peer
URL (``/leases``, ``/leases/internal``, ``/members/promote``); petcd's members talk gRPC, so
the follower calls the leader's ``LeaderForward`` service (``petcd.peer.forward``), which
hands them to this module's leader side.

The follower side is etcd's loop: try locally; if this member is not the leader, wait for a
leader to be known (``no leader`` if none appears before the request deadline), send the
request, and on a failure other than a final answer (the lease or member does not exist, the
learner is not ready or not a learner) pause 50 ms and try again at whoever is leader now,
until the request timeout (``request timed out``). The leader side never forwards again: it
waits (at most a second) until it has applied what it had committed, so a lease the follower
has just seen granted is found, then answers from its own state or refuses with
``NotLeaderError``, which the follower retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from petcd import errors
from petcd.lease import service
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.raft import StateType
from petcd.server import cluster
from petcd.server.maintenance import cluster_header

if TYPE_CHECKING:
    from petcd.server.etcdserver import EtcdServer

# etcd's pause between rounds when the leader could not be reached
RETRY_PAUSE = 0.05
# how long the leader waits to apply what it had committed before it answers (etcd's applyTimeout)
APPLY_TIMEOUT = 1.0
_APPLY_POLL = 0.005


class ForwardFailed(Exception):
    """The leader could not be reached, or could not answer this time: try again."""


class LeaderCalls(Protocol):
    """The calls to the leader's LeaderForward service (``petcd.peer.forward.LeaderClient``).
    Each raises a final domain error as itself (LeaseNotFoundError, LearnerNotReadyError,
    MemberNotFoundError, MemberNotLearnerError) and anything else as ForwardFailed."""

    async def lease_renew(self, leader: int, lease_id: int, timeout: float) -> int: ...

    async def lease_time_to_live(
        self, leader: int, r: pb.LeaseTimeToLiveRequest, timeout: float
    ) -> pb.LeaseTimeToLiveResponse: ...

    async def member_promote(self, leader: int, member_id: int, timeout: float) -> list[pb.Member]: ...


# a promotion the leader refused for one of these reasons is not tried again (etcd's list)
_FINAL_PROMOTE = (errors.LearnerNotReadyError, errors.MemberNotFoundError, errors.MemberNotLearnerError)


class Forwarder:
    """The follower side (what the Lease and Cluster servicers call) and the leader side (what
    the peer LeaderForward servicer calls) of forwarding, for one member."""

    def __init__(self, server: EtcdServer, calls: LeaderCalls) -> None:
        self.server = server
        self.calls = calls

    # -- follower side ----------------------------------------------------------------------

    async def lease_renew(self, lease_id: int) -> int:
        """Keep-alive: the lease's TTL; LeaseNotFoundError if it does not exist (or expired)."""
        srv = self.server
        deadline = srv.clock.now() + srv.settings.request_timeout
        while True:
            if self._may_be_leader():
                try:
                    return await service.lease_renew(srv, lease_id)
                except errors.NotLeaderError:
                    pass  # another member became leader meanwhile: forward to it
            else:
                leader = await self._wait_leader(deadline)
                if leader != srv.member_id:
                    try:
                        return await self.calls.lease_renew(leader, lease_id, self._left(deadline))
                    except ForwardFailed:
                        await self._pause(deadline)
            if srv.clock.now() >= deadline:
                raise errors.RequestTimeoutError()

    async def lease_time_to_live(self, r: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
        """Granted and remaining TTL (and keys) from the leader; TTL -1 for no such lease."""
        srv = self.server
        deadline = srv.clock.now() + srv.settings.request_timeout
        while True:
            if self._may_be_leader():
                try:
                    return await service.lease_time_to_live(srv, r)
                except errors.NotLeaderError:
                    pass
            else:
                leader = await self._wait_leader(deadline)
                if leader != srv.member_id:
                    try:
                        resp = await self.calls.lease_time_to_live(leader, r, self._left(deadline))
                    except errors.LeaseNotFoundError:
                        return pb.LeaseTimeToLiveResponse(header=srv.header(), ID=r.ID, TTL=-1)
                    except ForwardFailed:
                        await self._pause(deadline)
                    else:
                        # the member that answers the client names itself in the header, as etcd's does
                        resp.header.CopyFrom(srv.header())
                        return resp
            if srv.clock.now() >= deadline:
                raise errors.RequestTimeoutError()

    async def member_promote(self, r: pb.MemberPromoteRequest) -> pb.MemberPromoteResponse:
        """Promote a learner; a follower asks the leader, which alone can tell it is ready."""
        srv = self.server
        try:
            return await cluster.member_promote(srv, r)
        except errors.NotLeaderError:
            pass
        deadline = srv.clock.now() + srv.settings.request_timeout
        while srv.clock.now() < deadline:
            leader = await self._wait_leader(deadline)
            if leader == srv.member_id:
                try:
                    return await cluster.member_promote(srv, r)
                except errors.NotLeaderError:
                    continue
            try:
                members = await self.calls.member_promote(leader, r.ID, self._left(deadline))
            except _FINAL_PROMOTE:
                raise
            except ForwardFailed:
                # etcd tries again on any other answer too (not enough started members, a
                # timeout at the leader), until its own deadline
                await self._pause(deadline)
                continue
            return pb.MemberPromoteResponse(header=cluster_header(srv), members=members)
        raise errors.RequestTimeoutError()

    # -- leader side ------------------------------------------------------------------------

    async def renew_as_leader(self, lease_id: int) -> int:
        await self._wait_applied()
        if not self.server.lessor.is_primary:
            raise errors.NotLeaderError()
        return await service.lease_renew(self.server, lease_id)

    async def time_to_live_as_leader(self, r: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
        await self._wait_applied()
        lessor = self.server.lessor
        if not lessor.is_primary:
            raise errors.NotLeaderError()  # its clocks are stopped: the follower asks the next leader
        granted, remaining, keys = lessor.time_to_live(r.ID, r.keys)  # LeaseNotFoundError
        return pb.LeaseTimeToLiveResponse(ID=r.ID, TTL=remaining, grantedTTL=granted, keys=keys)

    async def promote_as_leader(self, member_id: int) -> list[pb.Member]:
        await self._wait_applied()
        resp = await cluster.member_promote(self.server, pb.MemberPromoteRequest(ID=member_id))
        return list(resp.members)

    # -- helpers ----------------------------------------------------------------------------

    def _may_be_leader(self) -> bool:
        srv = self.server
        return srv.role == StateType.LEADER or srv.leader == srv.member_id or srv.lessor.is_primary

    async def _wait_leader(self, deadline: float) -> int:
        """The leader's id once one is known and is a member; NoLeaderError at the deadline."""
        srv = self.server
        while srv.leader == 0 or srv.leader not in srv.membership.members:
            try:
                await srv.await_leader_change(deadline)
            except TimeoutError:
                raise errors.NoLeaderError() from None
        return srv.leader

    def _left(self, deadline: float) -> float:
        return max(0.001, deadline - self.server.clock.now())

    async def _pause(self, deadline: float) -> None:
        await self.server.clock.sleep(min(RETRY_PAUSE, self._left(deadline)))

    async def _wait_applied(self) -> None:
        """Until everything committed when the request arrived is applied here."""
        srv = self.server
        target = srv.committed_index
        end = srv.clock.now() + APPLY_TIMEOUT
        while srv.applied_index < target:
            if srv.clock.now() >= end:
                raise ForwardFailed("waiting for node to catch up its applied index has timed out")
            await srv.clock.sleep(_APPLY_POLL)


__all__ = ["APPLY_TIMEOUT", "RETRY_PAUSE", "ForwardFailed", "Forwarder", "LeaderCalls"]
