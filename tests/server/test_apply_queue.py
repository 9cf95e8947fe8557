"""The raft driver never waits for the backend (petcd/server/applyqueue.py).

Three whole members on one ManualClock, joined by the simulator's in-process network
(tests/sim/net.py, here without faults; the gRPC transport cannot run on virtual time): while the leader's backend is write-blocked by a real defrag, its
raft driver goes on ticking, sending heartbeats and replicating, so nobody elects; the leader's
own applies wait in the apply queue and catch up, in order, once the defrag ends. Also: a failed
apply stops the member as a failed fsync does, and the queue's own contract.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from petcd import errors
from petcd.clock import ManualClock
from petcd.config import settings_from_flags
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.raftpb import raft_pb2 as raftpb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.raft import Ready, StateType
from petcd.server import maintenance
from petcd.server.apply import Applier, ApplierStep
from petcd.server.applyqueue import ApplyQueue
from petcd.server.bootstrap import Member
from petcd.server.etcdserver import EtcdServer
from petcd.server.member import build_member
from tests.sim.net import NetParams, SimNet

CLUSTER_ID = 0xC4
IDS = (0x1A, 0x2B, 0x3C)
HEARTBEAT_S = 0.1
ELECTION_S = 2.0


async def _no_discovery(urls: list[str], members: list[Member]) -> tuple[int, int, list[Member]]:
    raise AssertionError("a new cluster asks nobody")


def quiet_net(clock: ManualClock) -> SimNet:
    net = SimNet(clock, random.Random(0), NetParams(delay_min=0.0, delay_max=0.0), lambda event: None)
    net.keep_log = True
    return net


async def start_cluster(tmp_path: Path, clock: ManualClock, net: SimNet) -> list[EtcdServer]:
    members = [Member(i, f"m{n}", [f"http://127.0.0.1:{23800 + n}"]) for n, i in enumerate(IDS)]
    servers = []
    for n, m in enumerate(members):
        s = settings_from_flags(
            [f"--name={m.name}", f"--data-dir={tmp_path / m.name}", "--quota-backend-bytes=1073741824",
             f"--heartbeat-interval={int(HEARTBEAT_S * 1000)}", f"--election-timeout={int(ELECTION_S * 1000)}",
             "--unsafe-no-fsync"],
            member_id=m.id, cluster_id=CLUSTER_ID, initial_members=members,
            initial_advertise_peer_urls=m.peer_urls,
        )
        servers.append(await build_member(s, clock, net.transport(), _no_discovery, random.Random(n)))
    for srv in servers:
        await srv.start()
    return servers


async def advance_until(clock: ManualClock, cond: Callable[[], bool], what: str, limit: float) -> None:
    """Move virtual time in small steps, letting the loop (and the I/O threads) run between them:
    4 virtual seconds per real one, so an election timeout is half a real second of slack."""
    start = clock.now()
    while not cond():
        assert clock.now() - start < limit, f"{what}: not after {limit} virtual seconds"
        clock.advance(0.02)
        await asyncio.sleep(0.005)


async def advance_for(clock: ManualClock, seconds: float) -> None:
    end = clock.now() + seconds
    await advance_until(clock, lambda: clock.now() >= end, "time to pass", seconds + 1)


def the_leader(servers: list[EtcdServer]) -> EtcdServer | None:
    leaders = [s for s in servers if s.role == StateType.LEADER]
    if len(leaders) != 1 or any(s.leader != leaders[0].member_id for s in servers):
        return None
    return leaders[0]


def test_the_leader_keeps_sending_heartbeats_while_its_backend_is_write_blocked(tmp_path: Path) -> None:
    async def main() -> None:
        clock = ManualClock()
        net = quiet_net(clock)
        servers = await start_cluster(tmp_path, clock, net)
        try:
            await advance_until(clock, lambda: the_leader(servers) is not None, "a leader", 30)
            leader = the_leader(servers)
            assert leader is not None
            follower = next(s for s in servers if s is not leader)
            await leader.put(pb.PutRequest(key=b"before", value=b"1"))
            await advance_until(clock, lambda: all(s.applied_index == leader.applied_index for s in servers),
                                "every member applied the first put", 10)
            term = leader.term
            terms = [s.term for s in servers]

            # a real defrag, held before its file swap by an external reader of the file (as a
            # snapshot export would): the leader's backend refuses new batches until it leaves
            reader = leader.backend.external_reader()
            reader.__enter__()
            try:
                defrag = asyncio.ensure_future(maintenance.defragment(leader))
                await advance_until(clock, lambda: leader.backend.write_blocked, "the defrag to block writes", 10)
                blocked_at = clock.now()
                applied = leader.applied_index
                at_leader = asyncio.ensure_future(leader.put(pb.PutRequest(key=b"via-leader", value=b"2")))
                at_follower = asyncio.ensure_future(follower.put(pb.PutRequest(key=b"via-follower", value=b"3")))
                # three election timeouts, and more than the longest randomized one
                await advance_for(clock, 3 * ELECTION_S)
                assert leader.backend.write_blocked and not defrag.done()

                beats = net.count(raftpb.MsgHeartbeat, leader.member_id, blocked_at)
                wanted = int(3 * ELECTION_S / HEARTBEAT_S) // 2
                assert all(beats.get(s.member_id, 0) >= wanted for s in servers if s is not leader), beats
                assert [s.term for s in servers] == terms
                assert the_leader(servers) is leader and leader.term == term
                # replication went on: the follower applied both puts and answered its own ...
                assert at_follower.done() and at_follower.exception() is None
                assert follower.applied_index >= leader.committed_index > applied
                # ... while the leader's applies wait in its queue
                assert not at_leader.done() and leader.applied_index == applied
            finally:
                reader.__exit__(None, None, None)
            await advance_until(clock, lambda: defrag.done() and at_leader.done(), "the leader to catch up", 10)
            defrag.result()
            at_leader.result()
            assert leader.term == term
            for key, value in ((b"before", b"1"), (b"via-leader", b"2"), (b"via-follower", b"3")):
                kvs = leader.store.range(key, b"").kvs
                assert [kv.value for kv in kvs] == [value]
            got = await leader.range(pb.RangeRequest(key=b"via-follower"))
            assert [kv.value for kv in got.kvs] == [b"3"]
        finally:
            for srv in servers:
                await srv.stop()

    asyncio.run(main())


class _FailOn:
    """An apply step whose disk 'fails' on one key (as an I/O error in the backend would)."""

    def __init__(self, nxt: Applier) -> None:
        self._next = nxt

    def apply(self, req: serverpb.InternalRequest, index: int) -> Any:
        if req.WhichOneof("request") == "put" and req.put.key == b"boom":
            raise OSError(5, "Input/output error")
        return self._next.apply(req, index)


def test_a_failed_apply_stops_the_member(tmp_path: Path) -> None:
    async def main() -> None:
        clock = ManualClock()
        net = quiet_net(clock)
        s = settings_from_flags(
            ["--name=m1", f"--data-dir={tmp_path / 'm1'}", "--unsafe-no-fsync"],
            member_id=IDS[0], cluster_id=CLUSTER_ID, initial_members=[Member(IDS[0], "m1", ["http://127.0.0.1:2380"])],
        )
        steps: list[ApplierStep] = [_FailOn]
        srv = await build_member(s, clock, net.transport(), _no_discovery, random.Random(1), steps)
        await srv.start()
        try:
            await advance_until(clock, lambda: srv.role == StateType.LEADER, "the member to lead", 30)
            await srv.put(pb.PutRequest(key=b"fine", value=b"1"))
            put = asyncio.ensure_future(srv.put(pb.PutRequest(key=b"boom", value=b"2")))
            await advance_until(clock, lambda: srv.stopped.is_set(), "the member to stop", 10)
            assert isinstance(srv.fatal, OSError)
            with pytest.raises(errors.StoppedError):
                await put
            # nothing is read after a fatal error: the index may be ahead of the backend
            for serializable in (True, False):
                with pytest.raises(errors.StoppedError):
                    await srv.range(pb.RangeRequest(key=b"fine", serializable=serializable))
        finally:
            await srv.stop()

    asyncio.run(main())


def _ready(*indexes: int) -> Ready:
    return Ready(committed_entries=[raftpb.Entry(index=i, term=1) for i in indexes])


def test_the_queue_applies_in_order_and_drains() -> None:
    async def main() -> None:
        applied: list[int] = []
        gate = asyncio.Event()

        async def apply(rd: Ready) -> None:
            await gate.wait()
            applied.extend(e.index for e in rd.committed_entries)

        failures: list[BaseException] = []
        q = ApplyQueue(apply, failures.append)
        worker = asyncio.ensure_future(q.run())
        assert q.idle
        for rd in (_ready(1, 2), _ready(3), _ready(4, 5)):
            q.push(rd)
        drained = asyncio.ensure_future(q.drained())
        await asyncio.sleep(0.01)
        assert not q.idle and not drained.done() and applied == []
        gate.set()
        await asyncio.wait_for(drained, 1)
        assert applied == [1, 2, 3, 4, 5] and q.idle and len(q) == 0
        q.push(_ready(6))
        assert not q.idle
        await asyncio.wait_for(q.drained(), 1)
        assert applied == [1, 2, 3, 4, 5, 6] and failures == []
        worker.cancel()

    asyncio.run(main())


def test_a_failed_apply_closes_the_queue_and_is_reported_once() -> None:
    async def main() -> None:
        applied: list[int] = []

        async def apply(rd: Ready) -> None:
            if any(e.index == 2 for e in rd.committed_entries):
                raise RuntimeError("apply failed")
            applied.extend(e.index for e in rd.committed_entries)

        failures: list[BaseException] = []
        q = ApplyQueue(apply, failures.append)
        for rd in (_ready(1), _ready(2), _ready(3)):
            q.push(rd)
        await asyncio.wait_for(q.run(), 1)  # returns after the failure
        assert applied == [1] and [str(f) for f in failures] == ["apply failed"]
        await asyncio.wait_for(q.drained(), 1)  # nobody waits forever on a dead queue
        q.push(_ready(4))
        assert q.idle and len(q) == 0 and applied == [1]

    asyncio.run(main())
