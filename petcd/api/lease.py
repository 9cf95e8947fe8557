"""Lease service: call the server's lease functions, map errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

from petcd.api.credentials import Credentials
from petcd.api.grpcerr import Context, abort_with, unary
from petcd.errors import LeaseNotFoundError, PetcdError
from petcd.lease import service
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.server.lease_forward import Forwarder


class LeaseServicer(pb_grpc.LeaseServicer):
    def __init__(self, server: service.LeaseServer, forward: Forwarder,
                 credentials: Credentials | None = None) -> None:
        self.server = server
        # keep-alives and time-to-live questions a follower gets go to the leader, as in etcd
        self.forward = forward
        # None: a server without auth (the lease tests' fakes)
        self.credentials = credentials

    @unary
    async def LeaseGrant(
        self, request: pb.LeaseGrantRequest, context: Context
    ) -> pb.LeaseGrantResponse:
        if self.credentials is not None:
            await self.credentials.enter(context)
        return await service.lease_grant(self.server, request)

    @unary
    async def LeaseRevoke(
        self, request: pb.LeaseRevokeRequest, context: Context
    ) -> pb.LeaseRevokeResponse:
        if self.credentials is not None:
            # the apply chain checks write permission on every key attached to the lease
            await self.credentials.enter(context)
        return await service.lease_revoke(self.server, request)

    async def LeaseKeepAlive(
        self, request_iterator: AsyncIterator[pb.LeaseKeepAliveRequest], context: Context
    ) -> AsyncIterator[pb.LeaseKeepAliveResponse]:
        try:
            async for req in request_iterator:
                # the header is taken before the renew, so its revision is never past one at
                # which the lease could have been revoked (as etcd does)
                resp = pb.LeaseKeepAliveResponse(header=self.server.header(), ID=req.ID)
                try:
                    resp.TTL = await self.forward.lease_renew(req.ID)
                except LeaseNotFoundError:
                    resp.TTL = 0  # etcd's answer for a lease that is gone
                yield resp
        except PetcdError as exc:
            await abort_with(context, exc)

    @unary
    async def LeaseTimeToLive(
        self, request: pb.LeaseTimeToLiveRequest, context: Context
    ) -> pb.LeaseTimeToLiveResponse:
        return await self.forward.lease_time_to_live(request)

    @unary
    async def LeaseLeases(
        self, request: pb.LeaseLeasesRequest, context: Context
    ) -> pb.LeaseLeasesResponse:
        # answered by any member from its own lessor, as etcd 3.5 does (not forwarded)
        return service.lease_leases(self.server)

