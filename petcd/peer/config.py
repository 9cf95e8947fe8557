"""Tunables and counters of the peer transport."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PeerConfig:
    # outgoing queue per peer while its stream is up (etcd buffers 4096 messages per stream)
    max_queue_messages: int = 4096
    max_queue_bytes: int = 64 * 1024 * 1024
    # while the peer is unreachable only the newest few are kept
    max_queue_messages_down: int = 64
    # one MessageBatch; must fit the receiving server's max_receive_message_length
    max_batch_bytes: int = 4 * 1024 * 1024
    # reconnect backoff: doubles from initial up to max, with jitter
    backoff_initial: float = 0.05
    backoff_max: float = 2.0
    # how long a new stream may take to be accepted by the receiver
    handshake_timeout: float = 5.0
    keepalive_seconds: float = 10.0
    keepalive_timeout_seconds: float = 5.0
    snapshot_chunk_bytes: int = 1024 * 1024
    snapshot_chunk_timeout: float = 30.0
    # the receiver acks after the server installed the snapshot, which can take a while
    snapshot_ack_timeout: float = 300.0
    # the transport deletes the file snapshot_source returned once it is sent (or failed)
    delete_sent_snapshots: bool = True
    # recurring warnings (queue full, peer unreachable) at most once per interval per peer
    log_interval: float = 5.0


@dataclass(slots=True)
class PeerStats:
    connected: bool = False
    messages_sent: int = 0
    batches_sent: int = 0
    messages_dropped: int = 0
    stream_failures: int = 0
    snapshots_sent: int = 0
    snapshots_failed: int = 0
    # messages received from this peer (inbound streams)
    messages_received: int = 0
