"""A client front-end process: serves the client gRPC API on the client URLs, owns no data.

Python's gRPC costs a few hundred microseconds of CPU per call, which on one core caps a member
far below etcd. So the member starts front-end processes that share its client ports (the
kernel spreads connections over them with SO_REUSEPORT) and do the per-call gRPC work in
parallel. A front-end never interprets a request:

- unary calls (Put, Range, Txn, LeaseGrant, MemberList, ...) go to the member as raw bytes over
  the link (``petcd.frontend.link``), batched, and the member's answer goes back as raw bytes or
  as the status it chose;
- streaming calls (Watch, LeaseKeepAlive, Snapshot, ...) and the unary calls that block (Lock,
  Campaign) are relayed over a gRPC channel to the member's private Unix socket, statuses and
  cancellation included.

A front-end exits when its link closes, and the kernel kills it if the member process dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

from petcd.api.client_cert import CN_METADATA_KEY
from petcd.api.handlers import PathHandler
from petcd.config.logs import configure_logging
from petcd.frontend import wire
from petcd.frontend.link import LinkClosed, MemberLink
from petcd.frontend.methods import BLOCKING_UNARY, METHODS, Arity, Method
from petcd.frontend.supervisor import SERVE, Keepalive, bind_error
from petcd.http.clientport import ClientPort

log = logging.getLogger("petcd.frontend")

_CODES = {c.value[0]: c for c in grpc.StatusCode}
# metadata gRPC manages itself; everything else reaches the member's servicers
_NOT_FORWARDED = ("user-agent", "grpc-", ":")

ServicerContext = grpc.aio.ServicerContext[Any, Any]


Forward = Callable[[ServicerContext], tuple[tuple[str, str | bytes], ...]]


def forwarded_metadata(context: ServicerContext) -> tuple[tuple[str, str | bytes], ...]:
    """The client's metadata for the member, minus what gRPC manages and minus the reserved
    key of the verified certificate name, which only the front-end may set."""
    md = context.invocation_metadata() or ()
    return tuple((m.key, m.value) for m in md  # type: ignore[attr-defined]  # grpc-stubs lag grpc.aio
                 if not m.key.startswith(_NOT_FORWARDED) and m.key != CN_METADATA_KEY)  # type: ignore[attr-defined]


def forwarded_with_cn(context: ServicerContext) -> tuple[tuple[str, str | bytes], ...]:
    """``forwarded_metadata`` plus the CN of the client certificate gRPC verified (with
    --client-cert-auth), for the member to take as the user (petcd.api.client_cert)."""
    md = forwarded_metadata(context)
    names = list(context.auth_context().get("x509_common_name") or ())
    if names and names[0]:
        return (*md, (CN_METADATA_KEY, names[0]))
    return md


def _unary_handler(link: MemberLink, method: Method, forwarded: Forward
                   ) -> Callable[[bytes, ServicerContext], Awaitable[bytes]]:
    index = method.index

    async def handle(request: bytes, context: ServicerContext) -> bytes:
        md = forwarded(context)
        try:
            encoded = wire.encode_metadata(md) if md else b""
        except wire.FrameError as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"petcd: {exc}")
            raise
        try:
            status, payload = await link.call(index, encoded, request)
        except LinkClosed:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "petcd: the member process is gone")
            raise
        if status == 0:
            return payload
        await context.abort(_CODES.get(status, grpc.StatusCode.UNKNOWN), payload.decode("utf-8", "replace"))
        raise AssertionError("abort returned")

    return handle


async def _relay_error(context: ServicerContext, exc: grpc.aio.AioRpcError) -> None:
    code = exc.code()
    if code == grpc.StatusCode.CANCELLED and context.cancelled():
        return
    await context.abort(code, exc.details() or "", exc.trailing_metadata() or ())  # type: ignore[arg-type]


async def _pump(requests: AsyncIterator[bytes], call: Any) -> None:
    """Copy the client's messages to the member's call until the client half-closes."""
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
        async for req in requests:
            await call.write(req)
        await call.done_writing()


async def _relay_responses(
    call: Any, context: ServicerContext, pump: asyncio.Task[None] | None
) -> AsyncIterator[bytes]:
    """The member's responses on ``call``, then its status; the call (and the task copying the
    client's messages to it) is cancelled however the client's call ends. Callers close it with
    ``contextlib.aclosing`` so that happens at once, not when the generator is collected."""
    try:
        async for resp in call:
            yield resp
    except grpc.aio.AioRpcError as exc:
        await _relay_error(context, exc)
    finally:
        if pump is not None:
            pump.cancel()
        call.cancel()


def _stream_handlers(channel: grpc.aio.Channel, method: Method, forwarded_metadata: Forward) -> Callable[..., Any]:
    path = method.path
    if method.arity is Arity.UNARY_STREAM:
        unary_stream = channel.unary_stream(path)  # type: ignore[call-arg]  # grpc-stubs lag grpc.aio

        async def handle_us(request: bytes, context: ServicerContext) -> AsyncIterator[bytes]:
            call = unary_stream(request, metadata=forwarded_metadata(context), timeout=context.time_remaining())
            async with contextlib.aclosing(_relay_responses(call, context, None)) as responses:  # type: ignore[type-var]
                async for resp in responses:
                    yield resp

        return handle_us

    if method.arity is Arity.UNARY_UNARY:
        unary_unary = channel.unary_unary(path)  # type: ignore[call-arg]  # grpc-stubs lag grpc.aio

        async def handle_uu(request: bytes, context: ServicerContext) -> bytes:
            call = unary_unary(request, metadata=forwarded_metadata(context), timeout=context.time_remaining())
            try:
                response: bytes = await call
                return response
            except grpc.aio.AioRpcError as exc:
                await _relay_error(context, exc)
                raise
            finally:
                call.cancel()  # the client went away (this task was cancelled): so does the member's call

        return handle_uu

    if method.arity is Arity.STREAM_STREAM:
        stream_stream = channel.stream_stream(path)  # type: ignore[call-arg]  # grpc-stubs lag grpc.aio

        async def handle_ss(requests: AsyncIterator[bytes], context: ServicerContext) -> AsyncIterator[bytes]:
            call = stream_stream(metadata=forwarded_metadata(context), timeout=context.time_remaining())  # type: ignore[call-arg]
            pump = asyncio.create_task(_pump(requests, call))
            async with contextlib.aclosing(_relay_responses(call, context, pump)) as responses:  # type: ignore[type-var]
                async for resp in responses:
                    yield resp

        return handle_ss

    raise ValueError(f"{path}: no {method.arity.value} method in the etcd API to relay")


def add_handlers(server: grpc.aio.Server, link: MemberLink, channel: grpc.aio.Channel,
                 client_certs: bool = False) -> None:
    """Serve every client method on ``server``: unary ones over the link, streams over the channel.
    ``client_certs``: clients present verified certificates, whose CN goes to the member."""
    fwd = forwarded_with_cn if client_certs else forwarded_metadata
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for m in METHODS:
        if m.arity is Arity.UNARY_UNARY and m.path in BLOCKING_UNARY:
            handlers[m.path] = grpc.unary_unary_rpc_method_handler(_stream_handlers(channel, m, fwd))
        elif m.arity is Arity.UNARY_UNARY:
            handlers[m.path] = grpc.unary_unary_rpc_method_handler(_unary_handler(link, m, fwd))
        elif m.arity is Arity.UNARY_STREAM:
            handlers[m.path] = grpc.unary_stream_rpc_method_handler(_stream_handlers(channel, m, fwd))
        else:
            handlers[m.path] = grpc.stream_stream_rpc_method_handler(_stream_handlers(channel, m, fwd))
    # one lookup for every path, and no registered methods (see PathHandler)
    server.add_generic_rpc_handlers((PathHandler(handlers),))


def server_options(max_recv_bytes: int, max_streams: int, reuse_port: bool, keepalive: Keepalive
                   ) -> list[tuple[str, int]]:
    """gRPC server options shared by the member's own server and its front-ends."""
    options = [
        ("grpc.max_receive_message_length", max_recv_bytes),
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.max_concurrent_streams", max_streams),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.keepalive_permit_without_calls", 1),
        # --grpc-keepalive-min-time: clients pinging more often than this are sent GOAWAY
        ("grpc.http2.min_ping_interval_without_data_ms", int(keepalive.min_time * 1000)),
    ]
    # as etcd: the server's pings are configured only when both are positive, otherwise gRPC's
    # defaults (2 h, 20 s) apply
    if keepalive.interval > 0 and keepalive.timeout > 0:
        options.append(("grpc.keepalive_time_ms", int(keepalive.interval * 1000)))
        options.append(("grpc.keepalive_timeout_ms", int(keepalive.timeout * 1000)))
    return options


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill us when the member exits (even by kill -9)."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the member died before prctl took effect
        os._exit(0)


def _tls_credentials(args: argparse.Namespace) -> grpc.ServerCredentials | None:
    """The client URLs' credentials, from the files the member checked (TLSFileError if they
    changed since)."""
    if not args.tls_listen:
        return None
    # imported only when needed: cryptography adds ~0.2 s to every front-end (re)start
    from petcd.tls import load_ca, load_key_pair, server_credentials

    pair = load_key_pair(args.cert_file, args.key_file)
    ca = load_ca(args.trusted_ca_file) if args.trusted_ca_file else None
    return server_credentials(pair, ca, args.client_cert_auth)


def _guards(args: argparse.Namespace) -> list[grpc.aio.ServerInterceptor] | None:  # type: ignore[type-arg]
    if not (args.tls_listen and args.cert_allowed_hostname):
        return None
    from petcd.cert_guard import CertificateGuard

    return [CertificateGuard("", args.cert_allowed_hostname, False, "--client-cert-allowed-hostname")]


async def _serve_signal(loop: asyncio.AbstractEventLoop) -> bool:
    """Wait for the member's go-ahead on stdin (``SERVE``); False if stdin ends first."""
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    try:
        return await reader.readline() == SERVE
    finally:
        transport.close()


async def serve(args: argparse.Namespace) -> int:
    try:
        creds = _tls_credentials(args)
    except Exception as exc:  # petcd.tls.TLSFileError, not imported without TLS
        log.error("cannot start: %s", exc)
        return 1
    link = await MemberLink.connect(args.link, args.index)
    # local credentials: the member believes the certificate name forwarded on this channel
    channel = grpc.aio.secure_channel(
        f"unix:{args.member_grpc}", grpc.local_channel_credentials(grpc.LocalConnectionType.UDS),
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    keepalive = Keepalive(args.keepalive_min_time, args.keepalive_interval, args.keepalive_timeout)
    server = grpc.aio.server(options=server_options(args.max_recv_bytes, args.max_concurrent_streams, True,
                                                    keepalive), interceptors=_guards(args))
    add_handlers(server, link, channel, client_certs=creds is not None and args.client_cert_auth)
    plain, client_port = list(args.listen), None
    if args.http_socket:
        # HTTP/1 on the plain-text client ports too: accept them here and relay by the first
        # bytes (https ports stay gRPC only: the relay would have to terminate TLS itself)
        client_port = ClientPort(f"{os.path.dirname(args.link)}/frontend-{args.index}.sock", args.http_socket)
        plain = [f"unix:{client_port.grpc_path}"]
    listen: list[tuple[str, grpc.ServerCredentials | None]] = [(a, None) for a in plain]
    listen += [(a, creds) for a in args.tls_listen]
    for addr, addr_creds in listen:
        try:
            if addr_creds is None:
                server.add_insecure_port(addr)
            else:
                server.add_secure_port(addr, addr_creds)
        except RuntimeError:
            log.error("%s", bind_error(addr))
            return 1
    if client_port is not None:
        for addr in args.listen:
            host, _, port = addr.rpartition(":")
            await client_port.listen(host.strip("[]"), int(port), reuse_port=True, serve=False)
    # bound and listening (add_*_port listens; gRPC accepts only from start()): the member may go on
    link.ready(args.index)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # as etcd, no client is served before the member is ready: a client that connects earlier
    # waits in the backlog, unanswered (no HTTP/2 preface, so its channel is not READY and a
    # balancing client picks another member), and is served once the member says "serve"
    go = asyncio.create_task(_serve_signal(loop))
    waiters = [go, asyncio.create_task(stop.wait()), asyncio.create_task(link.closed.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if go.done() and go.result():
        await server.start()
        if client_port is not None:
            await client_port.serve()
        await asyncio.wait(waiters[1:], return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()
    # on SIGTERM the member is stopping us first: let calls in flight finish
    await server.stop(grace=None if link.closed.is_set() else 1.0)
    if client_port is not None:
        await client_port.stop()
    link.close()
    await channel.close()  # type: ignore[call-arg]  # grpc-stubs lag grpc.aio
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="petcd-frontend", description="petcd client front-end (started by petcd)")
    p.add_argument("--link", required=True, help="the member's link socket")
    p.add_argument("--member-grpc", required=True, help="the member's private gRPC socket")
    p.add_argument("--listen", action="append", default=[], help="gRPC address to serve (repeatable)")
    p.add_argument("--tls-listen", action="append", default=[], help="gRPC address to serve with TLS (repeatable)")
    p.add_argument("--cert-file", default="", help="certificate for --tls-listen")
    p.add_argument("--key-file", default="", help="key for --tls-listen")
    p.add_argument("--trusted-ca-file", default="", help="CA that signs client certificates")
    p.add_argument("--client-cert-auth", action="store_true", help="require verified client certificates")
    p.add_argument("--cert-allowed-hostname", default="", help="host name client certificates must be valid for")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--parent", type=int, required=True)
    p.add_argument("--max-recv-bytes", type=int, required=True)
    p.add_argument("--max-concurrent-streams", type=int, default=2**31 - 1)
    p.add_argument("--log-level", default="info")
    p.add_argument("--log-output", action="append", default=[], help="--log-outputs target (repeatable)")
    p.add_argument("--keepalive-min-time", type=float, required=True, help="seconds (--grpc-keepalive-min-time)")
    p.add_argument("--keepalive-interval", type=float, required=True, help="seconds (--grpc-keepalive-interval)")
    p.add_argument("--http-socket", default="", help="the member's HTTP socket: serve HTTP/1 on --listen too")
    p.add_argument("--keepalive-timeout", type=float, required=True, help="seconds (--grpc-keepalive-timeout)")
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _die_with_parent(args.parent)
    configure_logging(args.log_level, args.log_output, tag=f"[{args.index}]")
    import uvloop

    gc.set_threshold(50_000, 20, 10)  # as the member does (see petcd.server.main.tune_gc)
    rc = 0
    with contextlib.suppress(KeyboardInterrupt):
        rc = uvloop.run(serve(args))
    # everything is closed by now. The interpreter's own finalization (in gRPC's C core: no
    # Python frame) took another 0.1-2 s after calls had been served, and a stopping member
    # waits for this exit before a leader hands over (petcd.server.leader_transfer)
    logging.shutdown()
    os._exit(rc)
