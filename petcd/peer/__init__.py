"""Member-to-member raft transport: batched message streams and chunked snapshots over gRPC."""

from petcd.peer.config import PeerConfig, PeerStats
from petcd.peer.dial import PeerDialer, PeerTLS
from petcd.peer.forward import LeaderClient, add_forward_service, leader_forwarding
from petcd.peer.servicer import RaftTransportServicer, add_to_server
from petcd.peer.transport import PeerTransport, ProbeResult
from petcd.peer.wire import MAX_MESSAGE_BYTES, channel_options, grpc_target, server_options

__all__ = [
    "MAX_MESSAGE_BYTES",
    "LeaderClient",
    "PeerConfig",
    "PeerDialer",
    "PeerStats",
    "PeerTLS",
    "PeerTransport",
    "ProbeResult",
    "RaftTransportServicer",
    "add_forward_service",
    "add_to_server",
    "channel_options",
    "grpc_target",
    "leader_forwarding",
    "server_options",
]
