"""The Lock service: etcd's v3lock, a distributed mutex made of keys with leases.

Lock(name, lease) puts ``<name>/<lease hex>`` (with that lease, empty value) unless the key
exists already, and reads the oldest key under ``<name>/`` in the same txn. If that oldest key is
its own, the lock is taken; otherwise it waits until every key under ``<name>/`` with a smaller
create revision has been deleted (unlocked, or its lease expired), then checks that its own key
still exists: when its lease ran out meanwhile the answer is 'mutex: session is expired'.
Unlock(key) deletes the key. A Lock that fails or is cancelled while waiting deletes its key.

The responses are etcd's: the header of the acquiring txn when the lock was free, else the header
of the final read of its own key; lease 0 means a new lease of 60 seconds (clientv3's session).
"""

from __future__ import annotations

from collections.abc import Awaitable

from petcd import errors
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.v3lockpb import v3lock_pb2 as lockpb
from petcd.server.concurrency import (
    Cleanups,
    ConcurrencyKV,
    created_at,
    first_created,
    require_key,
    session_key,
    session_lease,
    wait_deletes,
)


class Locks:
    def __init__(self, kv: ConcurrencyKV, cleanups: Cleanups) -> None:
        self.kv = kv
        self.cleanups = cleanups

    async def lock(self, name: bytes, lease: int) -> lockpb.LockResponse:
        lease = await session_lease(self.kv, lease)
        prefix = name + b"/"
        key = session_key(prefix, lease)
        acquire = pb.TxnRequest(
            compare=[created_at(key, 0)],
            success=[
                pb.RequestOp(request_put=pb.PutRequest(key=key, lease=lease)),
                pb.RequestOp(request_range=first_created(prefix)),
            ],
            failure=[
                pb.RequestOp(request_range=pb.RangeRequest(key=key)),
                pb.RequestOp(request_range=first_created(prefix)),
            ],
        )

        def undo_put(resp: pb.TxnResponse) -> Awaitable[object] | None:
            return self._delete(key) if resp.succeeded else None

        resp = await self.cleanups.guarded(self.kv.txn(acquire), undo_put)
        if resp.succeeded:
            my_rev = resp.header.revision
        else:  # this lease queued for the lock before: keep its place
            my_rev = resp.responses[0].response_range.kvs[0].create_revision
        owner = resp.responses[1].response_range.kvs
        if not owner or owner[0].create_revision == my_rev:
            return lockpb.LockResponse(header=resp.header, key=key)
        try:
            await wait_deletes(self.kv, prefix, my_rev - 1)
            mine = await self.kv.range(pb.RangeRequest(key=key))
        except BaseException:
            await self.cleanups.run(lambda: self._delete(key))
            raise
        if not mine.kvs:
            raise errors.SessionExpiredError()
        return lockpb.LockResponse(header=mine.header, key=key)

    async def unlock(self, key: bytes) -> lockpb.UnlockResponse:
        resp = await self._delete(key)
        return lockpb.UnlockResponse(header=resp.header)

    async def _delete(self, key: bytes) -> pb.DeleteRangeResponse:
        require_key(key)
        return await self.kv.delete_range(pb.DeleteRangeRequest(key=key))
