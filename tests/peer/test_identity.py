"""Requests meant for another cluster or member, and from removed members, are refused with
the codes and texts peer.proto promises."""

from __future__ import annotations

from pathlib import Path

import grpc

from petcd.peer import channel_options, grpc_target
from petcd.proto.peerpb import peer_pb2 as peerpb
from petcd.proto.peerpb import peer_pb2_grpc as peer_grpc
from tests.harness import free_ports
from tests.peer.cluster import CLUSTER, Member, closing, connected, msg, run, start_members, until


async def raw_send(url: str, cluster_id: int, sender_id: int, receiver_id: int) -> grpc.aio.AioRpcError:
    """Open a Send stream by hand with the given header; return the error it ends with."""
    async with grpc.aio.insecure_channel(grpc_target(url), options=channel_options()) as ch:
        stub = peer_grpc.RaftTransportStub(ch)  # type: ignore[no-untyped-call]
        batch = peerpb.MessageBatch(
            cluster_id=cluster_id,
            sender_id=sender_id,
            receiver_id=receiver_id,
            messages=[msg(receiver_id, sender_id, 1)],
        )
        try:
            await stub.Send(iter([batch]), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc
    raise AssertionError("stream was accepted")


def test_wrong_cluster_and_wrong_receiver_are_failed_precondition(tmp_path: Path) -> None:
    async def body() -> None:
        (b,) = await start_members(tmp_path, 1)
        async with closing(b):
            exc = await raw_send(b.url, 0xD1FF, 0x5, b.id)
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
            text = exc.details() or ""
            assert "cluster ID mismatch" in text and "d1ff" in text and f"{CLUSTER:x}" in text, text

            exc = await raw_send(b.url, CLUSTER, 0x5, 0xABC)
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
            text = exc.details() or ""
            assert "member ID mismatch" in text and "abc" in text and f"member {b.id:x}" in text, text
            assert b.received == []

    run(body)


def test_transport_of_another_cluster_never_gets_through(tmp_path: Path) -> None:
    async def body() -> None:
        ports = free_ports(2)
        a = Member(1, ports[0], tmp_path, cluster_id=0xD1FF)
        b = Member(2, ports[1], tmp_path)
        a.transport.add_peer(b.id, [b.url])
        await b.serve()
        await b.transport.start()
        await a.transport.start()
        async with closing(a, b):
            a.transport.send([msg(b.id, a.id, 1)])
            await until(lambda: b.id in a.unreachable, what="report_unreachable")
            assert a.transport.active_since(b.id) is None
            assert b.received == []

    run(body)


def test_removed_member_is_permission_denied(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await start_members(tmp_path, 2)
        async with closing(a, b):
            await connected(a, b)
            a.transport.send([msg(b.id, a.id, 1)])
            await until(lambda: b.received_from(a.id) == [1], what="first message")
            b.transport.remove_peer(a.id)
            assert b.transport.is_removed(a.id)
            # the open stream is cut at the next batch; a's transport learns it was removed
            a.transport.send([msg(b.id, a.id, 2)])
            await until(lambda: len(a.removed_by) > 0, what="on_removed")
            assert a.removed_by[0] == b.id
            assert b.received_from(a.id) == [1]
            exc = await raw_send(b.url, CLUSTER, a.id, b.id)
            assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
            assert f"member {a.id:x} has been permanently removed" in (exc.details() or "")
            # b stopped talking to a, and a removed id cannot be added back by a replayed conf change
            assert a.id not in b.transport.peers()
            assert not b.transport.add_peer(a.id, [a.url])

    run(body)
