"""The apply chain on an in-process single-member EtcdServer: the consistent index and term are
recorded for every entry, applied or refused, and survive a restart; the quota applier refuses
what adds data while NOSPACE is raised and lets the rest through, the front door refuses what
does not fit and raises the alarm; an unknown request kind is refused by the dispatch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from petcd import errors
from petcd.clock import LoopClock
from petcd.config import settings_from_flags
from petcd.config.settings import ServerSettings
from petcd.peer.member import build as build_member
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.serverpb import internal_pb2 as serverpb
from petcd.server.apply import ALARM_NOSPACE, Applier, BackendApplier, build_chain
from petcd.server.bootstrap import Member
from petcd.server.etcdserver import EtcdServer
from petcd.server.state import StateCell
from tests.harness.waiting import until

MEMBER_ID = 0xA991


def settings(tmp_path: Path, quota: int = 1073741824) -> ServerSettings:
    return settings_from_flags(
        ["--name=m1", f"--data-dir={tmp_path / 'data'}", f"--quota-backend-bytes={quota}"],
        member_id=MEMBER_ID,
        cluster_id=0xC3,
        initial_members=[Member(MEMBER_ID, "m1", ["http://127.0.0.1:2380"])],
    )


def run(tmp_path: Path, body: Callable[[EtcdServer], Awaitable[None]], quota: int = 1073741824) -> None:
    async def main() -> None:
        srv = (await build_member(settings(tmp_path, quota), LoopClock())).server
        await srv.start()
        try:
            await until(lambda: srv.lessor.is_primary, "the member to lead")
            await body(srv)
        finally:
            await srv.stop()

    asyncio.run(main())


def recorded(srv: EtcdServer) -> tuple[int, int]:
    return srv.store.consistent_index, srv.store.term


def test_every_entry_records_its_index_and_term_once_applied_or_refused(tmp_path: Path) -> None:
    seen: list[int] = []

    async def body(srv: EtcdServer) -> None:
        async def check(call: Awaitable[object], refused: type[BaseException] | None = None) -> None:
            before = srv.applied_index
            if refused is None:
                await call
            else:
                with pytest.raises(refused):
                    await call
            assert srv.applied_index > before
            assert recorded(srv) == (srv.applied_index, srv.term)
            seen.append(srv.applied_index)

        await check(srv.put(pb.PutRequest(key=b"a", value=b"1")))
        # refused in the apply (a lease that does not exist): the index still moves
        await check(srv.put(pb.PutRequest(key=b"b", value=b"1", lease=12345)), errors.LeaseNotFoundError)
        await check(srv.txn(pb.TxnRequest(success=[pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=b"a"))])))
        await check(srv.propose(serverpb.InternalRequest(lease_grant=pb.LeaseGrantRequest(ID=7, TTL=60))))
        await check(
            srv.propose(serverpb.InternalRequest(lease_revoke=pb.LeaseRevokeRequest(ID=8))), errors.LeaseNotFoundError
        )
        await check(srv.compact(pb.CompactionRequest(revision=srv.store.rev)))
        await check(srv.compact(pb.CompactionRequest(revision=1)), errors.CompactedError)
        await check(srv.propose(serverpb.InternalRequest(alarm=pb.AlarmRequest(action=pb.AlarmRequest.GET))))
        srv.backend.force_commit()

    run(tmp_path, body)
    assert seen == sorted(set(seen))

    async def reopen() -> None:
        # what the backend holds after a restart is the last recorded entry, before any replay
        srv = (await build_member(settings(tmp_path), LoopClock())).server
        try:
            assert srv.store.consistent_index >= seen[-1] and srv.store.term >= 1
        finally:
            srv.backend.close()
            srv.raft.close()

    asyncio.run(reopen())


def test_quota_applier_refuses_additions_while_nospace_is_raised(tmp_path: Path) -> None:
    async def body(srv: EtcdServer) -> None:
        await srv.put(pb.PutRequest(key=b"k", value=b"v"))
        await srv.propose(
            serverpb.InternalRequest(
                alarm=pb.AlarmRequest(action=pb.AlarmRequest.ACTIVATE, memberID=MEMBER_ID, alarm=ALARM_NOSPACE)
            )
        )
        assert list(srv.alarms.values()) == [ALARM_NOSPACE]
        put = pb.PutRequest(key=b"k2", value=b"v")
        # proposed directly: the chain refuses it on apply, not only the front door
        for req in (
            serverpb.InternalRequest(put=put),
            serverpb.InternalRequest(txn=pb.TxnRequest(success=[pb.RequestOp(request_put=put)])),
            serverpb.InternalRequest(lease_grant=pb.LeaseGrantRequest(ID=9, TTL=60)),
        ):
            with pytest.raises(errors.NoSpaceError):
                await srv.propose(req)
            assert recorded(srv)[0] == srv.applied_index
        # what frees space goes through
        resp = await srv.propose(serverpb.InternalRequest(delete_range=pb.DeleteRangeRequest(key=b"k")))
        assert resp.deleted == 1
        await srv.propose(
            serverpb.InternalRequest(
                alarm=pb.AlarmRequest(action=pb.AlarmRequest.DEACTIVATE, memberID=MEMBER_ID, alarm=ALARM_NOSPACE)
            )
        )
        await srv.put(put)
        assert srv.store.range(b"k2", b"").kvs[0].value == b"v"

    run(tmp_path, body)


def test_the_front_door_weighs_the_size_and_the_chain_the_alarm(tmp_path: Path) -> None:
    """As etcd 3.5: a put that would take the database to the quota raises this member's NOSPACE
    alarm, applied before the put is refused; with the alarm raised but room in the database a put
    goes through raft and the chain refuses it there, in log order (so a member that has not
    applied a disarm yet does not refuse a put that follows it); raising a raised alarm answers it
    as raised."""
    nospace = pb.AlarmMember(memberID=MEMBER_ID, alarm=ALARM_NOSPACE)

    async def body(srv: EtcdServer) -> None:
        room = srv.settings.quota_backend_bytes - srv.db_size_in_use
        with pytest.raises(errors.NoSpaceError):
            await srv.put(pb.PutRequest(key=b"big", value=b"x" * room))
        assert srv.alarms == {(MEMBER_ID, ALARM_NOSPACE): ALARM_NOSPACE}
        before = srv.applied_index
        with pytest.raises(errors.NoSpaceError):
            await srv.put(pb.PutRequest(key=b"small", value=b"v"))
        assert srv.applied_index > before  # refused on apply, not at the door
        again = await srv.propose(serverpb.InternalRequest(
            alarm=pb.AlarmRequest(action=pb.AlarmRequest.ACTIVATE, memberID=MEMBER_ID, alarm=ALARM_NOSPACE)))
        assert list(again.alarms) == [nospace]
        off = await srv.propose(serverpb.InternalRequest(
            alarm=pb.AlarmRequest(action=pb.AlarmRequest.DEACTIVATE, memberID=MEMBER_ID, alarm=ALARM_NOSPACE)))
        assert list(off.alarms) == [nospace] and not srv.alarms
        await srv.put(pb.PutRequest(key=b"small", value=b"v"))
        assert srv.store.range(b"small", b"").kvs[0].value == b"v"

    run(tmp_path, body, quota=1024 * 1024)


def test_dispatch_refuses_an_unknown_request_kind(tmp_path: Path) -> None:
    async def body(srv: EtcdServer) -> None:
        dispatch = BackendApplier(StateCell(srv.state))  # the chain's last step on its own
        del dispatch.handlers["compaction"]
        with pytest.raises(errors.UnsupportedRequestError, match="unsupported request compaction"):
            dispatch.apply(serverpb.InternalRequest(compaction=pb.CompactionRequest(revision=1)), 1)

    run(tmp_path, body)


def test_a_step_runs_between_the_quota_check_and_the_dispatch(tmp_path: Path) -> None:
    async def body(srv: EtcdServer) -> None:
        seen: list[str | None] = []

        class Recorder:
            def __init__(self, nxt: Applier) -> None:
                self.nxt = nxt

            def apply(self, req: serverpb.InternalRequest, index: int) -> object:
                seen.append(req.WhichOneof("request"))
                if req.HasField("delete_range"):
                    raise errors.PermissionDeniedError()
                return self.nxt.apply(req, index)

        cell = StateCell(srv.state)
        chain = build_chain(cell, [Recorder])
        resp = chain.apply(serverpb.InternalRequest(put=pb.PutRequest(key=b"s", value=b"1")), srv.applied_index + 1)
        assert isinstance(resp, pb.PutResponse) and srv.store.range(b"s", b"").kvs[0].value == b"1"
        with pytest.raises(errors.PermissionDeniedError):
            chain.apply(serverpb.InternalRequest(delete_range=pb.DeleteRangeRequest(key=b"s")), srv.applied_index + 2)
        assert srv.store.range(b"s", b"").kvs  # refused before the dispatch
        srv.alarms[(MEMBER_ID, ALARM_NOSPACE)] = ALARM_NOSPACE
        with pytest.raises(errors.NoSpaceError):
            chain.apply(serverpb.InternalRequest(put=pb.PutRequest(key=b"t", value=b"1")), srv.applied_index + 3)
        del srv.alarms[(MEMBER_ID, ALARM_NOSPACE)]
        assert seen == ["put", "delete_range"]  # the quota applier refused the last one first

    run(tmp_path, body)
