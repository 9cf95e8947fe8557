"""gRPC and HTTP/1 on one client port, as etcd serves them (its cmux).

Python's gRPC server owns the sockets it listens on and cannot share a port with an HTTP/1
server, nor take over an accepted connection. So when the client port must answer both, petcd
accepts the TCP connections itself (:class:`ClientPort`), looks at their first bytes and relays
the connection to a local Unix socket: the HTTP/2 preface (``PRI * HTTP/2.0``) to the gRPC
server, an HTTP/1 request line to the HTTP server; anything else is closed unanswered, as etcd's
cmux closes a connection that is neither. The relay is a pair of uvloop protocols that write
what one side reads to the other side, with flow control (a side whose peer cannot keep up stops
being read). What this costs gRPC is in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Callable, Coroutine
from typing import Any, cast

log = logging.getLogger("petcd.http")

__all__ = ["PREFACE", "ClientPort", "classify", "listening_sockets"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_REQUEST_LINE = re.compile(rb"^[A-Z]{1,16} [^ \r\n]+ HTTP/1\.[0-9]\r?$")
# an HTTP/1 request line longer than this is not waited for (Go's default header limit is 1 MiB;
# cmux reads the first line only)
_MAX_SNIFF = 8192
_HIGH_WATER = 1 << 20


def classify(data: bytes) -> str:
    """'grpc', 'http', 'close', or 'more' (not enough bytes yet)."""
    if data[: len(PREFACE)] == PREFACE[: len(data)]:
        return "grpc" if len(data) >= len(PREFACE) else "more"
    end = data.find(b"\n")
    if end < 0:
        return "more" if len(data) < _MAX_SNIFF else "close"
    return "http" if _REQUEST_LINE.match(data[:end]) else "close"


class _Half(asyncio.Protocol):
    """One side of a relay: what it reads goes to ``peer``."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        # what arrived before the peer was attached (the gRPC server speaks first: its SETTINGS
        # frame can come in before the connecting coroutine has resumed)
        self._early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.set_write_buffer_limits(high=_HIGH_WATER)

    def attach(self, peer: _Half) -> None:
        self.peer = peer
        early, self._early = self._early, []
        if early and peer.transport is not None:
            peer.transport.writelines(early)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            self._early.append(data)
        elif peer.transport is not None:
            peer.transport.write(data)

    def eof_received(self) -> bool | None:
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
            return True  # keep our side open for what the peer still sends
        self.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.peer is not None:
            self.peer.close()

    # our write buffer is full: stop reading the peer until it drains
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Front(_Half):
    """The client's connection: sniffed first, then relayed."""

    def __init__(self, owner: ClientPort) -> None:
        super().__init__()
        self._owner = owner
        self._buf = b""
        self._decided = False

    def data_received(self, data: bytes) -> None:
        if self._decided:
            super().data_received(data)
            return
        self._buf += data
        takeover = self._owner.takeover
        if takeover is not None:
            preface, factory = takeover
            if self._buf[: len(preface)] == preface[: len(self._buf)]:
                if len(self._buf) >= len(preface):
                    self._hand_over(factory())
                return
        kind = self._owner.classify(self._buf)
        if kind == "more":
            return
        self._decided = True
        if kind == "close":
            self.close()
            return
        assert self.transport is not None
        self.transport.pause_reading()
        target = self._owner.grpc_path if kind == "grpc" else self._owner.http_path
        self._owner.spawn(self._connect(target, self._buf))
        self._buf = b""

    def _hand_over(self, protocol: asyncio.Protocol) -> None:
        """The connection is served here by ``protocol`` from now on, unrelayed."""
        self._decided = True
        transport = self.transport
        assert transport is not None
        self.transport = None
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        first, self._buf = self._buf, b""
        protocol.data_received(first)

    def eof_received(self) -> bool | None:
        if not self._decided:
            self.close()
            return None
        return super().eof_received()

    async def _connect(self, path: str, first: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, back = await loop.create_unix_connection(_Half, path)
        except OSError as exc:
            log.warning("connection dropped: cannot reach %s: %s", path, exc)
            self.close()
            return
        if self.transport is None:  # the client went away meanwhile
            back.close()
            return
        if back.transport is None:  # the server closed it at once
            self.close()
            return
        back.transport.write(first)
        self.peer = back
        back.attach(self)
        self.transport.resume_reading()


BACKLOG = 1024


async def listening_sockets(host: str, port: int, reuse_port: bool) -> list[socket.socket]:
    """Sockets bound to host:port (each address it resolves to; IPv6 skipped where there is
    none) and already listening, so a connection is queued even before they are served
    (asyncio listens only when a server starts serving)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, socktype, proto, _, addr in dict.fromkeys((i[0], i[1], i[2], "", i[4]) for i in infos):
            sock = socket.socket(family, socktype, proto)
            try:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind(addr)
                sock.listen(BACKLOG)
            except OSError:
                sock.close()
                if family == socket.AF_INET6:
                    continue  # no IPv6 here
                raise
            socks.append(sock)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


class ClientPort:
    """Listens on TCP addresses and relays each connection to ``grpc_path`` or ``http_path``
    (Unix sockets) by its first bytes, as ``classify`` tells ('grpc', 'http', 'close' or 'more'):
    by default the client URL's rule; the peer URLs pass theirs (petcd.http.peerhttp), and a
    ``takeover`` for connections served here."""

    def __init__(self, grpc_path: str, http_path: str, classify: Callable[[bytes], str] = classify,
                 takeover: tuple[bytes, Callable[[], asyncio.Protocol]] | None = None) -> None:
        self.grpc_path = grpc_path
        self.http_path = http_path
        self.classify = classify
        # (preface, factory): a connection that starts with the preface is not relayed but served
        # in this process by a protocol from the factory (the peer port's framed raft streams)
        self.takeover = takeover
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def listen(self, host: str, port: int, reuse_port: bool, serve: bool = True) -> None:
        """Listen on host:port; with ``serve=False`` connections wait in the backlog, unanswered,
        until ``serve()`` (a member serves no client before it is ready)."""
        loop = asyncio.get_running_loop()
        for sock in await listening_sockets(host, port, reuse_port):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            server = await loop.create_server(lambda: _Front(self), sock=sock, backlog=BACKLOG, start_serving=serve)
            self._servers.append(server)

    async def serve(self) -> None:
        """Accept on every listener (those made with ``serve=False``), queued connections first."""
        for s in self._servers:
            await s.start_serving()

    async def stop(self) -> None:
        for s in self._servers:
            s.close()
        for t in list(self._tasks):
            t.cancel()
        with contextlib.suppress(Exception):
            for s in self._servers:
                await s.wait_closed()
