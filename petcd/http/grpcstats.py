"""gRPC call counters with etcd's names (go-grpc-prometheus's): started, handled by code, messages.

Counted on the member, cheaply, where every client call passes anyway:

- unary calls that front-ends forward over their link: the member's link server records the
  status it sends back (``record_unary``), one dict increment per call;
- calls served by the member's own gRPC server (direct clients, the peer URL, and the streams
  and blocking calls front-ends relay): :func:`interceptor` wraps each method's handler once
  (cached per method) so a call costs a wrapper frame and a few increments.

Front-ends themselves count nothing, so no call is counted twice.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from petcd.proto.etcdserverpb import rpc_pb2
from petcd.stats import Durations

__all__ = ["CODE_NAMES", "GrpcCounters", "interceptor"]

# go-grpc-prometheus labels codes with Go's names
CODE_NAMES: dict[int, str] = {
    0: "OK", 1: "Canceled", 2: "Unknown", 3: "InvalidArgument", 4: "DeadlineExceeded", 5: "NotFound",
    6: "AlreadyExists", 7: "PermissionDenied", 8: "ResourceExhausted", 9: "FailedPrecondition",
    10: "Aborted", 11: "OutOfRange", 12: "Unimplemented", 13: "Internal", 14: "Unavailable",
    15: "DataLoss", 16: "Unauthenticated",
}


def _kind(client_streaming: bool, server_streaming: bool) -> str:
    if client_streaming:
        return "bidi_stream" if server_streaming else "client_stream"
    return "server_stream" if server_streaming else "unary"


def _etcd_methods() -> dict[str, tuple[str, str, str]]:
    """path -> (service, method, type) of the services etcd registers its metrics for up front."""
    out: dict[str, tuple[str, str, str]] = {}
    for svc in rpc_pb2.DESCRIPTOR.services_by_name.values():
        for m in svc.methods:
            out[f"/{svc.full_name}/{m.name}"] = (svc.full_name, m.name, _kind(m.client_streaming, m.server_streaming))
    return out


# go-grpc-prometheus's buckets for grpc_server_handling_seconds (Prometheus's defaults)
HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GrpcCounters:
    """Counts per method path; etcd's own services appear with zeros before their first call.
    ``extensive`` (--metrics=extensive) adds the handling-time histogram per method."""

    def __init__(self, extensive: bool = False) -> None:
        self.methods = _etcd_methods()
        self.started: dict[str, int] = dict.fromkeys(self.methods, 0)
        self.handled: dict[tuple[str, int], int] = {}
        self.received: dict[str, int] = dict.fromkeys(self.methods, 0)
        self.sent: dict[str, int] = dict.fromkeys(self.methods, 0)
        self.extensive = extensive
        self.handling: dict[str, Durations] = (
            {p: Durations(HANDLING_BUCKETS) for p in self.methods} if extensive else {})

    def timed(self, path: str, started: float) -> None:
        if self.extensive:
            d = self.handling.get(path)
            if d is None:
                d = self.handling[path] = Durations(HANDLING_BUCKETS)
            d.observe(time.perf_counter() - started)

    def describe(self, path: str, kind: str) -> None:
        if path not in self.methods:
            service, _, name = path[1:].rpartition("/")
            self.methods[path] = (service, name, kind)
            self.started.setdefault(path, 0)
            self.received.setdefault(path, 0)
            self.sent.setdefault(path, 0)

    def record_unary(self, path: str, code: int, started: float) -> None:
        """A whole unary call: started, one message each way (none back on an error), handled;
        ``started`` is time.perf_counter() when it began."""
        self.timed(path, started)
        self.started[path] = self.started.get(path, 0) + 1
        self.received[path] = self.received.get(path, 0) + 1
        if code == 0:
            self.sent[path] = self.sent.get(path, 0) + 1
        key = (path, code)
        self.handled[key] = self.handled.get(key, 0) + 1


def _code_of(context: Any, exc: BaseException | None) -> int:
    code = context.code()
    if code is None:
        if exc is None:
            return 0
        return 1 if isinstance(exc, BaseException) and type(exc).__name__ == "CancelledError" else 2
    return int(code.value[0]) if isinstance(code, grpc.StatusCode) else int(code)


def interceptor(counters: GrpcCounters) -> grpc.aio.ServerInterceptor[Any, Any]:
    """A server interceptor counting every call of the member's own gRPC server."""
    wrapped: dict[str, Any] = {}

    class _Counting(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
        async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
            details: grpc.HandlerCallDetails,
        ) -> Any:
            path = details.method
            cached = wrapped.get(path)
            if cached is not None:
                return cached
            handler = await continuation(details)
            if handler is None:
                return None
            out = _wrap(counters, path, handler)
            wrapped[path] = out
            return out

    return _Counting()


def _wrap(counters: GrpcCounters, path: str, h: Any) -> Any:
    kind = _kind(h.request_streaming, h.response_streaming)
    counters.describe(path, kind)
    started, handled, received, sent = counters.started, counters.handled, counters.received, counters.sent

    def done(context: Any, exc: BaseException | None, started: float) -> None:
        key = (path, _code_of(context, exc))
        handled[key] = handled.get(key, 0) + 1
        counters.timed(path, started)

    async def counted_requests(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for r in requests:
            received[path] += 1
            yield r

    if not h.request_streaming and not h.response_streaming:
        fn = h.unary_unary

        async def uu(request: Any, context: Any) -> Any:
            t0 = time.perf_counter()
            started[path] += 1
            received[path] += 1
            try:
                resp = await fn(request, context)
            except BaseException as exc:
                done(context, exc, t0)
                raise
            done(context, None, t0)
            if context.code() in (None, grpc.StatusCode.OK):
                sent[path] += 1
            return resp

        return grpc.unary_unary_rpc_method_handler(uu, h.request_deserializer, h.response_serializer)

    if h.request_streaming:
        fn = h.stream_stream if h.response_streaming else h.stream_unary
    else:
        fn = h.unary_stream

    def inputs(request: Any) -> Any:
        started[path] += 1
        if h.request_streaming:
            return counted_requests(request)
        received[path] += 1
        return request

    if inspect.isasyncgenfunction(fn):
        async def generated(request: Any, context: Any) -> AsyncIterator[Any]:
            t0 = time.perf_counter()
            try:
                async for resp in fn(inputs(request), context):
                    sent[path] += 1
                    yield resp
            except BaseException as exc:
                done(context, exc, t0)
                raise
            done(context, None, t0)

        behaviour: Any = generated
    else:
        # a handler that writes with context.write (Watch): its messages are not counted
        async def awaited(request: Any, context: Any) -> Any:
            t0 = time.perf_counter()
            try:
                result = await fn(inputs(request), context)
            except BaseException as exc:
                done(context, exc, t0)
                raise
            done(context, None, t0)
            return result

        behaviour = awaited
    if h.request_streaming and h.response_streaming:
        return grpc.stream_stream_rpc_method_handler(behaviour, h.request_deserializer, h.response_serializer)
    if h.response_streaming:
        return grpc.unary_stream_rpc_method_handler(behaviour, h.request_deserializer, h.response_serializer)
    return grpc.stream_unary_rpc_method_handler(behaviour, h.request_deserializer, h.response_serializer)
