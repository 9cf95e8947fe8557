"""Turning server errors into gRPC statuses, the one way every servicer does it."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from petcd.server.errors import EtcdError

log = logging.getLogger("petcd.api")

T = TypeVar("T")


def unmarshal_error(exc: Exception) -> str:
    """etcd's (gRPC-Go's) status text for a request that does not parse (code INTERNAL)."""
    return f"grpc: error unmarshalling request: {exc}"


class Undecodable:
    """What a lenient request deserializer (``petcd.api.handlers``) hands over instead of a
    request that does not parse; ``unary`` answers it with etcd's status."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def unary(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Wrap a unary servicer method: EtcdError -> status with etcd's code and message; an
    undecodable request -> INTERNAL, as etcd answers."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        if type(request) is Undecodable:
            await context.abort(grpc.StatusCode.INTERNAL, unmarshal_error(request.error))
        try:
            return await fn(self, request, context)
        except EtcdError as exc:
            await context.abort(exc.code, exc.message)
            raise  # abort raises; this line only satisfies the type checker

    wrapper.petcd_unary = True  # type: ignore[attr-defined]
    return wrapper
