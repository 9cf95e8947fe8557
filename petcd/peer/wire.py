"""Facts of the peer wire shared by both ends: addresses, channel options, identity checks."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import grpc

# Batches and snapshot chunks travel in single gRPC messages; the channel allows far more than
# either ever needs so the limit that bites is the receiving server's.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Initial-metadata key the receiver sends once it has accepted a stream's identity; the
# sender counts the peer as active only from then on (a TCP connect alone proves nothing).
ACCEPTED_KEY = "petcd-peer-accepted"


def grpc_target(url: str) -> str:
    """The gRPC target for a peer URL: ``http(s)://host:port`` -> ``host:port``.

    ``unix://path`` is accepted for tests and local setups. Whether the channel is TLS is
    ``petcd.peer.dial``'s business.
    """
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        if not parts.netloc or parts.port is None:
            raise ValueError(f"peer URL {url!r} needs host:port")
        return parts.netloc
    if parts.scheme in ("unix", "unixs"):
        return f"unix:{parts.netloc}{parts.path}"
    raise ValueError(f"peer URL {url!r}: scheme must be http or https")


def channel_options(
    keepalive_seconds: float = 10.0,
    keepalive_timeout_seconds: float = 5.0,
    max_reconnect_backoff_seconds: float = 1.0,
) -> list[tuple[str, int]]:
    """Client channel options for a peer connection.

    The keepalive interval must stay above the server's minimum ping interval (5 s in
    ``petcd.server.main``) or the server answers with GOAWAY. gRPC's own reconnect backoff is
    capped low because the stream loop has its own; a long channel backoff would keep failing
    calls fast long after the peer is back.
    """
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", int(keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive_timeout_seconds * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", 50),
        ("grpc.min_reconnect_backoff_ms", 50),
        ("grpc.max_reconnect_backoff_ms", int(max_reconnect_backoff_seconds * 1000)),
        # a channel of its own connection: one made to redial a peer that came back must not
        # share the old channel's connection, which may be waiting out its reconnect backoff
        ("grpc.use_local_subchannel_pool", 1),
    ]


def server_options(max_receive_bytes: int = MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """Server options a member's gRPC server needs to carry RaftTransport.

    ``max_receive_bytes`` bounds every service on the server; it must be at least the transport's
    ``max_batch_bytes`` and ``snapshot_chunk_bytes`` plus a little framing (see PeerTransport).
    """
    return [
        ("grpc.max_receive_message_length", max_receive_bytes),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ]


@dataclass(frozen=True, slots=True)
class Rejection:
    code: grpc.StatusCode
    message: str


def check_identity(
    local_cluster: int,
    local_member: int,
    removed: set[int] | frozenset[int],
    cluster_id: int,
    sender_id: int,
    receiver_id: int,
) -> Rejection | None:
    """Why a request naming (cluster_id, sender_id, receiver_id) must be refused, or None."""
    if cluster_id != local_cluster:
        return Rejection(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"cluster ID mismatch: request from member {sender_id:x} is for cluster {cluster_id:x}, "
            f"but member {local_member:x} belongs to cluster {local_cluster:x}",
        )
    if receiver_id != local_member:
        return Rejection(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"member ID mismatch: request from member {sender_id:x} is for member {receiver_id:x}, "
            f"but this is member {local_member:x} of cluster {local_cluster:x}",
        )
    if sender_id in removed:
        return Rejection(
            grpc.StatusCode.PERMISSION_DENIED,
            f"member {sender_id:x} has been permanently removed from cluster {local_cluster:x}",
        )
    return None
