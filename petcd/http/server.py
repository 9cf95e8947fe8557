"""A small HTTP/1.1 server on asyncio, with h11 doing the protocol.

How it works. Each connection runs one task: it feeds the bytes it reads to an ``h11.Connection``
and, for every request, calls the handler with a :class:`Request` whose body is read on demand
(so a streaming gateway call can read its request body while it writes responses). The handler
returns a :class:`Response` (a whole body) or a :class:`Streamed` one (chunks from an async
iterator, sent chunked as Go's net/http does). Headers go out in Go's order, because etcd's
answers are what clients and tests compare against: the handler's headers sorted by name, then
``Date``, then ``Content-Length``, then a ``Content-Type`` that Go would have sniffed.
A connection is kept alive between requests unless a side asks to close it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

import h11

from petcd.clock import Clock
from petcd.http.clientport import BACKLOG, listening_sockets

log = logging.getLogger("petcd.http")

__all__ = ["Handler", "HttpServer", "Request", "Response", "Streamed"]

# the most a request body may hold; the gateway refuses larger ones itself, far below this
MAX_BODY = 64 * 1024 * 1024
_READ = 65536
# what a request head may hold at most (h11's default is 16 KiB)
_MAX_HEAD = 1 << 20


class BodyTooLarge(Exception):
    pass


class Request:
    """One request; ``read()`` returns the whole body, ``chunks()`` yields it as it arrives."""

    def __init__(self, conn: _Conn, method: str, target: str, headers: list[tuple[str, str]]) -> None:
        self._conn = conn
        self.method = method
        self.target = target
        parts = urlsplit(target)
        self.path = parts.path
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.headers = headers  # names lower-cased
        self._body_done = False

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        while not self._body_done:
            event = await self._conn.next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._body_done = True
            else:
                self._body_done = True
                return

    async def wait_closed(self) -> None:
        """Return when the client closes its side (call once the body has been read)."""
        reader = self._conn.reader
        while await reader.read(_READ):
            pass

    async def read(self, limit: int = MAX_BODY) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge()
            parts.append(chunk)
        return b"".join(parts)

    async def drain(self) -> bool:
        """Read what is left of the body; False if too much is left to keep the connection."""
        try:
            await self.read(MAX_BODY)
        except (BodyTooLarge, h11.ProtocolError, ConnectionError):
            return False
        return True


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    # Content-Type Go's net/http would sniff for a handler that set none (added after the others)
    sniffed_type: str = ""


@dataclass(slots=True)
class Streamed:
    status: int
    headers: list[tuple[str, str]]
    chunks: AsyncIterator[bytes]


Handler = Callable[[Request], Awaitable[Response | Streamed]]
_REASONS = {
    200: b"OK", 301: b"Moved Permanently", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden",
    404: b"Not Found", 405: b"Method Not Allowed", 408: b"Request Timeout", 409: b"Conflict",
    413: b"Request Entity Too Large", 429: b"Too Many Requests", 500: b"Internal Server Error",
    501: b"Not Implemented", 503: b"Service Unavailable", 504: b"Gateway Timeout",
}


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)

    async def next_event(self) -> object:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.reader.read(_READ)
            self.h11.receive_data(data)

    async def send(self, *events: h11.Event) -> None:
        for e in events:
            out = self.h11.send(e)
            if out:
                self.writer.write(out)
        await self.writer.drain()


class HttpServer:
    """Serves ``handler`` on listening sockets (``serve_socket``) until ``stop()``."""

    def __init__(self, handler: Handler, clock: Clock) -> None:
        self._handler = handler
        self._clock = clock
        self._servers: list[asyncio.AbstractServer] = []
        self._conns: set[asyncio.Task[None]] = set()

    async def listen(self, host: str, port: int, serve: bool = True) -> None:
        """Listen on host:port; with ``serve=False`` connections wait in the backlog until
        ``serve()``."""
        for sock in await listening_sockets(host, port, reuse_port=False):
            self._servers.append(await asyncio.start_server(self._serve, sock=sock, start_serving=serve))

    async def listen_unix(self, path: str, serve: bool = True) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            raise
        self._servers.append(await asyncio.start_unix_server(self._serve, sock=sock, start_serving=serve))

    async def serve(self) -> None:
        """Accept on the listeners made with ``serve=False``."""
        for s in self._servers:
            await s.start_serving()

    async def serve_socket(self, sock: socket.socket) -> None:
        server = await asyncio.start_server(self._serve, sock=sock)
        self._servers.append(server)

    def ports(self) -> list[int]:
        return [int(s.getsockname()[1]) for srv in self._servers
                for s in getattr(srv, "sockets", ()) if s.family != socket.AF_UNIX]

    async def stop(self) -> None:
        for s in self._servers:
            s.close()
        for t in list(self._conns):
            t.cancel()
        for s in self._servers:
            await s.wait_closed()
        await asyncio.gather(*self._conns, return_exceptions=True)

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one already-accepted connection (the client port's byte sniffer hands them over)."""
        await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        conn = _Conn(reader, writer)
        try:
            await self._requests(conn)
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError, BodyTooLarge):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("HTTP connection failed")
        finally:
            self._conns.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _requests(self, conn: _Conn) -> None:
        while True:
            try:
                event = await conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._bad_request(conn, exc)
                return
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers]
            req = Request(conn, event.method.decode("ascii"), event.target.decode("latin-1"), headers)
            resp = await self._handler(req)
            await self._respond(conn, req, resp)
            if conn.h11.their_state is h11.SEND_BODY and not await req.drain():
                return
            if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
                return
            conn.h11.start_next_cycle()

    def _date(self) -> tuple[str, str]:
        return ("Date", formatdate(self._clock.wall(), usegmt=True))

    async def _respond(self, conn: _Conn, req: Request, resp: Response | Streamed) -> None:
        headers = sorted(resp.headers, key=lambda h: h[0])
        headers.append(self._date())
        reason = _REASONS.get(resp.status, b"")
        if isinstance(resp, Response):
            headers.append(("Content-Length", str(len(resp.body))))
            if resp.sniffed_type:
                headers.append(("Content-Type", resp.sniffed_type))
            events: list[h11.Event] = [h11.Response(status_code=resp.status, headers=headers, reason=reason)]
            if resp.body and req.method != "HEAD":
                events.append(h11.Data(data=resp.body))
            events.append(h11.EndOfMessage())
            await conn.send(*events)
            return
        headers.append(("Transfer-Encoding", "chunked"))
        await conn.send(h11.Response(status_code=resp.status, headers=headers, reason=reason))
        try:
            async for chunk in resp.chunks:
                await conn.send(h11.Data(data=chunk))
        finally:
            aclose = getattr(resp.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        await conn.send(h11.EndOfMessage())

    async def _bad_request(self, conn: _Conn, exc: h11.RemoteProtocolError) -> None:
        # Go answers a malformed request with these bytes (no length: it closes the connection)
        if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            conn.writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                              b"Connection: close\r\n\r\n400 Bad Request")
            with contextlib.suppress(ConnectionError):
                await conn.writer.drain()
