"""Maintenance and cluster queries of one member: status, alarms, defrag, hashes, snapshot."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator

from petcd import ETCD_API_VERSION, errors
from petcd.bbolt import EtcdSnapshot
from petcd.mvcc import CompactedError, FutureRevError
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.raft import StateType
from petcd.server import leader_transfer
from petcd.server.apply_kv import mvcc_error
from petcd.server.etcdserver import ALARM_NONE, EtcdServer

log = logging.getLogger("petcd.server")

SNAPSHOT_CHUNK = 32 * 1024  # etcd's snapshotSendBufferSize
SNAPSHOT_READ_BLOCK = 1 << 20  # read from the temporary file per worker-thread hop


def status(srv: EtcdServer) -> pb.StatusResponse:
    resp = pb.StatusResponse(
        header=srv.header(),
        version=ETCD_API_VERSION,
        dbSize=srv.backend.size(),
        leader=srv.leader,
        raftIndex=srv.committed_index,
        raftTerm=srv.term,
        raftAppliedIndex=srv.applied_index,
        dbSizeInUse=srv.backend.size_in_use(),
        isLearner=srv.membership.is_learner(srv.member_id),
    )
    # (the api layer puts etcd's "no leader" text first when there is no leader)
    for member_id, alarm in sorted(srv.alarms):
        # Go's proto text form, which etcd puts here
        resp.errors.append(f"memberID:{member_id} alarm:{pb.AlarmType.Name(alarm)} ")
    return resp


async def alarm(srv: EtcdServer, r: pb.AlarmRequest) -> pb.AlarmResponse:
    if r.action == pb.AlarmRequest.GET:
        await srv.linearizable_read()
        resp = pb.AlarmResponse(header=srv.header())
        for member_id, kind in sorted(srv.alarms):
            if r.alarm == ALARM_NONE or r.alarm == kind:
                resp.alarms.add(memberID=member_id, alarm=kind)
        return resp
    result: pb.AlarmResponse = await srv.propose(serverpb.InternalRequest(alarm=r))
    result.header.CopyFrom(srv.header())
    return result


async def defragment(srv: EtcdServer) -> pb.DefragmentResponse:
    before = srv.backend.size()
    async with _file_guard(srv):
        # the copy runs in C in a worker thread; the event loop (and raft ticks) keep going
        await asyncio.to_thread(srv.backend.defrag)
    srv.db_size_in_use = srv.backend.size_in_use()
    log.info("defragmented backend: %d -> %d bytes", before, srv.backend.size())
    return pb.DefragmentResponse(header=srv.header())


def hash_(srv: EtcdServer) -> pb.HashResponse:
    return pb.HashResponse(header=srv.header(), hash=srv.backend.hash())


def hash_kv(srv: EtcdServer, rev: int) -> pb.HashKVResponse:
    try:
        h, cur, compact = srv.store.hash_kv(rev)
    except (CompactedError, FutureRevError) as exc:
        raise mvcc_error(exc) from None
    return pb.HashKVResponse(header=srv.header(cur), hash=h, compact_revision=compact, hash_revision=rev or cur)


# A snapshot's export child has the LMDB file open while it converts. Defrag must not swap the
# file meanwhile: the reopened environment would not be the lock file's first user, so it would
# trust the lock file's transaction id, which belongs to the old file, and read the compacted
# file through the wrong meta page (seen: the buckets vanish and the reopen fails). Exports and
# defrags of one member therefore take turns.
_FILE_GUARDS: weakref.WeakKeyDictionary[EtcdServer, asyncio.Lock] = weakref.WeakKeyDictionary()


def _file_guard(srv: EtcdServer) -> asyncio.Lock:
    guard = _FILE_GUARDS.get(srv)
    if guard is None:
        guard = _FILE_GUARDS[srv] = asyncio.Lock()
    return guard


async def _convert(srv: EtcdServer) -> EtcdSnapshot:
    """EtcdSnapshot made in a worker thread; a client that goes away meanwhile does not leak
    the temporary file (it is closed once the conversion ends)."""
    async with _file_guard(srv):
        job = asyncio.ensure_future(asyncio.to_thread(EtcdSnapshot, srv.backend, str(srv.paths.snap_dir)))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            job.add_done_callback(_close_unclaimed)
            # the child still has the file open: keep defrag out until it is done
            await asyncio.shield(asyncio.wait([job]))
            raise


def _close_unclaimed(job: asyncio.Future[EtcdSnapshot]) -> None:
    if not job.cancelled() and job.exception() is None:
        job.result().close()


async def snapshot(srv: EtcdServer) -> AsyncIterator[pb.SnapshotResponse]:
    """Stream the backend as etcd 3.5 does, so `etcdctl snapshot save` stores a file etcdutl
    restores: an etcd bbolt database in 32 KiB chunks, each with the database bytes still to
    come, then its sha256 with remaining_bytes 0 (etcd 3.5.1 sets no header on these).

    The database is converted from one consistent read of the committed LMDB state by a child
    process (EtcdSnapshot, in_child), awaited from a worker thread, and read back from its
    temporary file a block at a time: the member's event loop and GIL stay free throughout.
    (The bbolt meta pages, written last, lead the file, so the stream starts once the conversion
    is done; the chunks are never all held in memory.)"""
    srv.backend.force_commit()  # the open batch's writes belong in the snapshot, as etcd's commit
    start = srv.clock.now()
    snap = await _convert(srv)
    try:
        log.info(
            "sending database snapshot to client (%d bytes, converted to etcd's format in %.3fs)",
            snap.size, srv.clock.now() - start,
        )
        blocks = snap.chunks(SNAPSHOT_READ_BLOCK)
        sent = 0
        while sent < snap.db_size:
            block = await asyncio.to_thread(next, blocks)
            for off in range(0, len(block), SNAPSHOT_CHUNK):
                piece = block[off : off + SNAPSHOT_CHUNK]
                sent += len(piece)
                yield pb.SnapshotResponse(remaining_bytes=snap.db_size - sent, blob=piece)
        digest = await asyncio.to_thread(next, blocks)
        yield pb.SnapshotResponse(remaining_bytes=0, blob=digest)
        log.info("sent database snapshot to client (%d bytes)", snap.size)
    finally:
        snap.close()


def cluster_header(srv: EtcdServer) -> pb.ResponseHeader:
    """The header of Cluster service answers: etcd (3.4 and 3.5) leaves the revision out."""
    return pb.ResponseHeader(cluster_id=srv.cluster_id, member_id=srv.member_id, raft_term=srv.term)


def member_list(srv: EtcdServer) -> pb.MemberListResponse:
    resp = pb.MemberListResponse(header=cluster_header(srv))
    for m in srv.membership.ordered():
        resp.members.add(ID=m.id, name=m.name, peerURLs=m.peer_urls, clientURLs=m.client_urls, isLearner=m.is_learner)
    return resp


async def move_leader(srv: EtcdServer, target: int) -> None:
    """Hand leadership to target (a voter) and wait until it leads, as etcd's MoveLeader."""
    if srv.role != StateType.LEADER:
        raise errors.NotLeaderError()
    await leader_transfer.move_leader(srv, target, srv.settings.request_timeout)
