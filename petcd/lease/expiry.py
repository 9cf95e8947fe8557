"""The leader's lease loop: revoke expired leases and save checkpoints, through raft.

Only the primary lessor (the leader's) reports expired leases and due checkpoints, so on
other members each round does nothing. Revocations are proposed like a client's LeaseRevoke,
a bounded number per round and a few at a time, so a mass expiry does not flood raft.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from petcd import errors
from petcd.lease.lessor import REVOKE_RATE
from petcd.lease.service import LeaseServer
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.serverpb import internal_pb2 as serverpb

log = logging.getLogger("petcd.lease")

EXPIRY_INTERVAL = 0.5
# at most this many revocations per round, like etcd (leaseRevokeRate per second, two rounds)
MAX_REVOKES_PER_ROUND = REVOKE_RATE // 2
# revocations in flight at once (etcd's maxPendingRevokes)
MAX_PENDING_REVOKES = 16
MAX_CHECKPOINTS_PER_REQUEST = 1000


async def run_expiry(server: LeaseServer, interval: float = EXPIRY_INTERVAL) -> None:
    """Run until cancelled: every interval, propose the revocation of expired leases and the
    checkpoints that are due. Cancelling it cancels the proposals it has in flight."""
    inflight: set[asyncio.Task[None]] = set()
    gate = asyncio.Semaphore(MAX_PENDING_REVOKES)
    try:
        while True:
            await server.clock.sleep(interval)
            try:
                _round(server, inflight, gate)
            except Exception:  # a bug in one round must not end lease expiry for good
                log.exception("lease expiry round failed")
    finally:
        for task in list(inflight):
            task.cancel()


def _round(server: LeaseServer, inflight: set[asyncio.Task[None]], gate: asyncio.Semaphore) -> None:
    lessor = server.lessor
    room = MAX_REVOKES_PER_ROUND - len(inflight)
    for lease_id in lessor.expired_leases(max(0, room)):
        _spawn(inflight, _revoke(server, lease_id, gate))
    cps = lessor.checkpoints_due(MAX_CHECKPOINTS_PER_REQUEST)
    if cps:
        _spawn(inflight, _checkpoint(server, cps))


def _spawn(inflight: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(coro)
    inflight.add(task)
    task.add_done_callback(inflight.discard)


async def _revoke(server: LeaseServer, lease_id: int, gate: asyncio.Semaphore) -> None:
    async with gate:
        try:
            await server.propose(serverpb.InternalRequest(lease_revoke=pb.LeaseRevokeRequest(ID=lease_id)))
        except errors.PetcdError as exc:
            # a lease revoked meanwhile is fine; otherwise it is offered again after the retry interval
            if not isinstance(exc, errors.LeaseNotFoundError):
                log.warning("failed to revoke expired lease %x: %s", lease_id, exc)


async def _checkpoint(server: LeaseServer, cps: list[pb.LeaseCheckpoint]) -> None:
    req = serverpb.InternalRequest(lease_checkpoint=pb.LeaseCheckpointRequest(checkpoints=cps))
    try:
        await server.propose(req)
    except errors.PetcdError as exc:
        log.warning("failed to checkpoint %d leases: %s", len(cps), exc)


__all__ = ["EXPIRY_INTERVAL", "MAX_PENDING_REVOKES", "MAX_REVOKES_PER_ROUND", "run_expiry"]
