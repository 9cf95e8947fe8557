"""Election service (etcd's v3election): call the server's Elections; errors as ``api.lock``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from petcd import errors
from petcd.api.credentials import Credentials
from petcd.api.grpcerr import unary
from petcd.api.lock import as_client_errors, client_status
from petcd.proto.v3electionpb import v3election_pb2 as epb
from petcd.proto.v3electionpb import v3election_pb2_grpc as epb_grpc
from petcd.server.election import Elections

Context = grpc.aio.ServicerContext[Any, Any]


class ElectionServicer(epb_grpc.ElectionServicer):
    def __init__(self, elections: Elections, credentials: Credentials | None = None) -> None:
        self.elections = elections
        # as api.lock: with auth on, the election's requests run as the caller
        self.credentials = credentials

    async def _enter(self, context: Any) -> None:
        if self.credentials is not None:
            await self.credentials.enter(context)

    @unary
    @as_client_errors
    async def Campaign(self, request: epb.CampaignRequest, context: Context) -> epb.CampaignResponse:
        await self._enter(context)
        return await self.elections.campaign(request.name, request.lease, request.value)

    @unary
    @as_client_errors
    async def Proclaim(self, request: epb.ProclaimRequest, context: Context) -> epb.ProclaimResponse:
        await self._enter(context)
        leader = request.leader if request.HasField("leader") else None
        return await self.elections.proclaim(leader, request.value)

    @unary
    @as_client_errors
    async def Leader(self, request: epb.LeaderRequest, context: Context) -> epb.LeaderResponse:
        await self._enter(context)
        return await self.elections.leader(request.name)

    @unary
    @as_client_errors
    async def Resign(self, request: epb.ResignRequest, context: Context) -> epb.ResignResponse:
        await self._enter(context)
        leader = request.leader if request.HasField("leader") else None
        return await self.elections.resign(leader)

    async def Observe(self, request: epb.LeaderRequest, context: Context) -> AsyncIterator[epb.LeaderResponse]:
        try:
            await self._enter(context)
        except errors.PetcdError as exc:
            await context.abort(*client_status(exc))
        # closed at once when the client goes away, so its watchers go with it
        async with contextlib.aclosing(self.elections.observe(request.name)) as responses:
            async for resp in responses:
                yield resp
