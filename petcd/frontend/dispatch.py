"""The member's end of the front-end links: unary calls forwarded by front-ends, run on servicers.

Each front-end connects to the member's link socket and streams request frames. Every frame
becomes a task that calls the same servicer method the member's own gRPC server would call, with
a ``ForwardedContext`` in place of gRPC's servicer context; the result (response or status) is
queued and everything queued in one loop turn is written back in one go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

from petcd.api.errors import status_of
from petcd.api.grpcerr import unmarshal_error
from petcd.errors import PetcdError
from petcd.frontend import wire
from petcd.frontend.methods import BY_PATH, DIGEST, METHODS, Arity

log = logging.getLogger("petcd.frontend")

_UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED.value[0]
_UNKNOWN = grpc.StatusCode.UNKNOWN.value[0]
_INTERNAL = grpc.StatusCode.INTERNAL.value[0]
_OK = grpc.StatusCode.OK

# a front-end enforces --max-request-bytes itself; this only bounds what a broken peer can make
# the member buffer
MAX_FRAME_PAYLOAD = 1 << 31

Handler = tuple[Callable[[Any, Any], Awaitable[Any]], Callable[[bytes], Any]]


class AbortedCall(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


# a link is private to the member and its front-ends, as gRPC's "local" connections are: the
# client certificate name a front-end forwards is believed (petcd.api.client_cert)
_LINK_AUTH: dict[str, list[bytes]] = {"transport_security_type": [b"local"]}


class ForwardedContext:
    """What a unary servicer uses of its gRPC context, for a call that came over a link."""

    __slots__ = ("_metadata", "code", "details")

    def __init__(self, metadata: wire.Metadata) -> None:
        self._metadata = metadata
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def invocation_metadata(self) -> wire.Metadata:
        return self._metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return _LINK_AUTH

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: object = ()) -> None:
        raise AbortedCall(code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


class Dispatcher:
    """Index of the member's unary servicer methods by method-table index."""

    def __init__(self, record: Callable[[str, int, float], None] = lambda path, code, started: None) -> None:
        self.handlers: list[Handler | None] = [None] * len(METHODS)
        # record(method path, status code, perf_counter() at the start) once per call answered
        # (the gRPC counters of /metrics)
        self.record = record

    def add_servicer(self, service: ServiceDescriptor, servicer: object) -> None:
        for m in service.methods:
            method = BY_PATH[f"/{service.full_name}/{m.name}"]
            if method.arity is Arity.UNARY_UNARY:
                parse = GetMessageClass(m.input_type).FromString
                self.handlers[method.index] = (getattr(servicer, m.name), parse)

    async def run(self, method: int, metadata: wire.Metadata, payload: bytes) -> tuple[int, bytes]:
        """Call the method at index ``method`` of the table with a serialized request, as the
        member's gRPC server would: (0, serialized response) or (status code, status text)."""
        started = time.perf_counter()
        status, out = await self._call(method, metadata, payload)
        if method < len(METHODS):
            self.record(METHODS[method].path, status, started)
        return status, out

    async def _call(self, method: int, metadata: wire.Metadata, payload: bytes) -> tuple[int, bytes]:
        handler = self.handlers[method] if method < len(self.handlers) else None
        if handler is None:
            return _UNIMPLEMENTED, b"Method not found!"
        fn, parse = handler
        try:
            ctx = ForwardedContext(metadata)
            request = parse(payload)
        except (DecodeError, UnicodeDecodeError) as exc:
            return _INTERNAL, unmarshal_error(exc).encode()
        try:
            response = await fn(request, ctx)
        except AbortedCall as a:
            return a.code.value[0], a.details.encode()
        except PetcdError as err:  # a method not behind grpcerr.unary: the same mapping
            code, text = status_of(err)
            return code.value[0], text.encode()
        except Exception as exc:
            if ctx.code is not None and ctx.code is not _OK:
                return ctx.code.value[0], ctx.details.encode()
            log.exception("forwarded call %s failed", METHODS[method].path)
            return _UNKNOWN, f"Unexpected {type(exc)}: {exc}".encode()
        if ctx.code is not None and ctx.code is not _OK:
            return ctx.code.value[0], ctx.details.encode()
        return 0, response.SerializeToString()


class LinkServer:
    """Accepts front-end links on a Unix socket and serves their forwarded calls."""

    def __init__(self, dispatcher: Dispatcher, on_ready: Callable[[int], None]) -> None:
        self.dispatcher = dispatcher
        self.on_ready = on_ready
        self._server: asyncio.AbstractServer | None = None
        self._links: set[_Link] = set()

    async def start(self, path: str) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _Link(self), path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()
        if self._server is not None:
            await self._server.wait_closed()


class _Link(asyncio.Protocol):
    def __init__(self, owner: LinkServer) -> None:
        self._owner = owner
        self._reader = wire.RequestReader(MAX_FRAME_PAYLOAD)
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._hello = False
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._owner._links.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._links.discard(self)
        self._transport = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except wire.FrameError as exc:
            log.error("closing a front-end link: %s", exc)
            self.close()
            return
        for call_id, method, md, payload in frames:
            if call_id == wire.CONTROL_CALL_ID:
                self._control(method, payload)
            elif not self._hello:
                log.error("closing a front-end link: call before hello")
                self.close()
                return
            else:
                task = self._loop.create_task(self._serve(call_id, method, md, payload))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _control(self, kind: int, payload: bytes) -> None:
        if kind == wire.HELLO:
            if payload[: len(DIGEST)] != DIGEST:
                log.error("closing a front-end link: its method table differs from the member's")
                self.close()
                return
            self._hello = True
        elif kind == wire.READY:
            self._owner.on_ready(int.from_bytes(payload[:2], "little"))

    async def _serve(self, call_id: int, method: int, md: bytes, payload: bytes) -> None:
        try:
            metadata = wire.decode_metadata(md) if md else ()
        except (wire.FrameError, UnicodeDecodeError) as exc:
            self._send(call_id, _INTERNAL, unmarshal_error(exc).encode())
            return
        status, out = await self._owner.dispatcher.run(method, metadata, payload)
        self._send(call_id, status, out)

    def _send(self, call_id: int, status: int, payload: bytes) -> None:
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(wire.response_frame(call_id, status, payload))

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.writelines(out)
