"""The server side of the Lease API: what the Lease servicer calls, given the EtcdServer.

Grants, revocations and checkpoints are proposed through raft and executed by
``Lessor.apply`` on every member; keep-alives and time-to-live questions are answered by
the primary lessor (the leader's) from its clock, as etcd does.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from petcd import errors
from petcd.clock import Clock, wait_for
from petcd.lease.lessor import MAX_LEASE_TTL, LeaseExpiredError, Lessor, NotPrimaryError
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.serverpb import internal_pb2 as serverpb

# etcd's quota cost of a lease grant (the lease record and its bookkeeping).
LEASE_GRANT_QUOTA_COST = 64
# How often a request that needs the primary lessor looks again while this member is
# becoming leader (it is primary only once it has applied its first entry of the term).
_ID_MASK = (1 << 63) - 1


class _IdGen(Protocol):
    def next(self) -> int: ...


class LeaseServer(Protocol):
    """What these functions use of the EtcdServer."""

    member_id: int
    leader: int
    clock: Clock

    @property
    def idgen(self) -> _IdGen: ...

    @property
    def lessor(self) -> Lessor: ...

    @property
    def settings(self) -> Any: ...

    async def propose(self, req: serverpb.InternalRequest) -> Any: ...

    def header(self, revision: int | None = None) -> pb.ResponseHeader: ...

    def fill_header(self, h: pb.ResponseHeader) -> None: ...

    async def await_leader_change(self, deadline: float) -> None: ...

    async def check_quota(self, cost: int) -> None: ...


def next_lease_id(server: LeaseServer) -> int:
    """A fresh positive lease id from the member's id generator (etcd masks off the sign bit)."""
    while True:
        lease_id = server.idgen.next() & _ID_MASK
        if lease_id != 0 and not server.lessor.exists(lease_id):
            return lease_id


async def lease_grant(server: LeaseServer, r: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
    req = pb.LeaseGrantRequest(TTL=r.TTL, ID=r.ID)
    if req.ID == 0:
        req.ID = next_lease_id(server)
    if req.TTL > MAX_LEASE_TTL:
        raise errors.LeaseTTLTooLargeError()  # the apply would refuse it too; spare the proposal
    await server.check_quota(LEASE_GRANT_QUOTA_COST)
    resp: pb.LeaseGrantResponse = await server.propose(serverpb.InternalRequest(lease_grant=req))
    server.fill_header(resp.header)
    return resp


async def lease_revoke(server: LeaseServer, r: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
    resp: pb.LeaseRevokeResponse = await server.propose(
        serverpb.InternalRequest(lease_revoke=pb.LeaseRevokeRequest(ID=r.ID))
    )
    server.fill_header(resp.header)
    return resp


async def lease_renew(server: LeaseServer, lease_id: int) -> int:
    """Keep a lease alive; returns its TTL. LeaseNotFoundError if it does not exist or expired
    (after waiting for its revocation to be applied, so a client told the lease is gone will
    not find its keys)."""
    deadline = server.clock.now() + server.settings.request_timeout
    while True:
        lessor = server.lessor
        try:
            if lessor.needs_checkpoint_clear(lease_id):
                # forget the checkpointed remaining TTL everywhere first (see Lessor docstring)
                cp = pb.LeaseCheckpoint(ID=lease_id, remaining_TTL=0)
                await server.propose(
                    serverpb.InternalRequest(lease_checkpoint=pb.LeaseCheckpointRequest(checkpoints=[cp]))
                )
            return lessor.renew(lease_id)
        except NotPrimaryError:
            await wait_primary(server, deadline)
        except LeaseExpiredError:
            if await _wait_revoked(server, lease_id, deadline):
                raise errors.LeaseNotFoundError() from None
            # demoted before the revoke was applied: ask again (it waits for the new primary)


async def lease_time_to_live(server: LeaseServer, r: pb.LeaseTimeToLiveRequest) -> pb.LeaseTimeToLiveResponse:
    """Granted and remaining TTL (and keys) of a lease; TTL -1 if there is no such lease."""
    deadline = server.clock.now() + server.settings.request_timeout
    if not server.lessor.is_primary:
        await wait_primary(server, deadline)
    try:
        granted, remaining, keys = server.lessor.time_to_live(r.ID, r.keys)
    except errors.LeaseNotFoundError:
        return pb.LeaseTimeToLiveResponse(header=server.header(), ID=r.ID, TTL=-1)
    return pb.LeaseTimeToLiveResponse(
        header=server.header(), ID=r.ID, TTL=remaining, grantedTTL=granted, keys=keys
    )


def lease_leases(server: LeaseServer) -> pb.LeaseLeasesResponse:
    return pb.LeaseLeasesResponse(
        header=server.header(), leases=[pb.LeaseStatus(ID=i) for i in server.lessor.leases()]
    )


async def wait_primary(server: LeaseServer, deadline: float) -> None:
    """Wait until this member's lessor is primary (a new leader's is promoted once it has applied
    its term's first entries). A member that knows another leader answers NotLeaderError at once,
    which the API layer forwards to that leader; without a leader it waits for one."""
    lessor = server.lessor
    while not lessor.is_primary:
        if server.leader not in (0, server.member_id):
            raise errors.NotLeaderError()
        remaining = deadline - server.clock.now()
        if remaining <= 0:
            raise errors.RequestTimeoutError()
        await _promotion_or_leader_change(server, deadline)


async def _promotion_or_leader_change(server: LeaseServer, deadline: float) -> None:
    lessor = server.lessor
    promoted: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def done() -> None:
        if not promoted.done():
            promoted.set_result(None)

    lessor.add_primary_waiter(done)
    leader_change = asyncio.ensure_future(server.await_leader_change(deadline))
    try:
        await asyncio.wait((promoted, leader_change), return_when=asyncio.FIRST_COMPLETED)
    finally:
        lessor.remove_primary_waiter(done)
        leader_change.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await leader_change


async def _wait_revoked(server: LeaseServer, lease_id: int, deadline: float) -> bool:
    """True once the lease is revoked, False if the lessor was demoted first."""
    fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def done(revoked: bool) -> None:
        if not fut.done():
            fut.set_result(revoked)

    lessor = server.lessor
    lessor.add_revoke_waiter(lease_id, done)
    try:
        return await wait_for(server.clock, fut, max(0.0, deadline - server.clock.now()))
    except TimeoutError:
        raise errors.RequestTimeoutError() from None
    finally:
        lessor.remove_revoke_waiter(lease_id, done)


__all__ = [
    "LEASE_GRANT_QUOTA_COST",
    "LeaseServer",
    "lease_grant",
    "lease_leases",
    "lease_renew",
    "lease_revoke",
    "lease_time_to_live",
    "next_lease_id",
    "wait_primary",
]
