"""A whole member on a ManualClock: raft ticks, lease expiry, request deadlines and the backend's
batch interval all follow the injected clock, so time moves only when the test says so."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from petcd.clock import ManualClock
from petcd.config import settings_from_flags
from petcd.config.settings import ServerSettings
from petcd.lease.service import lease_grant, lease_time_to_live
from petcd.peer.member import build
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.server.bootstrap import Member

MEMBER_ID = 0x7173


def settings(tmp_path: Path) -> ServerSettings:
    return settings_from_flags(
        ["--name=m1", f"--data-dir={tmp_path / 'data'}", "--quota-backend-bytes=1073741824"],
        member_id=MEMBER_ID,
        cluster_id=0xC4,
        initial_members=[Member(MEMBER_ID, "m1", ["http://127.0.0.1:2380"])],
    )


async def advance_until(clock: ManualClock, cond: Callable[[], bool], what: str, limit: float) -> None:
    """Move virtual time in small steps (letting the loop run between them) until cond holds."""
    start = clock.now()
    while not cond():
        assert clock.now() - start < limit, f"{what}: not after {limit} virtual seconds"
        clock.advance(0.05)
        await asyncio.sleep(0.002)


def test_a_lease_expires_on_the_members_clock(tmp_path: Path) -> None:
    async def main() -> None:
        clock = ManualClock()
        srv = (await build(settings(tmp_path), clock)).server
        await srv.start()
        try:
            await advance_until(clock, lambda: srv.lessor.is_primary, "the member to lead", 30)
            grant = await lease_grant(srv, pb.LeaseGrantRequest(ID=0x77, TTL=5))
            await srv.put(pb.PutRequest(key=b"k", value=b"v", lease=grant.ID))
            start = clock.now()
            await advance_until(clock, lambda: not srv.lessor.exists(grant.ID), "the lease to expire", 30)
            # revoked by the expiry loop (every 0.5 s) once its 5 s were up on this clock
            assert 5.0 <= clock.now() - start <= 6.5
            assert not srv.store.range(b"k", b"").kvs
        finally:
            await srv.stop()

    asyncio.run(main())



def test_a_lease_call_waits_for_the_lessor_without_polling(tmp_path: Path) -> None:
    """A time-to-live question asked before the member leads waits for its lessor's promotion
    and is answered at once when it comes: with the clock standing still afterwards, a polling
    wait would never see it."""

    async def main() -> None:
        clock = ManualClock()
        srv = (await build(settings(tmp_path), clock)).server
        await srv.start()
        try:
            assert not srv.lessor.is_primary
            call = asyncio.ensure_future(lease_time_to_live(srv, pb.LeaseTimeToLiveRequest(ID=0x99)))
            await asyncio.sleep(0.01)
            assert not call.done()
            await advance_until(clock, lambda: srv.lessor.is_primary, "the member to lead", 30)
            for _ in range(20):  # loop turns only; virtual time stands still
                if call.done():
                    break
                await asyncio.sleep(0)
            assert call.done(), "the waiting call did not hear the promotion"
            assert call.result().TTL == -1  # no such lease, answered by the primary
        finally:
            await srv.stop()

    asyncio.run(main())
