"""Both ends of the LeaderForward service (see ``petcd.server.lease_forward``).

``LeaderClient`` is the follower's end: it calls the leader over the channel its raft stream
already uses. The leader's end, ``LeaderForwardServicer``, checks the request's cluster and
member ids like every peer request, asks the member's ``Forwarder`` and ends a refused call
with a status whose message starts with the domain error's class name, so the follower can
raise the same final error (lease or member not found, learner not ready or not a learner)
and try again on anything else.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import grpc

from petcd import errors
from petcd.proto.etcdserverpb import rpc_pb2 as pb
from petcd.proto.peerpb import peer_pb2 as peerpb
from petcd.proto.peerpb import peer_pb2_grpc as peer_grpc
from petcd.server.lease_forward import Forwarder, ForwardFailed

if TYPE_CHECKING:
    from petcd.peer.transport import PeerTransport
    from petcd.server.etcdserver import EtcdServer

log = logging.getLogger("petcd.peer")

# what the leader may answer that ends the follower's retries
_FINAL: dict[str, type[errors.PetcdError]] = {
    cls.__name__: cls
    for cls in (
        errors.LeaseNotFoundError,
        errors.LearnerNotReadyError,
        errors.MemberNotFoundError,
        errors.MemberNotLearnerError,
    )
}


def _status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    name = type(exc).__name__
    if name in _FINAL:
        return grpc.StatusCode.FAILED_PRECONDITION, f"{name}: {exc.__doc__ or name}"
    return grpc.StatusCode.UNAVAILABLE, f"{name}: {exc}"


def _raise_for(exc: grpc.aio.AioRpcError) -> None:
    text = exc.details() or ""
    if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
        final = _FINAL.get(text.split(":", 1)[0])
        if final is not None:
            raise final() from None
    raise ForwardFailed(f"{exc.code().name}: {text}") from None


class LeaderClient:
    """``petcd.server.lease_forward.LeaderCalls`` over this member's peer transport."""

    def __init__(self, transport: PeerTransport) -> None:
        self.transport = transport

    def _stub(self, leader: int) -> peer_grpc.LeaderForwardStub:
        channel = self.transport.channel_to(leader)
        if channel is None:
            raise ForwardFailed(f"no connection to leader {leader:x}")
        return peer_grpc.LeaderForwardStub(channel)  # type: ignore[no-untyped-call]

    def _ids(self, leader: int) -> dict[str, int]:
        t = self.transport
        return {"cluster_id": t.cluster_id, "sender_id": t.member_id, "receiver_id": leader}

    async def lease_renew(self, leader: int, lease_id: int, timeout: float) -> int:
        stub = self._stub(leader)
        try:
            resp: peerpb.ForwardLeaseRenewResponse = await stub.LeaseRenew(
                peerpb.ForwardLeaseRenewRequest(lease_id=lease_id, **self._ids(leader)), timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            _raise_for(exc)
            raise
        if resp.lease_id != lease_id:
            raise ForwardFailed("lease: renew id mismatch")
        return resp.ttl

    async def lease_time_to_live(
        self, leader: int, r: pb.LeaseTimeToLiveRequest, timeout: float
    ) -> pb.LeaseTimeToLiveResponse:
        stub = self._stub(leader)
        try:
            resp: peerpb.ForwardLeaseTimeToLiveResponse = await stub.LeaseTimeToLive(
                peerpb.ForwardLeaseTimeToLiveRequest(request=r, **self._ids(leader)), timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            _raise_for(exc)
            raise
        if resp.response.ID != r.ID:
            raise ForwardFailed("lease: time-to-live id mismatch")
        return resp.response

    async def member_promote(self, leader: int, member_id: int, timeout: float) -> list[pb.Member]:
        stub = self._stub(leader)
        try:
            resp: peerpb.ForwardMemberPromoteResponse = await stub.MemberPromote(
                peerpb.ForwardMemberPromoteRequest(member_id=member_id, **self._ids(leader)), timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            _raise_for(exc)
            raise
        return list(resp.members)


class LeaderForwardServicer(peer_grpc.LeaderForwardServicer):
    def __init__(self, transport: PeerTransport, forwarder: Forwarder) -> None:
        self.transport = transport
        self.forwarder = forwarder

    async def _check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        r = self.transport.check_request(request.cluster_id, request.sender_id, request.receiver_id)
        if r is not None:
            log.warning("refused forwarded request from %x: %s", request.sender_id, r.message)
            await context.abort(r.code, r.message)

    async def LeaseRenew(
        self, request: peerpb.ForwardLeaseRenewRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> peerpb.ForwardLeaseRenewResponse:
        await self._check(request, context)
        try:
            ttl = await self.forwarder.renew_as_leader(request.lease_id)
        except (errors.PetcdError, ForwardFailed) as exc:
            await context.abort(*_status(exc))
        return peerpb.ForwardLeaseRenewResponse(lease_id=request.lease_id, ttl=ttl)

    async def LeaseTimeToLive(
        self, request: peerpb.ForwardLeaseTimeToLiveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> peerpb.ForwardLeaseTimeToLiveResponse:
        await self._check(request, context)
        try:
            resp = await self.forwarder.time_to_live_as_leader(request.request)
        except (errors.PetcdError, ForwardFailed) as exc:
            await context.abort(*_status(exc))
        return peerpb.ForwardLeaseTimeToLiveResponse(response=resp)

    async def MemberPromote(
        self, request: peerpb.ForwardMemberPromoteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> peerpb.ForwardMemberPromoteResponse:
        await self._check(request, context)
        try:
            members = await self.forwarder.promote_as_leader(request.member_id)
        except (errors.PetcdError, ForwardFailed) as exc:
            await context.abort(*_status(exc))
        return peerpb.ForwardMemberPromoteResponse(members=members)


def add_forward_service(transport: PeerTransport, forwarder: Forwarder, server: grpc.aio.Server) -> None:
    """Serve LeaderForward on ``server`` (the gRPC server on the peer URL)."""
    servicer = LeaderForwardServicer(transport, forwarder)
    peer_grpc.add_LeaderForwardServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]


def leader_forwarding(server: EtcdServer, transport: PeerTransport) -> Forwarder:
    """The member's Forwarder, calling the leader through ``transport``."""
    return Forwarder(server, LeaderClient(transport))


__all__ = ["LeaderClient", "LeaderForwardServicer", "add_forward_service", "leader_forwarding"]
