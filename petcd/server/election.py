"""The Election service: etcd's v3election, leader election made of keys with leases.

A candidate's key is ``<name>/<lease hex>``, holding its proposal, with its lease. The leader is
the key under ``<name>/`` with the smallest create revision.

- Campaign puts the key unless it exists (a candidate that campaigns again keeps its place; a new
  value is proclaimed), then waits until every older key under ``<name>/`` is gone. It answers
  with the header of that first txn and the LeaderKey (name, key, create revision, lease). A
  Campaign cancelled while it waits resigns. It does not check that its own key survived the wait
  (etcd does not either): a Proclaim with that LeaderKey then says 'election: not leader'.
- Proclaim puts a new value if the key still has the LeaderKey's create revision, else
  'election: not leader'. Resign deletes it under the same condition (and is silent otherwise).
- Leader reads the oldest key ('election: no leader' if there is none); Observe streams the
  leader and each change of its value, then the next leader once it is deleted. Any key under
  the prefix counts, a candidate's or not, as in etcd.

Lease 0 in Campaign, Proclaim or Resign means a new lease of 60 seconds (clientv3's session).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable

from petcd import errors
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.mvccpb import kv_pb2 as mvccpb
from petcd.proto.v3electionpb import v3election_pb2 as epb
from petcd.server.concurrency import (
    Cleanups,
    ConcurrencyKV,
    created_at,
    first_created,
    prefix_end,
    require_key,
    session_key,
    session_lease,
    wait_deletes,
)

log = logging.getLogger("petcd.concurrency")

_PUT = mvccpb.Event.PUT
_DELETE = mvccpb.Event.DELETE


class Elections:
    def __init__(self, kv: ConcurrencyKV, cleanups: Cleanups) -> None:
        self.kv = kv
        self.cleanups = cleanups

    async def campaign(self, name: bytes, lease: int, value: bytes) -> epb.CampaignResponse:
        lease = await session_lease(self.kv, lease)
        prefix = name + b"/"
        key = session_key(prefix, lease)
        enter = pb.TxnRequest(
            compare=[created_at(key, 0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, lease=lease))],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=key))],
        )

        def undo_enter(resp: pb.TxnResponse) -> Awaitable[object] | None:
            return self._resign(key, resp.header.revision) if resp.succeeded else None

        resp = await self.cleanups.guarded(self.kv.txn(enter), undo_enter)
        rev = resp.header.revision
        if not resp.succeeded:
            kv = resp.responses[0].response_range.kvs[0]
            rev = kv.create_revision
            if kv.value != value:
                try:
                    await self._proclaim(key, rev, lease, value)
                except BaseException:
                    await self.cleanups.run(lambda: self._resign(key, rev))
                    raise
        try:
            await wait_deletes(self.kv, prefix, rev - 1)
        except asyncio.CancelledError:  # the client gave up: so does the candidate
            await self.cleanups.run(lambda: self._resign(key, rev))
            raise
        return epb.CampaignResponse(
            header=resp.header, leader=epb.LeaderKey(name=name, key=key, rev=rev, lease=lease)
        )

    async def proclaim(self, leader: epb.LeaderKey | None, value: bytes) -> epb.ProclaimResponse:
        if leader is None:
            raise errors.MissingLeaderKeyError()
        lease = await session_lease(self.kv, leader.lease)
        resp = await self._proclaim(leader.key, leader.rev, lease, value)
        return epb.ProclaimResponse(header=resp.header)

    async def resign(self, leader: epb.LeaderKey | None) -> epb.ResignResponse:
        if leader is None:
            raise errors.MissingLeaderKeyError()
        await session_lease(self.kv, leader.lease)  # etcd makes a session for it, granting one for 0
        resp = await self._resign(leader.key, leader.rev)
        return epb.ResignResponse(header=resp.header)

    async def leader(self, name: bytes) -> epb.LeaderResponse:
        resp = await self.kv.range(first_created(name + b"/"))
        if not resp.kvs:
            raise errors.ElectionNoLeaderError()
        return epb.LeaderResponse(header=resp.header, kv=resp.kvs[0])

    async def observe(self, name: bytes) -> AsyncGenerator[epb.LeaderResponse, None]:
        """The leader now (or the first key put under the prefix, if there is none), then every
        put of the leader's key, then the next leader once the key is deleted; ends (without an
        error, as etcd's) when a read fails or the history a watch needs was compacted."""
        prefix = name + b"/"
        try:
            while True:
                resp = await self.kv.range(first_created(prefix))
                if resp.kvs:
                    header, kv = resp.header, resp.kvs[0]
                else:
                    header, kv = await self._first_put(prefix, resp.header.revision)
                yield epb.LeaderResponse(header=header, kv=kv)
                watch = self.kv.watch(kv.key, b"", header.revision + 1)
                try:
                    deleted = False
                    while not deleted:
                        batch = await watch.next()
                        for ev in batch.events:
                            if ev.type == _DELETE:
                                deleted = True
                                break
                            yield epb.LeaderResponse(header=batch.header, kv=ev.kv)
                finally:
                    watch.close()
        except Exception as exc:  # petcd.errors and mvcc errors end an observer quietly
            log.info("election observer of %r ends: %s", name, exc)

    async def _first_put(self, prefix: bytes, rev: int) -> tuple[pb.ResponseHeader, mvccpb.KeyValue]:
        """The first key put under prefix from revision rev on (deletes there are not leaders);
        the header carries that put's revision."""
        watch = self.kv.watch(prefix, prefix_end(prefix), rev)
        try:
            while True:
                batch = await watch.next()
                for ev in batch.events:
                    if ev.type == _PUT:
                        header = pb.ResponseHeader()
                        header.CopyFrom(batch.header)
                        header.revision = ev.kv.mod_revision
                        return header, ev.kv
        finally:
            watch.close()

    async def _proclaim(self, key: bytes, rev: int, lease: int, value: bytes) -> pb.TxnResponse:
        require_key(key)
        resp = await self.kv.txn(pb.TxnRequest(
            compare=[created_at(key, rev)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value, lease=lease))],
        ))
        if not resp.succeeded:
            raise errors.ElectionNotLeaderError()
        return resp

    async def _resign(self, key: bytes, rev: int) -> pb.TxnResponse:
        require_key(key)
        return await self.kv.txn(pb.TxnRequest(
            compare=[created_at(key, rev)],
            success=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=key))],
        ))
