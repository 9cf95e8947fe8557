"""The server-side lease functions (petcd.lease.service) and the expiry loop on an in-process
single-member EtcdServer: ids chosen by the server, keep-alive of an expired lease, checkpoints
proposed by the leader and cleared by a keep-alive."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from petcd import errors
from petcd.backend import LEASE
from petcd.clock import LoopClock
from petcd.config import settings_from_flags
from petcd.lease import lease_key
from petcd.lease.service import lease_grant, lease_leases, lease_renew, lease_revoke, lease_time_to_live
from petcd.peer.member import build as build_member
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.leasepb import lease_pb2 as leasepb
from petcd.server.bootstrap import Member
from petcd.server.etcdserver import EtcdServer
from tests.harness.waiting import until

MEMBER_ID = 0x51A5E


def run(tmp_path: Path, body: Callable[[EtcdServer], Awaitable[None]], flags: tuple[str, ...] = ()) -> None:
    """Start a one-member server in tmp_path, wait until its lessor is primary, run body, stop."""

    async def main() -> None:
        settings = settings_from_flags(
            ["--name=m1", f"--data-dir={tmp_path / 'data'}", "--quota-backend-bytes=1073741824", *flags],
            member_id=MEMBER_ID,
            cluster_id=0xC1,
            initial_members=[Member(MEMBER_ID, "m1", ["http://127.0.0.1:2380"])],
        )
        srv = (await build_member(settings, LoopClock())).server
        await srv.start()
        try:
            await until(lambda: srv.lessor.is_primary, "the lessor to be promoted")
            await body(srv)
        finally:
            await srv.stop()

    asyncio.run(main())


def record(srv: EtcdServer, lease_id: int) -> leasepb.Lease | None:
    assert srv.backend is not None
    raw = srv.backend.get(LEASE, lease_key(lease_id))
    return None if raw is None else leasepb.Lease.FromString(raw)


def test_grant_revoke_and_queries(tmp_path: Path) -> None:
    async def body(srv: EtcdServer) -> None:
        resp = await lease_grant(srv, pb.LeaseGrantRequest(TTL=60))
        assert resp.ID > 0 and resp.TTL == 60
        assert resp.header.member_id == MEMBER_ID and resp.header.raft_term == srv.term
        chosen = await lease_grant(srv, pb.LeaseGrantRequest(TTL=1, ID=77))
        assert (chosen.ID, chosen.TTL) == (77, 2)  # minimum TTL for 100 ms / 1000 ms timeouts
        with pytest.raises(errors.PetcdError) as e:
            await lease_grant(srv, pb.LeaseGrantRequest(TTL=5, ID=77))
        assert isinstance(e.value, errors.LeaseExistsError)
        with pytest.raises(errors.PetcdError) as e:
            await lease_grant(srv, pb.LeaseGrantRequest(TTL=9_000_000_001))
        assert isinstance(e.value, errors.LeaseTTLTooLargeError)
        assert {ls.ID for ls in lease_leases(srv).leases} == {resp.ID, 77}
        assert await lease_renew(srv, resp.ID) == 60
        ttl = await lease_time_to_live(srv, pb.LeaseTimeToLiveRequest(ID=resp.ID, keys=True))
        assert (ttl.ID, ttl.grantedTTL, ttl.TTL) == (resp.ID, 60, 59)
        missing = await lease_time_to_live(srv, pb.LeaseTimeToLiveRequest(ID=12345))
        assert (missing.ID, missing.TTL, missing.header.member_id) == (12345, -1, MEMBER_ID)
        await lease_revoke(srv, pb.LeaseRevokeRequest(ID=resp.ID))
        with pytest.raises(errors.PetcdError) as e:
            await lease_revoke(srv, pb.LeaseRevokeRequest(ID=resp.ID))
        assert isinstance(e.value, errors.LeaseNotFoundError)
        with pytest.raises(errors.PetcdError) as e:
            await lease_renew(srv, resp.ID)
        assert isinstance(e.value, errors.LeaseNotFoundError)

    run(tmp_path, body)


def test_keep_alive_of_an_expired_lease_waits_for_its_revocation(tmp_path: Path) -> None:
    async def body(srv: EtcdServer) -> None:
        lease = (await lease_grant(srv, pb.LeaseGrantRequest(TTL=2))).ID
        await srv.put(pb.PutRequest(key=b"k", value=b"v", lease=lease))
        assert srv.lessor.exists(lease)
        await until(lambda: srv.lessor.remaining(lease) <= 0, "the lease to expire")
        with pytest.raises(errors.PetcdError) as e:
            await lease_renew(srv, lease)
        assert isinstance(e.value, errors.LeaseNotFoundError)
        # told "not found" only once the keys are gone
        assert not srv.lessor.exists(lease)
        assert srv.store is not None and srv.store.range(b"k").kvs == []

    run(tmp_path, body)


def test_the_leader_checkpoints_and_a_keep_alive_clears_the_checkpoint(tmp_path: Path) -> None:
    async def body(srv: EtcdServer) -> None:
        srv.lessor.checkpoint_interval = 0.5  # etcd's default is 5 minutes
        lease = (await lease_grant(srv, pb.LeaseGrantRequest(TTL=30))).ID
        await until(lambda: (r := record(srv, lease)) is not None and r.remaining_ttl > 0, "a checkpoint")
        rec = record(srv, lease)
        assert rec is not None and 28 <= rec.remaining_ttl <= 30
        assert await lease_renew(srv, lease) == 30
        rec = record(srv, lease)
        assert rec is not None and rec.remaining_ttl == 0  # cleared through raft before the renew

    run(tmp_path, body, flags=("--experimental-enable-lease-checkpoint",))


def test_no_checkpoints_without_the_flag(tmp_path: Path) -> None:
    """etcd 3.5 checkpoints leases only with --experimental-enable-lease-checkpoint."""

    async def body(srv: EtcdServer) -> None:
        assert not srv.lessor.checkpointing
        srv.lessor.checkpoint_interval = 0.2
        lease = (await lease_grant(srv, pb.LeaseGrantRequest(TTL=30))).ID
        await asyncio.sleep(1.0)
        rec = record(srv, lease)
        assert rec is not None and rec.remaining_ttl == 0

    run(tmp_path, body)
