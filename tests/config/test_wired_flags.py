"""Wired flags change what the member does, shown on an in-process member built from flags."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from petcd import errors
from petcd.clock import LoopClock
from petcd.config import settings_from_flags
from petcd.frontend.process import server_options
from petcd.frontend.supervisor import Keepalive
from petcd.peer.member import build as build_member
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.server.cluster import member_add, member_remove
from petcd.server.etcdserver import EtcdServer
from tests.harness.waiting import until

PEER = "http://127.0.0.1:2380"


def run(tmp_path: Path, flags: list[str], body: Callable[[EtcdServer], Awaitable[None]],
        wait_leader: bool = True) -> None:
    async def main() -> None:
        settings = settings_from_flags([
            "--name=m1", f"--data-dir={tmp_path / 'data'}", f"--initial-advertise-peer-urls={PEER}", *flags])
        srv = (await build_member(settings, LoopClock())).server
        await srv.start()
        try:
            if wait_leader:
                await until(lambda: srv.leader != 0, "a leader")
            await body(srv)
        finally:
            await srv.stop()

    asyncio.run(main())


@pytest.mark.parametrize("pre_vote", [True, False])
def test_pre_vote_reaches_raft(tmp_path: Path, pre_vote: bool) -> None:
    async def body(srv: EtcdServer) -> None:
        assert srv.raft._node.raft.pre_vote is pre_vote  # raft's own config, read in place

    run(tmp_path, [f"--pre-vote={str(pre_vote).lower()}"], body)


def test_unsafe_no_fsync_skips_wal_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls["n"] += 1
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)

    async def body(srv: EtcdServer) -> None:
        before = calls["n"]
        for i in range(5):
            await srv.put(pb.PutRequest(key=b"k%d" % i, value=b"v"))
        assert calls["n"] == before == 0

    run(tmp_path, ["--unsafe-no-fsync"], body)
    # and without the flag the same puts are fsynced
    calls["n"] = 0
    run(tmp_path / "safe", [], body=_puts_are_synced(calls))


def _puts_are_synced(calls: dict[str, int]) -> Callable[[EtcdServer], Awaitable[None]]:
    async def body(srv: EtcdServer) -> None:
        before = calls["n"]
        await srv.put(pb.PutRequest(key=b"k", value=b"v"))
        assert calls["n"] > before

    return body


@pytest.mark.parametrize("limit, commits_expected", [(3, True), (0, False)])
def test_backend_batch_limit_commits_full_batches(tmp_path: Path, limit: int, commits_expected: bool) -> None:
    async def body(srv: EtcdServer) -> None:
        assert srv.backend is not None
        before = srv.backend.commits
        for i in range(8):
            await srv.put(pb.PutRequest(key=b"k%d" % i, value=b"v"))
        # the batch interval is an hour: only the limit can have committed
        assert (srv.backend.commits > before) is commits_expected

    run(tmp_path, ["--backend-batch-interval=1h", f"--backend-batch-limit={limit}"], body)


@pytest.mark.parametrize("max_learners", [1, 2])
def test_max_learners(tmp_path: Path, max_learners: int) -> None:
    async def body(srv: EtcdServer) -> None:
        await member_add(srv, pb.MemberAddRequest(peerURLs=["http://127.0.0.1:1"], isLearner=True))
        second = pb.MemberAddRequest(peerURLs=["http://127.0.0.1:2"], isLearner=True)
        if max_learners == 1:
            with pytest.raises(errors.TooManyLearnersError):
                await member_add(srv, second)
        else:
            await member_add(srv, second)

    run(tmp_path, [f"--experimental-max-learners={max_learners}"], body)


@pytest.mark.parametrize("advance", [True, False])
def test_initial_election_tick_advance(tmp_path: Path, advance: bool) -> None:
    others = "m2=http://127.0.0.1:3,m3=http://127.0.0.1:4"

    async def body(srv: EtcdServer) -> None:
        elapsed = srv.raft._node.raft.election_elapsed  # raft's own counter, read in place
        # 10 election ticks; advancing skips 8 of them so the first election comes sooner
        assert elapsed >= 8 if advance else elapsed <= 1

    run(tmp_path, [f"--initial-cluster=m1={PEER},{others}", "--heartbeat-interval=1000",
                   "--election-timeout=10000", f"--initial-election-tick-advance={str(advance).lower()}"],
        body, wait_leader=False)


def test_lease_checkpoint_flag_reaches_the_lessor(tmp_path: Path) -> None:
    async def body(srv: EtcdServer) -> None:
        assert srv.lessor.checkpointing

    run(tmp_path, ["--experimental-enable-lease-checkpoint"], body)


def test_grpc_server_options_follow_keepalive_flags() -> None:
    s = settings_from_flags(["--grpc-keepalive-min-time=7s", "--grpc-keepalive-interval=1m",
                             "--grpc-keepalive-timeout=3s", "--max-concurrent-streams=9"])
    opts = dict(server_options(1, s.max_concurrent_streams, False, Keepalive(
        s.grpc_keepalive_min_time, s.grpc_keepalive_interval, s.grpc_keepalive_timeout)))
    assert opts["grpc.http2.min_ping_interval_without_data_ms"] == 7000
    assert opts["grpc.keepalive_time_ms"] == 60000 and opts["grpc.keepalive_timeout_ms"] == 3000
    assert opts["grpc.max_concurrent_streams"] == 9
    # etcd's default (MaxUint32) does not fit gRPC's C int: the largest one does
    assert settings_from_flags([]).max_concurrent_streams == 2**31 - 1
    # as etcd, an interval or timeout of 0 leaves gRPC's own server pings alone
    zero = dict(server_options(1, 1, False, Keepalive(5.0, 0.0, 20.0)))
    assert "grpc.keepalive_time_ms" not in zero


@pytest.mark.parametrize("strict", [True, False])
def test_strict_reconfig_check(tmp_path: Path, strict: bool) -> None:
    """A lone member removing itself leaves no quorum: etcd's strict check refuses that up front;
    without it the change is proposed and only raft's own rule (never remove every voter) stops it."""

    async def body(srv: EtcdServer) -> None:
        with pytest.raises(errors.PetcdError) as info:
            await member_remove(srv, pb.MemberRemoveRequest(ID=srv.member_id))
        if strict:
            assert isinstance(info.value, errors.MemberNotEnoughStartedError)
        else:
            assert isinstance(info.value, errors.ConfChangeRejectedError)
            assert "would remove all voters" in str(info.value)

    run(tmp_path, [f"--strict-reconfig-check={str(strict).lower()}"], body)
