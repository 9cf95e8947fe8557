"""Lock service (etcd's v3lock): call the server's Locks, answer errors the way etcd does.

etcd's Lock and Election servers are clients of the member's own KV API (clientv3/concurrency),
and clientv3 turns an etcd error into a plain Go error carrying the same text; gRPC reports a
plain error as UNKNOWN. So every error of these services, 'etcdserver: requested lease not found'
included, reaches the client as UNKNOWN with etcd's text. The exception is a watch that lost its
history to compaction: clientv3 hands that one on as the gRPC status it is (OUT_OF_RANGE).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from petcd import errors
from petcd.api.credentials import Credentials
from petcd.api.errors import status_of
from petcd.api.grpcerr import unary
from petcd.proto.v3lockpb import v3lock_pb2 as lockpb
from petcd.proto.v3lockpb import v3lock_pb2_grpc as lockpb_grpc
from petcd.server.lock import Locks

T = TypeVar("T")


def client_status(exc: errors.PetcdError) -> tuple[grpc.StatusCode, str]:
    """The status etcd's concurrency services answer for an error (see the module docstring)."""
    code, text = status_of(exc)
    if isinstance(exc, errors.CompactedError):
        return code, text
    return grpc.StatusCode.UNKNOWN, text


def as_client_errors(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Wrap a servicer method so that server errors abort the call with ``client_status``."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> T:
        try:
            return await fn(self, request, context)
        except errors.PetcdError as exc:
            code, text = client_status(exc)
            await context.abort(code, text)
            raise  # abort raises; this line only satisfies the type checker

    return wrapper


class LockServicer(lockpb_grpc.LockServicer):
    def __init__(self, locks: Locks, credentials: Credentials | None = None) -> None:
        self.locks = locks
        # with auth on, the lock's reads and writes run as the caller (etcd's v3lock passes the
        # call's context to its client); None: no credentials (tests without auth)
        self.credentials = credentials

    async def _enter(self, context: Any) -> None:
        if self.credentials is not None:
            await self.credentials.enter(context)

    @unary
    @as_client_errors
    async def Lock(self, request: lockpb.LockRequest, context: grpc.aio.ServicerContext[Any, Any]) -> lockpb.LockResponse:
        await self._enter(context)
        return await self.locks.lock(request.name, request.lease)

    @unary
    @as_client_errors
    async def Unlock(
        self, request: lockpb.UnlockRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lockpb.UnlockResponse:
        await self._enter(context)
        return await self.locks.unlock(request.key)
