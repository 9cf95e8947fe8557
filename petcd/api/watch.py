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
from collections.abc import AsyncIterator, Callable, Iterator

import grpc

from petcd.mvcc.watch_sync import WatchSyncer
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
from petcd.server import errors
from petcd.server.etcdserver import EtcdServer

log = logging.getLogger("petcd.api.watch")

# etcd's default --experimental-watch-progress-notify-interval
DEFAULT_PROGRESS_INTERVAL = 600.0
# etcd fragments watch responses at the request limit plus gRPC's overhead allowance
GRPC_OVERHEAD_BYTES = 512 * 1024
REQUIRE_LEADER_KEY = "hasleader"

PERMISSION_DENIED_REASON = "rpc error: code = PermissionDenied desc = etcdserver: permission denied"

# permit(context, key, range_end): may this stream's user watch the range? (auth, when enabled)
Permit = Callable[[grpc.aio.ServicerContext[pb.WatchRequest, pb.WatchResponse], bytes, bytes], bool]

_NOPUT = pb.WatchCreateRequest.NOPUT
_NODELETE = pb.WatchCreateRequest.NODELETE


def _varint_len(n: int) -> int:
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


def fragments(resp: pb.WatchResponse, limit: int) -> Iterator[pb.WatchResponse]:
    """Split a response over several whose events add up to the original, each under limit bytes
    where possible (a single event larger than limit goes alone), every one but the last marked
    fragment=true. A response under the limit, or with fewer than two events, goes whole."""
    if len(resp.events) < 2 or resp.ByteSize() < limit:
        yield resp
        return
    shell = pb.WatchResponse()
    shell.CopyFrom(resp)
    del shell.events[:]
    shell.fragment = True
    base = shell.ByteSize()
    events = list(resp.events)
    i = 0
    while i < len(events):
        size = base
        j = i
        while j < len(events):
            n = events[j].ByteSize()
            cost = 1 + _varint_len(n) + n  # field tag, length, message
            if j > i and size + cost >= limit:
                break
            size += cost
            j += 1
        part = pb.WatchResponse()
        part.CopyFrom(shell)
        part.events.extend(events[i:j])
        if j == len(events):
            part.fragment = False
        yield part
        i = j


class WatchServicer(pb_grpc.WatchServicer):
    def __init__(
        self,
        server: EtcdServer,
        watchable: WatchableStore,
        *,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        capacity: int = STREAM_CAPACITY,
        permit: Permit | None = None,
    ) -> None:
        self.server = server
        self.permit = permit
        self.watchable = watchable
        self.progress_interval = progress_interval
        self.capacity = capacity
        self.fragment_limit = server.settings.max_request_bytes + GRPC_OVERHEAD_BYTES

    async def Watch(
        self,
        request_iterator: AsyncIterator[pb.WatchRequest],
        context: grpc.aio.ServicerContext[pb.WatchRequest, pb.WatchResponse],
    ) -> None:
        md = dict(context.invocation_metadata() or ())
        if md.get(REQUIRE_LEADER_KEY) == "true" and not self.server.leader:
            await context.abort(errors.ERR_NO_LEADER.code, errors.ERR_NO_LEADER.message)
        session = _Session(self, context)
        await session.run(request_iterator)


class _Session:
    """One Watch stream."""

    def __init__(self, svc: WatchServicer, context: grpc.aio.ServicerContext[pb.WatchRequest, pb.WatchResponse]) -> None:
        self.svc = svc
        self.server = svc.server
        self.context = context
        self.ready = asyncio.Event()
        self.room = asyncio.Event()
        self.recv_failed = False
        self.stream: WatchStream = svc.watchable.new_stream(svc.capacity, self.ready.set)

    async def run(self, request_iterator: AsyncIterator[pb.WatchRequest]) -> None:
        recv = asyncio.create_task(self._recv(request_iterator))
        ticker = asyncio.create_task(self._progress_ticker())
        try:
            await self._send_loop()
            if recv.done() and not recv.cancelled():
                exc = recv.exception()
                if exc is not None:
                    raise exc
        finally:
            recv.cancel()
            ticker.cancel()
            self.stream.close()
            for t in (recv, ticker):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

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
                self.stream.refuse(PERMISSION_DENIED_REASON)
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
            await asyncio.sleep(self.svc.progress_interval)
            for wid, w in list(stream.watchers.items()):
                if w.opts.progress_notify and wid not in stream.active:
                    stream.request_progress(wid)
            stream.active.clear()

    # -- sending --------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        stream = self.stream
        write = self.context.write
        while True:
            await self.ready.wait()
            self.ready.clear()
            batch = stream.drain()
            self.room.set()
            for r in batch:
                opts = self._opts(r.watch_id)
                msg = self._to_pb(r, opts)
                if opts is not None and opts.fragment and r.events:
                    for part in fragments(msg, self.svc.fragment_limit):
                        await write(part)
                else:
                    await write(msg)
            if self.recv_failed:
                return

    def _opts(self, watch_id: int) -> WatchOptions | None:
        w = self.stream.watchers.get(watch_id)
        return None if w is None else w.opts

    def _to_pb(self, r: WatchResponse, opts: WatchOptions | None) -> pb.WatchResponse:
        msg = pb.WatchResponse(
            header=self.server.header(r.revision),
            watch_id=r.watch_id,
            created=r.created,
            canceled=r.canceled or r.compact_revision != 0,
            compact_revision=r.compact_revision,
            cancel_reason=r.cancel_reason,
        )
        if r.events:
            events: list[mvccpb.Event] = r.events
            if opts is not None and opts.prev_kv:
                events = self.svc.watchable.with_prev_kv(events)
            msg.events.extend(events)
        return msg


def register(server: EtcdServer, grpc_server: grpc.aio.Server) -> None:
    """Serve the Watch API of ``server`` on ``grpc_server``. Uses ``server.watchable`` (and
    ``server.settings.watch_progress_notify_interval``) when the server provides them; otherwise
    attaches a WatchableStore and starts its syncer here (needs the running loop)."""
    watchable: WatchableStore | None = getattr(server, "watchable", None)
    if watchable is None:
        assert server.store is not None
        watchable = WatchableStore(server.store)
        syncer = WatchSyncer(watchable)
        syncer.start()
        server.watchable = watchable  # type: ignore[attr-defined]
        server.watch_syncer = syncer  # type: ignore[attr-defined]
    interval = float(getattr(server.settings, "watch_progress_notify_interval", DEFAULT_PROGRESS_INTERVAL))
    servicer = WatchServicer(server, watchable, progress_interval=interval)
    pb_grpc.add_WatchServicer_to_server(servicer, grpc_server)  # type: ignore[no-untyped-call]
