"""KV service: validate, call the server, map errors."""

from __future__ import annotations

from petcd.api import validate
from petcd.api.credentials import Credentials
from petcd.api.grpcerr import Context, unary
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.server.etcdserver import EtcdServer


class KVServicer(pb_grpc.KVServicer):
    def __init__(self, server: EtcdServer, credentials: Credentials | None = None) -> None:
        self.server = server
        self.credentials = credentials if credentials is not None else Credentials(server)

    @unary
    async def Range(self, request: pb.RangeRequest, context: Context) -> pb.RangeResponse:
        validate.check_range(request)
        await self.credentials.enter(context)
        return await self.server.range(request)

    @unary
    async def Put(self, request: pb.PutRequest, context: Context) -> pb.PutResponse:
        validate.check_put(request)
        await self.credentials.enter(context)
        return await self.server.put(request)

    @unary
    async def DeleteRange(
        self, request: pb.DeleteRangeRequest, context: Context
    ) -> pb.DeleteRangeResponse:
        validate.check_delete(request)
        await self.credentials.enter(context)
        return await self.server.delete_range(request)

    @unary
    async def Txn(self, request: pb.TxnRequest, context: Context) -> pb.TxnResponse:
        validate.check_txn(request, self.server.settings.max_txn_ops)
        await self.credentials.enter(context)
        return await self.server.txn(request)

    @unary
    async def Compact(
        self, request: pb.CompactionRequest, context: Context
    ) -> pb.CompactionResponse:
        await self.credentials.enter(context)
        return await self.server.compact(request)
