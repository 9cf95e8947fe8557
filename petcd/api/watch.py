"""Watch service: one bidirectional stream = one WatchStream of the watchable store.

Each stream runs two coroutines. The receiver reads requests (create, cancel, progress) and
applies them to the stream; the sender waits for queued responses and writes them to the client.
The queue between them is bounded (``petcd.mvcc.watchable``): a client that does not read fills
it, its watchers are set aside as victims and caught up later, and neither writers nor other
clients ever wait for it. Control responses are queued without a bound, so the receiver stops
reading requests while the queue is over its capacity, as etcd's unbuffered control channel does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import grpc

from petcd import auth, errors
from petcd.api.credentials import Credentials
from petcd.api.errors import status_of
from petcd.api.handlers import PathHandler
from petcd.mvcc.watchable import (
    STREAM_CAPACITY,
    WatchableStore,
    WatchError,
    WatchOptions,
    WatchResponse,
    WatchStream,
)
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.etcdserverpb import rpc_pb2_grpc as pb_grpc
from petcd.proto.mvccpb import kv_pb2 as mvccpb
from petcd.server.etcdserver import EtcdServer

log = logging.getLogger("petcd.api.watch")

# etcd's default --experimental-watch-progress-notify-interval
DEFAULT_PROGRESS_INTERVAL = 600.0
# etcd fragments watch responses at the request limit plus gRPC's overhead allowance
GRPC_OVERHEAD_BYTES = 512 * 1024
REQUIRE_LEADER_KEY = "hasleader"
# a stream that requires a leader ends after this many election timeouts without one (etcd)
MAX_NO_LEADER_CHECKS = 3

PERMISSION_DENIED_REASON = "rpc error: code = PermissionDenied desc = etcdserver: permission denied"

# permit(context, key, range_end): may this stream's user watch the range? (auth, when enabled)
Permit = Callable[[grpc.aio.ServicerContext[pb.WatchRequest, pb.WatchResponse], bytes, bytes], bool]

_NOPUT = pb.WatchCreateRequest.NOPUT
_NODELETE = pb.WatchCreateRequest.NODELETE


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 on the wire: two's complement, ten bytes
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_CACHE_LIMIT = 4096


class Encoder:
    """WatchResponse wire bytes built from parts encoded once: the header once per revision, each
    event once however many watchers receive it (a write watched by a thousand watchers costs one
    encoding of its events, not a thousand). The bytes are what protobuf itself would produce."""

    def __init__(self, header: Callable[[int], pb.ResponseHeader]) -> None:
        self._header = header
        self._headers: dict[tuple[int, int], bytes] = {}
        self._events: dict[int, tuple[mvccpb.Event, bytes]] = {}

    def header_field(self, rev: int, term: int) -> bytes:
        key = (rev, term)
        b = self._headers.get(key)
        if b is None:
            if len(self._headers) >= 64:
                self._headers.clear()
            h = self._header(rev).SerializeToString()
            b = self._headers[key] = b"\x0a" + _varint(len(h)) + h
        return b

    def event_field(self, ev: mvccpb.Event) -> bytes:
        hit = self._events.get(id(ev))
        if hit is not None and hit[0] is ev:
            return hit[1]
        e = ev.SerializeToString()
        b = b"\x5a" + _varint(len(e)) + e
        if len(self._events) >= _CACHE_LIMIT:
            self._events.clear()
        self._events[id(ev)] = (ev, b)  # holding ev keeps its id from being reused
        return b

    def encode(
        self, r: WatchResponse, term: int, events: list[mvccpb.Event], limit: int = 0
    ) -> list[bytes]:
        """The response as one message, or, with limit > 0, as etcd's fragments: when it is at
        least limit bytes and has two or more events, several messages each under limit (an
        event larger than limit alone), all but the last with fragment=true."""
        head = [self.header_field(r.revision, term)]
        if r.watch_id:
            head.append(b"\x10" + _varint(r.watch_id))
        if r.created:
            head.append(b"\x18\x01")
        if r.canceled or r.compact_revision:
            head.append(b"\x20\x01")
        if r.compact_revision:
            head.append(b"\x28" + _varint(r.compact_revision))
        if r.cancel_reason:
            reason = r.cancel_reason.encode()
            head.append(b"\x32" + _varint(len(reason)) + reason)
        fields = [self.event_field(ev) for ev in events]
        prefix = b"".join(head)
        size = len(prefix) + sum(len(f) for f in fields)
        if limit <= 0 or len(fields) < 2 or size < limit:
            return [prefix + b"".join(fields)]
        out: list[bytes] = []
        more = prefix + b"\x38\x01"  # fragment = true (field 7 goes before the events)
        i = 0
        while i < len(fields):
            total = len(more)
            j = i
            while j < len(fields):
                if j > i and total + len(fields[j]) >= limit:
                    break
                total += len(fields[j])
                j += 1
            out.append((more if j < len(fields) else prefix) + b"".join(fields[i:j]))
            i = j
        return out


def _passthrough(msg: bytes | pb.WatchResponse) -> bytes:
    return msg if isinstance(msg, bytes) else msg.SerializeToString()


class WatchServicer(pb_grpc.WatchServicer):
    def __init__(
        self,
        server: EtcdServer,
        watchable: WatchableStore,
        *,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        capacity: int = STREAM_CAPACITY,
        permit: Permit | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.server = server
        self.credentials = credentials
        if permit is None and credentials is not None:
            permit = _auth_permit(server, credentials)
        self.permit = permit
        self.watchable = watchable
        self.progress_interval = progress_interval
        self.capacity = capacity
        self.fragment_limit = server.settings.max_request_bytes + GRPC_OVERHEAD_BYTES
        self.encoder = Encoder(server.header)

    async def Watch(
        self,
        request_iterator: AsyncIterator[pb.WatchRequest],
        context: grpc.aio.ServicerContext[pb.WatchRequest, pb.WatchResponse],
    ) -> None:
        md = dict(context.invocation_metadata() or ())
        require_leader = md.get(REQUIRE_LEADER_KEY) == "true"
        if require_leader and not self.server.leader:
            await context.abort(*status_of(errors.NoLeaderError()))
        if self.credentials is not None:
            # a simple token is known once its Authenticate entry is applied here: wait for that
            # now, so the creates below can check it at once (a bad token fails each create)
            with contextlib.suppress(errors.PetcdError):
                await self.credentials.enter(context)
        session = _Session(self, context)
        await session.run(request_iterator, require_leader=require_leader)
        if session.lost_leader:
            await context.abort(*status_of(errors.NoLeaderError()))


class _Session:
    """One Watch stream."""

    def __init__(self, svc: WatchServicer, context: grpc.aio.ServicerContext[pb.WatchRequest, pb.WatchResponse]) -> None:
        self.svc = svc
        self.server = svc.server
        self.context = context
        self.ready = asyncio.Event()
        self.room = asyncio.Event()
        self.recv_failed = False
        self.lost_leader = False
        self.stream: WatchStream = svc.watchable.new_stream(svc.capacity, self.ready.set)

    async def run(self, request_iterator: AsyncIterator[pb.WatchRequest], require_leader: bool = False) -> None:
        tasks = [
            asyncio.create_task(self._recv(request_iterator)),
            asyncio.create_task(self._progress_ticker()),
        ]
        if require_leader:
            tasks.append(asyncio.create_task(self._leader_monitor()))
        recv = tasks[0]
        try:
            await self._send_loop()
            if recv.done() and not recv.cancelled():
                exc = recv.exception()
                if exc is not None:
                    raise exc
        finally:
            self.stream.close()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def _leader_monitor(self) -> None:
        """End the stream once the member has had no leader for a few election timeouts, so a
        client that asked for a leader (clientv3.WithRequireLeader) moves to another member."""
        interval = self.server.settings.election_timeout_ms / 1000.0
        misses = 0
        while True:
            await self.server.clock.sleep(interval)
            misses = 0 if self.server.leader else misses + 1
            if misses >= MAX_NO_LEADER_CHECKS:
                self.lost_leader = True
                self.ready.set()
                return

    # -- receiving ------------------------------------------------------------------------------

    async def _recv(self, request_iterator: AsyncIterator[pb.WatchRequest]) -> None:
        try:
            async for req in request_iterator:
                self._handle(req)
                while len(self.stream) > self.stream.capacity:
                    self.room.clear()
                    await self.room.wait()
        except BaseException:
            # a broken stream: the sender ends it. A client that only half-closes keeps its
            # watchers until it goes away, as in etcd.
            self.recv_failed = True
            self.ready.set()
            raise

    def _handle(self, req: pb.WatchRequest) -> None:
        kind = req.WhichOneof("request_union")
        if kind == "create_request":
            c = req.create_request
            # an empty key is the smallest key, "\0" (etcd does the same)
            key = c.key or b"\x00"
            permit = self.svc.permit
            if permit is not None and not permit(self.context, key, c.range_end):
                self.stream.refuse(PERMISSION_DENIED_REASON, c.watch_id)
                return
            filters = set(c.filters)
            opts = WatchOptions(
                no_put=_NOPUT in filters,
                no_delete=_NODELETE in filters,
                prev_kv=c.prev_kv,
                progress_notify=c.progress_notify,
                fragment=c.fragment,
            )
            start = c.start_revision or self.stream.rev + 1
            with contextlib.suppress(WatchError):  # the refusal is already queued
                self.stream.watch(key, c.range_end, start, c.watch_id, opts)
        elif kind == "cancel_request":
            self.stream.cancel(req.cancel_request.watch_id)
        elif kind == "progress_request":
            self.stream.request_progress_all()

    async def _progress_ticker(self) -> None:
        """progress_notify: every interval, a progress response for each such watcher that got
        no events since the last tick (etcd's per-stream ticker)."""
        stream = self.stream
        while True:
            await self.server.clock.sleep(self.svc.progress_interval)
            for wid, w in list(stream.watchers.items()):
                if w.opts.progress_notify and wid not in stream.active:
                    stream.request_progress(wid)
            stream.active.clear()

    # -- sending --------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        stream = self.stream
        write = self.context.write
        svc = self.svc
        encode = svc.encoder.encode
        server = self.server
        while True:
            await self.ready.wait()
            self.ready.clear()
            batch = stream.drain()
            self.room.set()
            for r in batch:
                events = r.events
                limit = 0
                if events:
                    w = stream.watchers.get(r.watch_id)
                    if w is not None:
                        if w.opts.prev_kv:
                            events = svc.watchable.with_prev_kv(events)
                        if w.opts.fragment:
                            limit = svc.fragment_limit
                for msg in encode(r, server.term, events, limit):
                    # bytes go out as they are (see add_to_server)
                    await write(msg)  # type: ignore[arg-type]
            if self.recv_failed or self.lost_leader:
                return


def add_to_server(servicer: WatchServicer, grpc_server: grpc.aio.Server) -> None:
    """add_WatchServicer_to_server, with a response serializer that sends the servicer's
    pre-encoded bytes unchanged."""
    handlers = {
        "/etcdserverpb.Watch/Watch": grpc.stream_stream_rpc_method_handler(
            servicer.Watch,
            request_deserializer=pb.WatchRequest.FromString,
            response_serializer=_passthrough,
        )
    }
    grpc_server.add_generic_rpc_handlers((PathHandler(handlers),))  # not registered: see PathHandler


def _auth_permit(server: EtcdServer, credentials: Credentials) -> Permit:
    """etcd's isWatchPermitted: read permission on the watched range, for the credentials the
    stream carries when the watch is created (a bad token refuses it)."""

    def permit(context: grpc.aio.ServicerContext[pb.WatchRequest, pb.WatchResponse], key: bytes,
               range_end: bytes) -> bool:
        store = server.auth_store
        try:
            info = credentials.now(context)
        except errors.PetcdError:
            return False
        return auth.is_watch_permitted(store, info, pb.WatchCreateRequest(key=key, range_end=range_end))

    return permit


def register(server: EtcdServer, grpc_server: grpc.aio.Server, credentials: Credentials | None = None) -> None:
    """Serve the Watch API of ``server`` (its watchable store) on ``grpc_server``; with
    ``credentials``, creates are checked against the auth store."""
    interval = server.settings.watch_progress_notify_interval
    creds = credentials if credentials is not None else Credentials(server)
    add_to_server(WatchServicer(server, server.watchable, progress_interval=interval, credentials=creds),
                  grpc_server)
