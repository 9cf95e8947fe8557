"""--peer-cert-allowed-cn and --peer-cert-allowed-hostname on the peer URL.

etcd checks them while the TLS handshake runs; gRPC's Python API has no hook there, so the
member's server on the peer URL checks every call instead, before its handler runs: a
connection whose verified client certificate lacks the common name (or does not cover the host
name) gets UNAUTHENTICATED for each call, raft streams and client API alike. The verdict is
kept per certificate, so the check costs a dict look-up once a connection is known.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from petcd.tls import certificate_names, hostname_matches

Context = grpc.aio.ServicerContext[Any, Any]


class CertificateGuard(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # grpc-stubs lag grpc.aio
    def __init__(self, allowed_cn: str, allowed_hostname: str) -> None:
        self.allowed_cn = allowed_cn
        self.allowed_hostname = allowed_hostname
        self._verdicts: dict[bytes, str] = {}  # certificate -> "" (allowed) or why not
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def refusal(self, context: Context) -> str:
        """Why the call's client certificate is not allowed ("" if it is)."""
        certs = list(context.auth_context().get("x509_pem_cert") or ())
        if not certs:
            return "a client certificate is required on the peer URL"
        pem = certs[0]
        verdict = self._verdicts.get(pem)
        if verdict is None:
            verdict = self._judge(pem)
            if len(self._verdicts) > 1024:
                self._verdicts.clear()
            self._verdicts[pem] = verdict
        return verdict

    def _judge(self, pem: bytes) -> str:
        cn, alt = certificate_names(pem)
        if self.allowed_cn and cn != self.allowed_cn:
            return f"client certificate CN {cn!r} is not the allowed {self.allowed_cn!r} (--peer-cert-allowed-cn)"
        if self.allowed_hostname and not any(hostname_matches(a, self.allowed_hostname) for a in alt):
            return (f"client certificate is not valid for {self.allowed_hostname!r} "
                    "(--peer-cert-allowed-hostname)")
        return ""

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return handler
            wrapped = self._wrap(handler)
            self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, handler: Any) -> Any:
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            fn = getattr(handler, kind)
            if fn is not None:
                return handler._replace(**{kind: self._guarded(fn)})
        return handler

    def _guarded(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        guard = self

        async def check(context: Context) -> None:
            why = guard.refusal(context)
            if why:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"petcd: {why}")

        if inspect.isasyncgenfunction(fn):
            async def gen(request: Any, context: Context) -> AsyncIterator[Any]:
                await check(context)
                async for item in fn(request, context):
                    yield item

            return gen

        async def call(request: Any, context: Context) -> Any:
            await check(context)
            return await fn(request, context)

        return call
