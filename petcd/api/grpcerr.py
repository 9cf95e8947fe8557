"""Turning domain errors into gRPC statuses, the one way every servicer does it."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from petcd.api.errors import status_of
from petcd.errors import PetcdError

log = logging.getLogger("petcd.api")

T = TypeVar("T")
# what a servicer method is handed (grpc-stubs make it generic in request and response)
Context = grpc.aio.ServicerContext[Any, Any]


def unmarshal_error(exc: Exception) -> str:
    """etcd's (gRPC-Go's) status text for a request that does not parse (code INTERNAL)."""
    return f"grpc: error unmarshalling request: {exc}"


class Undecodable:
    """What a lenient request deserializer (``petcd.api.handlers``) hands over instead of a
    request that does not parse; ``unary`` answers it with etcd's status."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


async def abort_with(context: Any, exc: PetcdError) -> NoReturn:
    """End the call with etcd's status for ``exc`` (``context.abort`` raises)."""
    code, text = status_of(exc)
    await context.abort(code, text)
    raise AssertionError("context.abort returned")  # abort always raises


def unary(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Wrap a unary servicer method: a petcd.errors error -> status with etcd's code and
    message (api.errors.status_of); an undecodable request -> INTERNAL, as etcd answers."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> T:
        if type(request) is Undecodable:
            await context.abort(grpc.StatusCode.INTERNAL, unmarshal_error(request.error))
        try:
            return await fn(self, request, context)
        except PetcdError as exc:
            await abort_with(context, exc)

    wrapper.petcd_unary = True  # type: ignore[attr-defined]
    return wrapper
