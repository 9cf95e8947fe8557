"""Snapshot transfer: a multi-MiB database file with its MsgSnap, in chunks."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import grpc

from petcd.peer import PeerConfig, channel_options, grpc_target
from petcd.proto.peerpb import peer_pb2 as peerpb
from petcd.proto.peerpb import peer_pb2_grpc as peer_grpc
from petcd.proto.raftpb import raft_pb2 as raftpb
from tests.harness import free_ports
from tests.peer.cluster import CLUSTER, Member, closing, connected, msg, run, start_members, until


def snap_msg(to: int, frm: int, index: int = 42) -> raftpb.Message:
    m = raftpb.Message(type=raftpb.MsgSnap, to=to, term=3)
    setattr(m, "from", frm)
    m.snapshot.data = b"membership"
    m.snapshot.metadata.index = index
    m.snapshot.metadata.term = 3
    m.snapshot.metadata.conf_state.voters.extend([1, 2])
    return m


def test_snapshot_arrives_intact_and_is_reported(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await start_members(tmp_path, 2)
        a.snapshot_payload = os.urandom(5 * 1024 * 1024 + 123)  # not a whole number of chunks
        want = hashlib.sha256(a.snapshot_payload).hexdigest()
        async with closing(a, b):
            await connected(a, b)
            a.transport.send([snap_msg(b.id, a.id)])
            await until(lambda: a.snapshot_reports == [(b.id, False)], timeout=10, what="report_snapshot")
            assert len(b.installed) == 1
            m, path, digest = b.installed[0]
            assert digest == want
            assert m.snapshot.data == b"membership" and m.snapshot.metadata.index == 42
            assert list(m.snapshot.metadata.conf_state.voters) == [1, 2]
            assert Path(path).parent == b.root / "snap-in" and Path(path).suffix == ".db"
            assert not list((b.root / "snap-in").glob("*.part"))
            # the copy handed to the transport is deleted once sent
            assert not Path(a.sources[0]).exists()
            assert a.transport.stats()[b.id].snapshots_sent == 1
            # messages keep flowing on the stream meanwhile
            assert a.transport.active_since(b.id) is not None

    run(body)


def test_failing_receiver_reports_snapshot_failed(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await start_members(tmp_path, 2)
        a.snapshot_payload = os.urandom(2 * 1024 * 1024)
        b.install_error = RuntimeError("disk full")
        async with closing(a, b):
            await connected(a, b)
            a.transport.send([snap_msg(b.id, a.id)])
            await until(lambda: a.snapshot_reports == [(b.id, True)], timeout=10, what="failed report")
            assert b.installed == []
            assert list((b.root / "snap-in").iterdir()) == []
            assert a.transport.stats()[b.id].snapshots_failed == 1
            # a later attempt succeeds once the receiver is fixed
            b.install_error = None
            a.transport.send([snap_msg(b.id, a.id, index=43)])
            await until(lambda: len(a.snapshot_reports) == 2, timeout=10, what="second report")
            assert a.snapshot_reports[1] == (b.id, False)
            assert b.installed[0][0].snapshot.metadata.index == 43

    run(body)


def test_snapshot_to_down_peer_fails(tmp_path: Path) -> None:
    async def body() -> None:
        ports = free_ports(2)
        a = Member(1, ports[0], tmp_path)
        a.transport.add_peer(2, [f"http://127.0.0.1:{ports[1]}"])
        a.snapshot_payload = b"x" * 1000
        await a.transport.start()
        async with closing(a):
            a.transport.send([snap_msg(2, a.id)])
            await until(lambda: a.snapshot_reports == [(2, True)], what="failed report")
            assert 2 in a.unreachable

    run(body)


def test_one_snapshot_in_flight_per_peer(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await start_members(tmp_path, 2)
        a.snapshot_payload = b"y" * 3000
        b.install_gate = asyncio.Event()
        async with closing(a, b):
            await connected(a, b)
            a.transport.send([snap_msg(b.id, a.id, index=50)])
            await until(lambda: len(a.sources) == 1, what="first transfer started")
            a.transport.send([snap_msg(b.id, a.id, index=51)])
            await asyncio.sleep(0.1)
            assert len(a.sources) == 1 and a.snapshot_reports == []
            b.install_gate.set()
            await until(lambda: a.snapshot_reports == [(b.id, False)], what="report")
            assert [m.snapshot.metadata.index for m, _, _ in b.installed] == [50]

    run(body)


def test_malformed_transfers_are_refused(tmp_path: Path) -> None:
    async def body() -> None:
        (b,) = await start_members(tmp_path, 1)

        async def send(chunks: list[peerpb.SnapshotChunk]) -> grpc.aio.AioRpcError:
            async with grpc.aio.insecure_channel(grpc_target(b.url), options=channel_options()) as ch:
                stub = peer_grpc.RaftTransportStub(ch)  # type: ignore[no-untyped-call]
                try:
                    await stub.SendSnapshot(iter(chunks), timeout=5)
                except grpc.aio.AioRpcError as exc:
                    return exc
            raise AssertionError("transfer accepted")

        def head(total: int, data: bytes) -> peerpb.SnapshotChunk:
            return peerpb.SnapshotChunk(
                cluster_id=CLUSTER,
                sender_id=7,
                receiver_id=b.id,
                message=snap_msg(b.id, 7),
                total_size=total,
                data=data,
            )

        async with closing(b):
            gap = await send(
                [
                    head(10, b"abcd"),
                    peerpb.SnapshotChunk(offset=6, data=b"efgh"),
                ]
            )
            assert gap.code() == grpc.StatusCode.DATA_LOSS and "offset 6" in (gap.details() or "")
            short = await send([head(10, b"abcd")])
            assert short.code() == grpc.StatusCode.DATA_LOSS and "4 of 10" in (short.details() or "")
            wrong = await send(
                [peerpb.SnapshotChunk(cluster_id=1, sender_id=7, receiver_id=b.id, message=snap_msg(b.id, 7))]
            )
            assert wrong.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert b.installed == []
            assert list((b.root / "snap-in").iterdir()) == []

    run(body)


def test_leftover_partial_files_are_removed_at_start(tmp_path: Path) -> None:
    async def body() -> None:
        m = Member(1, free_ports(1)[0], tmp_path)
        d = m.root / "snap-in"
        d.mkdir(parents=True)
        (d / "snap-1-2-from-3-xyz.part").write_bytes(b"half")
        (d / "keep.db").write_bytes(b"installed by the server")
        await m.transport.start()
        async with closing(m):
            assert sorted(p.name for p in d.iterdir()) == ["keep.db"]

    run(body)


def test_fits_a_server_with_the_client_api_message_limit(tmp_path: Path) -> None:
    # petcd's gRPC server on the peer URL caps requests at --max-request-bytes + 512 KiB (2 MiB by
    # default); raft messages up to that size and 1 MiB snapshot chunks must get through it
    limit = 1_572_864 + 512 * 1024
    cfg = PeerConfig(backoff_initial=0.02, backoff_max=0.2, max_batch_bytes=limit - 64 * 1024)

    async def body() -> None:
        a, b = await start_members(tmp_path, 2, config=cfg, server_max_receive=limit)
        a.snapshot_payload = os.urandom(3 * 1024 * 1024)
        async with closing(a, b):
            await connected(a, b)
            big = [msg(b.id, a.id, i, payload=os.urandom(1_572_864)) for i in range(1, 4)]
            small = [msg(b.id, a.id, i) for i in range(4, 200)]
            a.transport.send(big + small)
            await until(lambda: len(b.received) == 199, timeout=10, what="all messages")
            assert b.received_from(a.id) == list(range(1, 200))
            a.transport.send([snap_msg(b.id, a.id)])
            await until(lambda: a.snapshot_reports == [(b.id, False)], timeout=10, what="snapshot")
            assert b.installed[0][2] == hashlib.sha256(a.snapshot_payload).hexdigest()
            assert a.transport.stats()[b.id].stream_failures == 0

    run(body)
