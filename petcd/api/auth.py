"""Auth service: resolve the caller, call the member's auth functions, map errors.

Every RPC but Authenticate goes through raft with the caller's credentials and is checked by the
apply chain (admin-only, or UserGet / RoleGet of oneself); Authenticate carries none.
"""

from __future__ import annotations

from petcd.api.credentials import Credentials
from petcd.api.grpcerr import Context, unary
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.server import authserver
from petcd.server.etcdserver import EtcdServer


class AuthServicer(pb_grpc.AuthServicer):
    def __init__(self, server: EtcdServer, credentials: Credentials | None = None) -> None:
        self.server = server
        self.credentials = credentials if credentials is not None else Credentials(server)

    @unary
    async def Authenticate(self, request: pb.AuthenticateRequest, context: Context) -> pb.AuthenticateResponse:
        return await authserver.authenticate(self.server, request)

    @unary
    async def AuthEnable(self, request: pb.AuthEnableRequest, context: Context) -> pb.AuthEnableResponse:
        await self.credentials.enter(context)
        resp: pb.AuthEnableResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def AuthDisable(self, request: pb.AuthDisableRequest, context: Context) -> pb.AuthDisableResponse:
        await self.credentials.enter(context)
        resp: pb.AuthDisableResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def AuthStatus(self, request: pb.AuthStatusRequest, context: Context) -> pb.AuthStatusResponse:
        await self.credentials.enter(context)
        resp: pb.AuthStatusResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def UserAdd(self, request: pb.AuthUserAddRequest, context: Context) -> pb.AuthUserAddResponse:
        await self.credentials.enter(context)
        resp: pb.AuthUserAddResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def UserGet(self, request: pb.AuthUserGetRequest, context: Context) -> pb.AuthUserGetResponse:
        await self.credentials.enter(context)
        resp: pb.AuthUserGetResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def UserList(self, request: pb.AuthUserListRequest, context: Context) -> pb.AuthUserListResponse:
        await self.credentials.enter(context)
        resp: pb.AuthUserListResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def UserDelete(self, request: pb.AuthUserDeleteRequest, context: Context) -> pb.AuthUserDeleteResponse:
        await self.credentials.enter(context)
        resp: pb.AuthUserDeleteResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def UserChangePassword(self, request: pb.AuthUserChangePasswordRequest, context: Context) -> pb.AuthUserChangePasswordResponse:
        await self.credentials.enter(context)
        resp: pb.AuthUserChangePasswordResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def UserGrantRole(self, request: pb.AuthUserGrantRoleRequest, context: Context) -> pb.AuthUserGrantRoleResponse:
        await self.credentials.enter(context)
        resp: pb.AuthUserGrantRoleResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def UserRevokeRole(self, request: pb.AuthUserRevokeRoleRequest, context: Context) -> pb.AuthUserRevokeRoleResponse:
        await self.credentials.enter(context)
        resp: pb.AuthUserRevokeRoleResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def RoleAdd(self, request: pb.AuthRoleAddRequest, context: Context) -> pb.AuthRoleAddResponse:
        await self.credentials.enter(context)
        resp: pb.AuthRoleAddResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def RoleGet(self, request: pb.AuthRoleGetRequest, context: Context) -> pb.AuthRoleGetResponse:
        await self.credentials.enter(context)
        resp: pb.AuthRoleGetResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def RoleList(self, request: pb.AuthRoleListRequest, context: Context) -> pb.AuthRoleListResponse:
        await self.credentials.enter(context)
        resp: pb.AuthRoleListResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def RoleDelete(self, request: pb.AuthRoleDeleteRequest, context: Context) -> pb.AuthRoleDeleteResponse:
        await self.credentials.enter(context)
        resp: pb.AuthRoleDeleteResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def RoleGrantPermission(self, request: pb.AuthRoleGrantPermissionRequest, context: Context) -> pb.AuthRoleGrantPermissionResponse:
        await self.credentials.enter(context)
        resp: pb.AuthRoleGrantPermissionResponse = await authserver.auth_request(self.server, request)
        return resp

    @unary
    async def RoleRevokePermission(self, request: pb.AuthRoleRevokePermissionRequest, context: Context) -> pb.AuthRoleRevokePermissionResponse:
        await self.credentials.enter(context)
        resp: pb.AuthRoleRevokePermissionResponse = await authserver.auth_request(self.server, request)
        return resp
