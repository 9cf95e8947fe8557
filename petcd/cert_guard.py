"""A shared leaf (gRPC and petcd.tls only): checks of client certificates beyond the CA's signature: on the peer URL --peer-cert-allowed-cn,
--peer-cert-allowed-hostname, and (with --peer-client-cert-auth, unless
--experimental-peer-skip-client-san-verification) that the certificate's IP / DNS subject
alternative names cover the address the peer connects from, as etcd requires; on the client
URLs --client-cert-allowed-hostname.

etcd checks them while accepting the connection; gRPC's Python API has no hook there, so the
member's server on the peer URL checks every call instead, before its handler runs: a
connection whose verified client certificate fails gets UNAUTHENTICATED for each call, raft
streams and client API alike. Verdicts are kept per certificate and address, so the check costs
a dict look-up once a connection is known.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from petcd.tls import certificate_names, hostname_matches

Context = grpc.aio.ServicerContext[Any, Any]


class CertificateGuard(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # grpc-stubs lag grpc.aio
    def __init__(self, allowed_cn: str, allowed_hostname: str, check_san: bool,
                 hostname_flag: str = "--peer-cert-allowed-hostname") -> None:
        self.allowed_cn = allowed_cn
        self.allowed_hostname = allowed_hostname
        self.check_san = check_san
        self.hostname_flag = hostname_flag  # the client URLs' guard has --client-cert-allowed-hostname
        self._verdicts: dict[tuple[bytes, str], str] = {}  # (certificate, address) -> "" (allowed) or why not
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def refusal(self, context: Context) -> str:
        """Why the call's client certificate is not allowed ("" if it is)."""
        auth = context.auth_context()
        if b"ssl" not in (auth.get("transport_security_type") or ()):
            return ""  # a plain http:// peer URL: etcd checks certificates on TLS listeners only
        certs = list(auth.get("x509_pem_cert") or ())
        if not certs:
            return "a client certificate is required"
        key = (certs[0], _remote_ip(context.peer()) if self.check_san else "")
        verdict = self._verdicts.get(key)
        if verdict is None:
            # the SAN check may resolve DNS names: off the loop
            verdict = await asyncio.to_thread(self._judge, *key)
            if len(self._verdicts) > 1024:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def _judge(self, pem: bytes, remote: str) -> str:
        cn, alt = certificate_names(pem)
        if self.allowed_cn and cn != self.allowed_cn:
            return f"client certificate CN {cn!r} is not the allowed {self.allowed_cn!r} (--peer-cert-allowed-cn)"
        if self.allowed_hostname and not any(hostname_matches(a, self.allowed_hostname) for a in alt):
            return f"client certificate is not valid for {self.allowed_hostname!r} ({self.hostname_flag})"
        if remote and alt and not _covers(alt, remote):
            return (f"client certificate names {alt} do not cover the peer's address {remote} "
                    "(--experimental-peer-skip-client-san-verification turns this check off)")
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
            why = await guard.refusal(context)
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


def _remote_ip(peer: str) -> str:
    """The IP of gRPC's ``ipv4:1.2.3.4:5`` / ``ipv6:[::1]:5`` peer string ("" for others)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return ""


def _covers(names: list[str], ip: str) -> bool:
    """Is ``ip`` one of the certificate's IP names, or what one of its DNS names resolves to?"""
    want = ipaddress.ip_address(ip)
    for name in names:
        try:
            if ipaddress.ip_address(name) == want:
                return True
            continue
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(name, None)
        except OSError:
            continue
        if any(ipaddress.ip_address(str(i[4][0])) == want for i in infos):
            return True
    return False
