"""What the Lock and Election services use of the member, and the waiting they share.

etcd serves v3lock and v3election through an in-process client: the services are clients of the
member's own KV, Watch and Lease APIs (clientv3/concurrency's Mutex and Election), so they change
nothing a client could not change itself, and what they store is plain keys with leases. petcd
does the same. Everything they use of the member goes through ``MemberKV`` (one small adapter over
``EtcdServer``'s public range/put/delete_range/txn, its watchable store and its lease grant), so a
change of the server's interface touches only that class.

The waiting both share (``wait_deletes``): a contender's key is ``<name>/<lease id in hex>``; it
owns the lock (or leads the election) once every key in ``<name>/`` with a smaller create revision
is gone. It looks up the newest such key, watches it until it is deleted, and repeats.

A request can be cancelled (the client gives up, or its deadline passes) while it waits. Then, as
in etcd, the key it put is deleted before the cancellation goes on (``Cleanups``), so a client that
gave up never holds or queues for the lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from petcd import errors
from petcd.lease import service as lease_service
from petcd.mvcc.watchable import STREAM_CAPACITY, WatchResponse, WatchStream
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.mvccpb import kv_pb2 as mvccpb
from petcd.server.etcdserver import EtcdServer

log = logging.getLogger("petcd.concurrency")

T = TypeVar("T")

# clientv3/concurrency's default session TTL: a request with lease 0 gets a lease of this TTL
SESSION_TTL = 60
# the store's range end for "every key from this one on"
FROM_KEY = b"\x00"

_CREATE = pb.Compare.CREATE
_EQUAL = pb.Compare.EQUAL


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """The events of one watch response and its header."""

    header: pb.ResponseHeader
    events: list[mvccpb.Event]


class KeyWatch:
    """One watcher on the member's watchable store, read batch by batch (``next``); ``close`` it."""

    def __init__(
        self, stream: WatchStream, ready: asyncio.Event, header: Callable[[int], pb.ResponseHeader]
    ) -> None:
        self._stream = stream
        self._ready = ready
        self._header = header
        self._queue: deque[WatchResponse] = deque()

    async def next(self) -> WatchBatch:
        """The next response with events; raises CompactedError if the history it needs is gone."""
        while True:
            while self._queue:
                r = self._queue.popleft()
                if r.compact_revision:
                    raise errors.CompactedError()
                if r.events:
                    return WatchBatch(self._header(r.revision), list(r.events))
            await self._ready.wait()
            self._ready.clear()
            self._queue.extend(self._stream.drain())

    def close(self) -> None:
        self._stream.close()


class ConcurrencyKV(Protocol):
    """The member, as the Lock and Election services see it."""

    async def range(self, r: pb.RangeRequest) -> pb.RangeResponse: ...

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse: ...

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse: ...

    async def grant_lease(self, ttl: int) -> int: ...

    def watch(self, key: bytes, end: bytes, start_rev: int) -> KeyWatch: ...


class MemberKV:
    """``ConcurrencyKV`` over an ``EtcdServer``: the one place these services touch the server."""

    def __init__(self, server: EtcdServer) -> None:
        self._server = server

    async def range(self, r: pb.RangeRequest) -> pb.RangeResponse:
        return await self._server.range(r)

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse:
        return await self._server.txn(r)

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        return await self._server.delete_range(r)

    async def grant_lease(self, ttl: int) -> int:
        resp = await lease_service.lease_grant(self._server, pb.LeaseGrantRequest(TTL=ttl))
        return resp.ID

    def watch(self, key: bytes, end: bytes, start_rev: int) -> KeyWatch:
        ready = asyncio.Event()
        stream = self._server.watchable.new_stream(STREAM_CAPACITY, ready.set)
        stream.watch(key, end, start_rev)
        return KeyWatch(stream, ready, self._server.header)


# -- requests ------------------------------------------------------------------------------------


def prefix_end(prefix: bytes) -> bytes:
    """The range end that makes [prefix, end) every key starting with prefix (clientv3's rule)."""
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return FROM_KEY
    end[-1] += 1
    return bytes(end)


def session_key(prefix: bytes, lease: int) -> bytes:
    """``<prefix><lease id in hex>``, as Go's %x writes an int64 (a minus sign for negatives)."""
    return prefix + format(lease, "x").encode()


def first_created(prefix: bytes) -> pb.RangeRequest:
    """The key under prefix with the smallest create revision (clientv3.WithFirstCreate)."""
    return pb.RangeRequest(
        key=prefix, range_end=prefix_end(prefix), limit=1,
        sort_order=pb.RangeRequest.ASCEND, sort_target=pb.RangeRequest.CREATE,
    )


def last_created_before(prefix: bytes, max_create_rev: int) -> pb.RangeRequest:
    """The key under prefix created last at or before max_create_rev (WithLastCreate +
    WithMaxCreateRev)."""
    return pb.RangeRequest(
        key=prefix, range_end=prefix_end(prefix), limit=1, max_create_revision=max_create_rev,
        sort_order=pb.RangeRequest.DESCEND, sort_target=pb.RangeRequest.CREATE,
    )


def created_at(key: bytes, rev: int) -> pb.Compare:
    """The compare ``create_revision(key) == rev`` (rev 0: the key does not exist)."""
    return pb.Compare(key=key, target=_CREATE, result=_EQUAL, create_revision=rev)


def require_key(key: bytes) -> None:
    """etcd's KV server refuses an empty key in any put, delete or compare."""
    if not key:
        raise errors.EmptyKeyError()


async def session_lease(kv: ConcurrencyKV, lease: int) -> int:
    """The lease a request works under: its own, or (lease 0) a new one of SESSION_TTL seconds,
    as clientv3's NewSession grants. The lease is not checked here: a put with a lease that does
    not exist fails with 'requested lease not found', which is what etcd answers."""
    if lease == 0:
        return await kv.grant_lease(SESSION_TTL)
    return lease


# -- waiting -------------------------------------------------------------------------------------


async def wait_delete(kv: ConcurrencyKV, key: bytes, rev: int) -> None:
    """Return once key is deleted at or after revision rev."""
    watch = kv.watch(key, b"", rev)
    try:
        while True:
            batch = await watch.next()
            if any(ev.type == mvccpb.Event.DELETE for ev in batch.events):
                return
    finally:
        watch.close()


async def wait_deletes(kv: ConcurrencyKV, prefix: bytes, max_create_rev: int) -> None:
    """Return once no key under prefix has a create revision at or below max_create_rev."""
    while True:
        resp = await kv.range(last_created_before(prefix, max_create_rev))
        if not resp.kvs:
            return
        await wait_delete(kv, resp.kvs[0].key, resp.header.revision)


# -- cleaning up after cancelled requests ----------------------------------------------------------


class Cleanups:
    """Runs the undo of a request that failed or was cancelled, to the end even if the request is
    cancelled again meanwhile (the undo is its own task; this holds it until it finishes)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self, undo: Callable[[], Awaitable[object]]) -> None:
        """Run undo() and wait for it; a failure of the undo is logged, not raised (the caller is
        already reporting the error that made it undo)."""
        await asyncio.shield(self._spawn(self._quietly(undo)))

    async def guarded(self, coro: Coroutine[Any, Any, T], undo: Callable[[T], Awaitable[object] | None]) -> T:
        """Await coro (a write that may be applied even if its caller stops waiting). If the caller
        is cancelled first, the write goes on and undo(result) runs once it is done."""
        task = self._spawn(coro)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self._spawn(self._undo_after(task, undo))
            raise

    async def _undo_after(self, task: asyncio.Task[T], undo: Callable[[T], Awaitable[object] | None]) -> None:
        try:
            result = await task
        except Exception:
            return  # the write failed: nothing to undo
        pending = undo(result)
        if pending is not None:
            await self._quietly(lambda: pending)

    @staticmethod
    async def _quietly(undo: Callable[[], Awaitable[object]]) -> None:
        try:
            await undo()
        except Exception as exc:
            log.warning("cleaning up after a cancelled lock or election request failed: %s", exc)

    async def wait_idle(self) -> None:
        """Wait for every undo under way (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
