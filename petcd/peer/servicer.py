"""The receiving side of RaftTransport, added to the member's gRPC server on the peer URL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from petcd.peer.snapshot import SnapshotTransferError, receive_snapshot
from petcd.peer.wire import ACCEPTED_KEY, Rejection
from petcd.proto.peerpb import peer_pb2 as peerpb
from petcd.proto.peerpb import peer_pb2_grpc as peer_grpc

if TYPE_CHECKING:
    from petcd.peer.transport import PeerTransport

log = logging.getLogger("petcd.peer")

SendContext = grpc.aio.ServicerContext[peerpb.MessageBatch, peerpb.SendAck]
SnapshotContext = grpc.aio.ServicerContext[peerpb.SnapshotChunk, peerpb.SnapshotAck]
ProbeContext = grpc.aio.ServicerContext[peerpb.ProbeRequest, peerpb.ProbeResponse]


class RaftTransportServicer(peer_grpc.RaftTransportServicer):
    def __init__(self, transport: PeerTransport) -> None:
        self.transport = transport

    async def _refuse(self, context: grpc.aio.ServicerContext[Any, Any], r: Rejection, what: str) -> None:
        log.warning("refused %s: %s", what, r.message)
        await context.abort(r.code, r.message)

    async def Send(
        self, request_iterator: AsyncIterator[peerpb.MessageBatch], context: SendContext
    ) -> peerpb.SendAck:
        t = self.transport
        received = 0
        accepted = False
        sender = 0
        try:
            async for batch in request_iterator:
                r = t.check_request(batch.cluster_id, batch.sender_id, batch.receiver_id)
                if r is not None:
                    await self._refuse(context, r, f"message stream from {batch.sender_id:x}")
                if not accepted:
                    # tells the sender its stream is live (see petcd.peer.link)
                    await context.send_initial_metadata(((ACCEPTED_KEY, f"{t.member_id:x}"),))
                    accepted = True
                    sender = batch.sender_id
                    t.inbound_opened(sender)
                if batch.messages:
                    msgs = list(batch.messages)
                    received += len(msgs)
                    t.deliver(sender, msgs)
        finally:
            if accepted:
                t.inbound_closed(sender)
        return peerpb.SendAck(received=received)

    async def SendSnapshot(
        self, request_iterator: AsyncIterator[peerpb.SnapshotChunk], context: SnapshotContext
    ) -> peerpb.SnapshotAck:
        t = self.transport
        it = aiter(request_iterator)
        first = await anext(it, None)
        if first is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty snapshot stream")
            raise AssertionError("unreachable")  # abort raises
        r = t.check_request(first.cluster_id, first.sender_id, first.receiver_id)
        if r is not None:
            await self._refuse(context, r, f"snapshot from {first.sender_id:x}")
        index = first.message.snapshot.metadata.index
        log.info(
            "receiving snapshot at index %d (%d bytes) from %x", index, first.total_size, first.sender_id
        )
        try:
            msg, path = await receive_snapshot(first, it, t.snapshot_dir)
        except SnapshotTransferError as exc:
            log.warning("snapshot from %x failed: %s", first.sender_id, exc)
            await context.abort(exc.code, str(exc))
            raise AssertionError("unreachable") from exc
        try:
            await t.install_snapshot(msg, path)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("installing snapshot at index %d from %x failed", index, first.sender_id)
            await asyncio.to_thread(path.unlink, True)
            await context.abort(
                grpc.StatusCode.INTERNAL, f"installing snapshot at index {index} failed: {exc}"
            )
        return peerpb.SnapshotAck(received_bytes=first.total_size)

    async def Probe(self, request: peerpb.ProbeRequest, context: ProbeContext) -> peerpb.ProbeResponse:
        t = self.transport
        # zero ids ask "who are you": a member joining by URL may not know them yet
        r = t.check_request(
            request.cluster_id or t.cluster_id, request.sender_id, request.receiver_id or t.member_id
        )
        if r is not None:
            await self._refuse(context, r, f"probe from {request.sender_id:x}")
        if request.sender_id:
            t.peer_alive(request.sender_id)
        return peerpb.ProbeResponse(
            cluster_id=t.cluster_id,
            member_id=t.member_id,
            server_version=t.server_version,
            cluster_version=t.cluster_version(),
        )


def add_to_server(transport: PeerTransport, server: grpc.aio.Server) -> RaftTransportServicer:
    """Serve ``transport``'s RaftTransport on ``server`` (the gRPC server on the peer URL)."""
    servicer = RaftTransportServicer(transport)
    peer_grpc.add_RaftTransportServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    return servicer
