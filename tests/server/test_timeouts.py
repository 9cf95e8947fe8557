"""Which timeout error a proposal gets (etcd's parseProposeCtxErr), on a real member under a
ManualClock: a leader elected within two election timeouts after the proposal started says the
old leader probably took it down; a link to the leader that was not up all along says the
connection was lost; anything else is a plain "request timed out". And end to end: a member
of a two-member cluster whose peer never answers times out with the plain error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from petcd import errors
from petcd.clock import ManualClock
from petcd.config import settings_from_flags
from petcd.peer.member import build
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.server.bootstrap import Member
from petcd.server.timeouts import timeout_error
from tests.harness import free_ports
from tests.server.test_virtual_time import advance_until, settings

ELECTION = 1.0  # the default --election-timeout, in seconds


def test_the_error_follows_etcds_rule(tmp_path: Path) -> None:
    async def main() -> None:
        clock = ManualClock()
        srv = (await build(settings(tmp_path), clock)).server
        await srv.start()
        try:
            await advance_until(clock, lambda: srv.leader == srv.member_id, "the member to lead", 30)
            now = clock.now()
            # led by itself, a quorum (itself) connected: plain
            assert type(timeout_error(srv, now)) is errors.RequestTimeoutError
            # a leader elected 1.5 s after the proposal started: the old leader failed
            srv.leader_elected_at = now + 1.5
            assert type(timeout_error(srv, now)) is errors.TimeoutDueToLeaderFailError
            # elected more than two election timeouts after it started: no longer blamed
            srv.leader_elected_at = now + 2 * ELECTION + 0.1
            assert type(timeout_error(srv, now)) is errors.RequestTimeoutError
            # elected before it started: plain
            srv.leader_elected_at = now - 0.1
            assert type(timeout_error(srv, now)) is errors.RequestTimeoutError
            # another leader this member has no link to: connection lost; no leader: plain
            srv.leader = 0x99
            assert type(timeout_error(srv, now)) is errors.TimeoutDueToConnectionLostError
            srv.leader = 0
            assert type(timeout_error(srv, now)) is errors.RequestTimeoutError
            srv.leader = srv.member_id
        finally:
            await srv.stop()

    asyncio.run(main())


def test_a_write_without_a_leader_times_out_plainly(tmp_path: Path) -> None:
    (peer_port,) = free_ports(1)  # nobody listens there

    async def main() -> None:
        clock = ManualClock()
        s = settings_from_flags(
            ["--name=m1", f"--data-dir={tmp_path / 'data'}"],
            member_id=0x7173, cluster_id=0xC4,
            initial_members=[Member(0x7173, "m1", ["http://127.0.0.1:2380"]),
                             Member(0x7174, "m2", [f"http://127.0.0.1:{peer_port}"])],
        )
        srv = (await build(s, clock)).server
        await srv.start()
        try:
            put = asyncio.ensure_future(srv.put(pb.PutRequest(key=b"k", value=b"v")))
            await advance_until(clock, put.done, "the put to time out", 30)
            with pytest.raises(errors.PetcdError) as info:
                put.result()
            # etcd: no leader at the end is a plain timeout, not "previous leader failure"
            assert type(info.value) is errors.RequestTimeoutError
        finally:
            await srv.stop()

    asyncio.run(main())


def test_a_read_waiting_for_a_leader_is_sent_again_once_one_is_known(tmp_path: Path) -> None:
    """A read index asked while no leader is known is dropped by raft; the member asks again
    the moment it learns a leader, not on its 0.5 s retry timer (nor etcd 3.5's old 1.5 s)."""

    async def main() -> None:
        clock = ManualClock()
        srv = (await build(settings(tmp_path), clock)).server
        await srv.start()
        try:
            assert srv.leader == 0  # the lone member has not elected itself yet
            read = asyncio.ensure_future(srv.range(pb.RangeRequest(key=b"k")))
            led: list[float] = []

            def done() -> bool:
                if srv.leader and not led:
                    led.append(clock.now())
                return read.done()

            await advance_until(clock, done, "the read to be served", 30)
            read.result()
            assert led and clock.now() - led[0] < 0.2, (led, clock.now())
        finally:
            await srv.stop()

    asyncio.run(main())
