"""The transferee a stopping leader picks (etcd's longestConnected): the voter whose stream has
been up longest on the member's clock, never a learner, never itself, never a peer whose stream is
down, and nobody when no voter's stream is up. Measured on a real PeerTransport whose links come
up at chosen times of a ManualClock. And the rules of the transfer itself on a real lone member:
no transfer without a second voter, none to an unknown member, none once the member stops."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

import pytest

from petcd import errors
from petcd.clock import ManualClock
from petcd.peer import PeerTransport
from petcd.peer.member import build
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.server.bootstrap import Member
from petcd.server.leader_transfer import (
    longest_connected,
    move_leader,
    transfer_before_stop,
    transfer_leadership,
)
from tests.harness import free_ports
from tests.peer.cluster import CLUSTER, FAST, closing, run, until
from tests.peer.cluster import Member as PeerMember
from tests.server.test_virtual_time import advance_until, settings

SELF = 1


def _transport(clock: ManualClock, root: Path) -> PeerTransport:
    async def no_snapshot(_m: raftpb.Message, _path: str) -> None:
        raise AssertionError("no snapshot expected")

    async def no_source(_m: raftpb.Message) -> str:
        raise AssertionError("no snapshot expected")

    received: list[list[raftpb.Message]] = []
    return PeerTransport(
        SELF, CLUSTER, received.append, no_snapshot, lambda _p: None, lambda _p, _f: None, no_source,
        root / "snap-in", config=FAST, clock=clock, rand=random.Random(1),
    )


def test_the_longest_connected_voter_is_chosen_never_a_learner(tmp_path: Path) -> None:
    async def body() -> None:
        clock = ManualClock(start=100.0)
        me = _transport(clock, tmp_path)
        ports = free_ports(4)
        # 2, 3 voters; 4 a learner; 5 a voter nobody serves (its stream never comes up)
        peers = {i: PeerMember(i, ports[i - 2], tmp_path) for i in (2, 3, 4)}
        members = [
            Member(SELF, "m1", ["http://127.0.0.1:1"]),
            Member(2, "m2", [peers[2].url]),
            Member(3, "m3", [peers[3].url]),
            Member(4, "m4", [peers[4].url], is_learner=True),
            Member(5, "m5", [f"http://127.0.0.1:{ports[3]}"]),
        ]
        for p in peers.values():
            await p.serve()
        await me.start()
        async with closing(*peers.values()):
            try:
                # the streams come up in the order learner 4 (t=100), 3 (t=110), 2 (t=120)
                for peer_id in (4, 3, 2):
                    me.add_peer(peer_id, [peers[peer_id].url])
                    await until(lambda i=peer_id: me.active_since(i) is not None, what=f"stream to {peer_id}")
                    clock.advance(10.0)
                me.add_peer(5, members[4].peer_urls)
                assert [me.active_since(i) for i in (2, 3, 4, 5)] == [120.0, 110.0, 100.0, None]
                # the learner has been up longest, but only voters may lead
                assert longest_connected(SELF, members, me.active_since) == 3
                # as learner 4 would be, were it a voter; and this member never picks itself
                as_voters = [Member(m.id, m.name, m.peer_urls) for m in members]
                assert longest_connected(SELF, as_voters, me.active_since) == 4
                assert longest_connected(4, as_voters, me.active_since) == 3
                # 3 goes away: its stream is down, so the next longest voter is chosen
                await peers[3].close()
                await until(lambda: me.active_since(3) is None, what="the stream to 3 to drop")
                assert longest_connected(SELF, members, me.active_since) == 2
                # no voter's stream up (the learner's is): nobody
                await peers[2].close()
                await until(lambda: me.active_since(2) is None, what="the stream to 2 to drop")
                assert me.active_since(4) == 100.0
                assert longest_connected(SELF, members, me.active_since) is None
            finally:
                await me.stop()

    run(body)


def test_equal_times_go_to_the_lowest_id() -> None:
    # etcd walks the voter ids in order and keeps the first of equal times
    since = {7: 5.0, 3: 5.0, 9: 4.0}
    members = [Member(i, f"m{i}", [f"http://127.0.0.1:{i}"]) for i in (9, 7, 3, 1)]
    assert longest_connected(1, members, since.get) == 9
    since[9] = 5.0
    assert longest_connected(1, members, since.get) == 3


def test_a_lone_member_does_not_transfer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        clock = ManualClock()
        srv = (await build(settings(tmp_path), clock)).server
        await srv.start()
        try:
            caplog.set_level(logging.INFO, logger="petcd.server")
            # not leader yet: skipped as a follower
            await transfer_leadership(srv)
            assert "skipped leadership transfer; local server is not leader" in caplog.text
            await advance_until(clock, lambda: srv.leader == srv.member_id, "the member to lead", 30)
            term = srv.term
            await transfer_leadership(srv)
            assert "skipped leadership transfer for single voting member cluster" in caplog.text
            with pytest.raises(errors.BadLeaderTransfereeError):
                await move_leader(srv, 0x999, srv.settings.request_timeout)
            assert "leadership transfer starting" not in caplog.text
            assert (srv.leader, srv.term) == (srv.member_id, term)
        finally:
            await srv.stop()
        caplog.clear()
        await transfer_before_stop(srv)  # a stopped member has no raft to transfer with
        assert caplog.text == ""

    asyncio.run(main())
