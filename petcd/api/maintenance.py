"""Maintenance and Cluster services: validate, call the server, map errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

from petcd import errors
from petcd.api.credentials import Credentials
from petcd.api.errors import status_of, unmapped_auth_status
from petcd.api.grpcerr import Context, unary
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.server import cluster, maintenance
from petcd.server.etcdserver import EtcdServer
from petcd.server.lease_forward import Forwarder


class MaintenanceServicer(pb_grpc.MaintenanceServicer):
    # admin-only (root role) with auth on, as etcd 3.5.1: Defragment, Snapshot, Hash, HashKV;
    # Alarm, Status, MoveLeader, Downgrade are not checked
    def __init__(self, server: EtcdServer, credentials: Credentials | None = None) -> None:
        self.server = server
        self.credentials = credentials if credentials is not None else Credentials(server)

    @unary
    async def Alarm(self, request: pb.AlarmRequest, context: Context) -> pb.AlarmResponse:
        await self.credentials.enter(context)
        return await maintenance.alarm(self.server, request)

    @unary
    async def Status(self, request: pb.StatusRequest, context: Context) -> pb.StatusResponse:
        resp = maintenance.status(self.server)
        if self.server.leader == 0:
            resp.errors.insert(0, status_of(errors.NoLeaderError())[1])
        return resp

    @unary
    async def Defragment(
        self, request: pb.DefragmentRequest, context: Context
    ) -> pb.DefragmentResponse:
        await self._admin_or_abort(context)
        return await maintenance.defragment(self.server)

    @unary
    async def Hash(self, request: pb.HashRequest, context: Context) -> pb.HashResponse:
        await self._admin_or_abort(context)
        return maintenance.hash_(self.server)

    @unary
    async def HashKV(self, request: pb.HashKVRequest, context: Context) -> pb.HashKVResponse:
        await self._admin_or_abort(context)
        return maintenance.hash_kv(self.server, request.revision)

    async def Snapshot(
        self, request: pb.SnapshotRequest, context: Context
    ) -> AsyncIterator[pb.SnapshotResponse]:
        await self._admin_or_abort(context)
        async for chunk in maintenance.snapshot(self.server):
            yield chunk

    async def _admin_or_abort(self, context: Context) -> None:
        try:
            await self.credentials.admin(context)
        except errors.PetcdError as exc:
            await context.abort(*unmapped_auth_status(exc))

    @unary
    async def MoveLeader(
        self, request: pb.MoveLeaderRequest, context: Context
    ) -> pb.MoveLeaderResponse:
        await maintenance.move_leader(self.server, request.targetID)
        return pb.MoveLeaderResponse()  # etcd answers without a header

    @unary
    async def Downgrade(self, request: pb.DowngradeRequest, context: Context) -> pb.DowngradeResponse:
        raise errors.NotCapableError()


class ClusterServicer(pb_grpc.ClusterServicer):
    # member changes are admin-only with auth on; MemberList is not checked (etcd 3.5.1)
    def __init__(self, server: EtcdServer, forward: Forwarder, credentials: Credentials | None = None) -> None:
        self.server = server
        self.forward = forward  # MemberPromote on a follower goes to the leader, as in etcd
        self.credentials = credentials if credentials is not None else Credentials(server)

    @unary
    async def MemberList(
        self, request: pb.MemberListRequest, context: Context
    ) -> pb.MemberListResponse:
        if request.linearizable:
            await self.server.linearizable_read()
        return maintenance.member_list(self.server)

    @unary
    async def MemberAdd(self, request: pb.MemberAddRequest, context: Context) -> pb.MemberAddResponse:
        await self.credentials.admin(context)
        return await cluster.member_add(self.server, request)

    @unary
    async def MemberRemove(
        self, request: pb.MemberRemoveRequest, context: Context
    ) -> pb.MemberRemoveResponse:
        await self.credentials.admin(context)
        return await cluster.member_remove(self.server, request)

    @unary
    async def MemberUpdate(
        self, request: pb.MemberUpdateRequest, context: Context
    ) -> pb.MemberUpdateResponse:
        await self.credentials.admin(context)
        return await cluster.member_update(self.server, request)

    @unary
    async def MemberPromote(
        self, request: pb.MemberPromoteRequest, context: Context
    ) -> pb.MemberPromoteResponse:
        await self.credentials.admin(context)
        return await self.forward.member_promote(request)
