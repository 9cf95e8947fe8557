"""Election service (etcd's v3election): call the server's Elections; errors as ``api.lock``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from petcd.api.grpcerr import unary
from petcd.api.lock import as_client_errors
from petcd.proto.v3electionpb import v3election_pb2 as epb
from petcd.proto.v3electionpb import v3election_pb2_grpc as epb_grpc
from petcd.server.election import Elections

Context = grpc.aio.ServicerContext[Any, Any]


class ElectionServicer(epb_grpc.ElectionServicer):
    def __init__(self, elections: Elections) -> None:
        self.elections = elections

    @unary
    @as_client_errors
    async def Campaign(self, request: epb.CampaignRequest, context: Context) -> epb.CampaignResponse:
        return await self.elections.campaign(request.name, request.lease, request.value)

    @unary
    @as_client_errors
    async def Proclaim(self, request: epb.ProclaimRequest, context: Context) -> epb.ProclaimResponse:
        leader = request.leader if request.HasField("leader") else None
        return await self.elections.proclaim(leader, request.value)

    @unary
    @as_client_errors
    async def Leader(self, request: epb.LeaderRequest, context: Context) -> epb.LeaderResponse:
        return await self.elections.leader(request.name)

    @unary
    @as_client_errors
    async def Resign(self, request: epb.ResignRequest, context: Context) -> epb.ResignResponse:
        leader = request.leader if request.HasField("leader") else None
        return await self.elections.resign(leader)

    async def Observe(self, request: epb.LeaderRequest, context: Context) -> AsyncIterator[epb.LeaderResponse]:
        # closed at once when the client goes away, so its watchers go with it
        async with contextlib.aclosing(self.elections.observe(request.name)) as responses:
            async for resp in responses:
                yield resp
