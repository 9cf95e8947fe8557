"""What a running member needs from its configuration, in the units the server uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from petcd.server.bootstrap import Member

DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024
# LMDB needs a map at least as large as the file may grow; leave room over the quota
# so that the quota, not the map, is what refuses writes.
MAP_SIZE_SLACK = 2


@dataclass
class ServerSettings:
    name: str
    data_dir: str
    member_id: int
    cluster_id: int
    initial_members: list[Member]
    advertise_client_urls: list[str] = field(default_factory=list)
    initial_advertise_peer_urls: list[str] = field(default_factory=list)
    wal_dir: str = ""
    initial_cluster_state: str = "new"
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000
    snapshot_count: int = 100_000
    snapshot_catchup_entries: int = 5_000
    quota_backend_bytes: int = DEFAULT_QUOTA_BYTES
    max_request_bytes: int = 1_572_864
    max_txn_ops: int = 128
    backend_batch_interval: float = 0.1
    auto_compaction_mode: str = ""
    auto_compaction_retention: str = "0"
    # nanoseconds for periodic, a revision count for revision; 0 = off
    auto_compaction_retention_value: int = 0
    strict_reconfig_check: bool = True
    watch_progress_notify_interval: float = 600.0
    max_wals: int = 5
    max_snapshots: int = 5

    @property
    def election_ticks(self) -> int:
        return max(1, self.election_timeout_ms // self.heartbeat_interval_ms)

    @property
    def request_timeout(self) -> float:
        # etcd: 5 s plus two election timeouts
        return 5.0 + 2 * self.election_timeout_ms / 1000.0

    @property
    def backend_map_size(self) -> int:
        """The initial LMDB map; it grows on demand up to backend_max_map_size."""
        return min(1 << 30, self.backend_max_map_size)

    @property
    def backend_max_map_size(self) -> int:
        return min(max(self.quota_backend_bytes * MAP_SIZE_SLACK, 64 * 1024 * 1024), 1 << 40)

    @property
    def max_recv_message_bytes(self) -> int:
        # etcd lets gRPC accept a little more than the request limit, then checks itself
        return self.max_request_bytes + 512 * 1024
