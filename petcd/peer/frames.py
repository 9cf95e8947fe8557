"""Raft message streams on plain-text peer URLs without gRPC: length-prefixed frames over TCP.

Why. A gRPC stream message costs grpc.aio about 95 µs of CPU on each end; a replicated write
crosses three such streams (leader to each follower and back), which on two cores was 5-10% of
a 3-member cluster's CPU per write (docs/benchmarks.md). A frame on an asyncio protocol costs a
tenth of that. ``https://`` peer URLs keep gRPC streams (TLS ends in gRPC), and so do snapshots,
probes and forwarded requests.

How it works. The sender connects to the peer URL and writes :data:`PREFACE` and a header frame:
a ``MessageBatch`` with the three ids and no messages. The peer's port (petcd.http.peerhttp)
recognises the preface and hands the connection to a :class:`FrameReceiver`, which checks the
ids as the gRPC servicer does and answers the preface and one control frame: ACCEPT, or REFUSE
with a gRPC status code and text (then it closes). From then on every sender frame is a
``MessageBatch`` (ids left out: the header named them) delivered in order, or an empty frame, a
keepalive ping, answered by an empty frame. A frame is a 4-byte big-endian length and the bytes;
a frame longer than the receiver's cap (its peer gRPC server's receive limit, --max-request-bytes
plus 512 KiB) is refused as gRPC refuses an oversized message. A peer that answers anything but
the preface (a petcd without frames, a bare gRPC server) makes the sender use a gRPC stream to
that URL instead.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import grpc
from google.protobuf.message import DecodeError

from petcd.clock import Clock
from petcd.peer.wire import Rejection
from petcd.proto.peerpb import peer_pb2 as peerpb

if TYPE_CHECKING:
    from petcd.peer.transport import PeerTransport

log = logging.getLogger("petcd.peer")

PREFACE = b"PETCD-RAFT/1\r\n"
_LEN = struct.Struct(">I")
_ACCEPT = 1
_REFUSE = 2
_EMPTY = _LEN.pack(0)
_CODES = {c.value[0]: c for c in grpc.StatusCode}
_HIGH_WATER = 1 << 20


class FrameRefused(Exception):
    """The receiver refused the stream, with a gRPC status as its gRPC servicer would."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class NotFramed(Exception):
    """The peer answered something other than framed raft (it speaks gRPC only)."""


class FrameStreamLost(ConnectionError):
    """The connection ended, or a keepalive ping went unanswered."""


class FrameTooLarge(ValueError):
    def __init__(self, size: int, cap: int) -> None:
        # gRPC's text for a message over the server's limit
        super().__init__(f"grpc: received message larger than max ({size} vs. {cap})")


class FrameReader:
    """Splits a byte stream into frames of at most ``cap`` bytes."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        pos, n = 0, len(buf)
        while n - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if size > self.cap:
                raise FrameTooLarge(size, self.cap)
            end = pos + 4 + size
            if end > n:
                break
            out.append(buf[pos + 4 : end])
            pos = end
        self._buf = buf[pos:]
        return out


def _take_preface(head: bytes, data: bytes) -> tuple[bytes, bytes, bool | None]:
    """The preface seen so far with what ``data`` adds to it, the bytes after it, and whether it
    matched: True once whole, False as soon as it cannot, None while more is needed."""
    need = len(PREFACE) - len(head)
    head, rest = head + data[:need], data[need:]
    if head != PREFACE[: len(head)]:
        return head, rest, False
    return head, rest, True if len(head) == len(PREFACE) else None


def _frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


def _refusal(code: grpc.StatusCode, text: str) -> bytes:
    return _frame(bytes((_REFUSE, code.value[0])) + text.encode())


# -- sending side -------------------------------------------------------------------------


class _SenderProtocol(asyncio.Protocol):
    def __init__(self, on_change: Callable[[], None]) -> None:
        self.accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: Exception | None = None
        self.pongs = 0
        self._on_change = on_change
        self._head = b""  # the receiver's preface while it arrives
        self._reader = FrameReader(64 * 1024)
        self._drained: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        if len(self._head) < len(PREFACE):
            self._head, data, matched = _take_preface(self._head, data)
            if matched is False:
                self.fail(NotFramed(f"peer answered {self._head[:32]!r}"))
            if not matched:
                return
        try:
            frames = self._reader.feed(data)
        except FrameTooLarge as exc:
            self.fail(FrameStreamLost(f"bad control frame from peer: {exc}"))
            return
        for f in frames:
            if not f:
                self.pongs += 1
            elif f[0] == _ACCEPT and not self.accepted.done():
                self.accepted.set_result(None)
            elif f[0] == _REFUSE and len(f) >= 2:
                code = _CODES.get(f[1], grpc.StatusCode.UNKNOWN)
                self.fail(FrameRefused(code, f[2:].decode(errors="replace")))
                return
            else:
                self.fail(FrameStreamLost(f"unexpected control frame {f[:8]!r} from peer"))
                return

    def fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        if not self.accepted.done():
            self.accepted.set_exception(exc)
        self._on_change()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(FrameStreamLost(f"connection lost: {exc}" if exc else "receiver closed the stream"))
        self._wake_writer()

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    def _wake_writer(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    async def drain(self) -> None:
        if self._drained is not None:
            await self._drained


class FrameStream:
    """An accepted framed stream to one peer (see :func:`open_frame_stream`)."""

    def __init__(self, transport: asyncio.Transport, protocol: _SenderProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    @property
    def error(self) -> Exception | None:
        """Why the stream is over, or None while it is up."""
        return self._protocol.error

    @property
    def pongs(self) -> int:
        return self._protocol.pongs

    def send(self, batch: bytes) -> None:
        self._transport.writelines((_LEN.pack(len(batch)), batch))

    def ping(self) -> None:
        self._transport.write(_EMPTY)

    async def drain(self) -> None:
        """Wait while the connection's write buffer is over its high-water mark."""
        await self._protocol.drain()

    def abort(self, exc: Exception) -> None:
        self._protocol.fail(exc)
        self._transport.abort()

    def close(self) -> None:
        self._transport.close()


async def open_frame_stream(host: str, port: int, header: peerpb.MessageBatch,
                            on_change: Callable[[], None]) -> FrameStream:
    """Connect, send the header, and wait until the receiver accepts it. Raises FrameRefused,
    NotFramed, FrameStreamLost or OSError. ``on_change`` is called when the stream fails."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(lambda: _SenderProtocol(on_change), host, port)
    transport.set_write_buffer_limits(high=_HIGH_WATER)
    try:
        transport.write(PREFACE + _frame(header.SerializeToString()))
        await protocol.accepted
    except BaseException:
        transport.abort()
        raise
    return FrameStream(transport, protocol)


async def keep_alive(stream: FrameStream, clock: Clock, interval: float, timeout: float) -> None:
    """Ping every ``interval``; abort the stream if a ping is not answered within ``timeout``
    (gRPC's keepalive does this for the gRPC streams: a peer that stopped must not look up)."""
    while stream.error is None:
        await clock.sleep(interval)
        before = stream.pongs
        stream.ping()
        await clock.sleep(timeout)
        if stream.error is None and stream.pongs == before:
            stream.abort(FrameStreamLost(f"keepalive ping not answered within {timeout:g} s"))


# -- receiving side -----------------------------------------------------------------------


class FrameReceiver(asyncio.Protocol):
    """One inbound framed stream; built by :meth:`PeerTransport.frame_receiver`."""

    def __init__(self, transport: PeerTransport, cap: int, on_lost: Callable[[FrameReceiver], None]) -> None:
        self._t = transport
        self._reader = FrameReader(cap)
        self._on_lost = on_lost
        self._conn: asyncio.Transport | None = None
        self._head = b""
        self._ids = (0, 0, 0)  # (cluster, sender, receiver) of the accepted header
        self._accepted = False
        self._done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._conn = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        if len(self._head) < len(PREFACE):
            self._head, data, matched = _take_preface(self._head, data)
            if matched is False:
                self.close()
            if not matched:
                return
        try:
            frames = self._reader.feed(data)
        except FrameTooLarge as exc:
            self._refuse(Rejection(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)))
            return
        conn = self._conn
        assert conn is not None
        t = self._t
        for f in frames:
            if not f:
                conn.write(_EMPTY)  # keepalive pong
                continue
            try:
                batch = peerpb.MessageBatch.FromString(f)
            except DecodeError as exc:
                self._refuse(Rejection(grpc.StatusCode.INTERNAL, f"grpc: failed to unmarshal the received message: {exc}"))
                return
            if not self._accepted:
                ids = (batch.cluster_id, batch.sender_id, batch.receiver_id)
                r = t.check_request(*ids)
                if r is not None:
                    self._refuse(r, f"message stream from {batch.sender_id:x}")
                    return
                self._ids = ids
                self._accepted = True
                conn.write(PREFACE + _frame(bytes((_ACCEPT,))))
                t.inbound_opened(batch.sender_id)
            else:
                # removal or shutdown since the stream opened ends it as the servicer would
                r = t.check_request(*self._ids)
                if r is not None:
                    self._refuse(r, f"message stream from {self._ids[1]:x}")
                    return
            if batch.messages:
                t.deliver(self._ids[1], list(batch.messages))

    def _refuse(self, r: Rejection, what: str = "message stream") -> None:
        log.warning("refused %s: %s", what, r.message)
        conn = self._conn
        if conn is not None:
            conn.write((b"" if self._accepted else PREFACE) + _refusal(r.code, r.message))
        self.close()

    def close(self) -> None:
        self._done = True
        if self._conn is not None:
            self._conn.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._done = True
        self._conn = None
        if self._accepted:
            self._t.inbound_closed(self._ids[1])
        self._on_lost(self)
