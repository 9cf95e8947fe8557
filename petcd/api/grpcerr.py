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


def unary(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Wrap a unary servicer method: EtcdError -> status with etcd's code and message."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await fn(self, request, context)
        except EtcdError as exc:
            await context.abort(exc.code, exc.message)
            raise  # abort raises; this line only satisfies the type checker

    return wrapper
