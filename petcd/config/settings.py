"""What a running member needs from its configuration, in the units the server uses.

``ServerSettings`` is frozen and has no defaults of its own: it is built whole from a parsed
``ServerConfig`` by ``settings_from_config``, so every default comes from the flag table
(petcd/config/flags.py). Tests that need a member build one with ``settings_from_flags``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from petcd.config.flags import FLAGS
from petcd.config.members import Member
from petcd.config.server_config import AuthTokenConfig, ServerConfig, TLSInfo, check_supported, parse_config

__all__ = ["ServerSettings", "settings_from_config", "settings_from_flags"]

# LMDB needs a map at least as large as the file may grow; leave room over the quota
# so that the quota, not the map, is what refuses writes.
MAP_SIZE_SLACK = 2
# no quota: a very large ceiling instead of a special case on the write path
_UNLIMITED = 1 << 62
# etcd's values for a zero --backend-batch-interval / --backend-batch-limit
DEFAULT_BATCH_INTERVAL = 0.1
DEFAULT_BATCH_LIMIT = 10000
# gRPC takes a C int for max_concurrent_streams; etcd's default (MaxUint32) does not fit
_GRPC_MAX_STREAMS = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ServerSettings:
    # who and where
    name: str
    data_dir: str
    wal_dir: str
    member_id: int
    cluster_id: int
    initial_members: list[Member]
    initial_cluster_state: str
    advertise_client_urls: list[str]
    initial_advertise_peer_urls: list[str]
    listen_client_urls: list[str]
    listen_peer_urls: list[str]
    client_frontends: int
    client_urls_http: bool  # HTTP/1 on the client URLs too (when no --listen-client-http-urls)
    # raft
    heartbeat_interval_ms: int
    election_timeout_ms: int
    initial_election_tick_advance: bool
    pre_vote: bool
    strict_reconfig_check: bool
    max_learners: int
    force_new_cluster: bool
    # snapshots and storage
    snapshot_count: int
    snapshot_catchup_entries: int
    max_snapshots: int
    max_wals: int
    quota_backend_bytes: int
    backend_batch_interval: float  # seconds
    backend_batch_limit: int
    unsafe_no_fsync: bool
    # MVCC, compaction, watch, lease
    auto_compaction_mode: str
    auto_compaction_retention: str
    auto_compaction_retention_value: int  # nanoseconds for periodic, a revision count for revision; 0 = off
    compaction_batch_limit: int
    watch_progress_notify_interval: float  # seconds
    lease_checkpoint: bool
    # corruption checks
    initial_corrupt_check: bool
    corrupt_check_interval: float  # seconds; 0 = no periodic check
    # requests and gRPC
    max_request_bytes: int
    max_txn_ops: int
    max_concurrent_streams: int
    grpc_keepalive_min_time: float  # seconds
    grpc_keepalive_interval: float  # seconds; 0 = no pings
    grpc_keepalive_timeout: float  # seconds
    # logging
    log_level: str
    log_outputs: tuple[str, ...]
    # parsed for the features that use them (auth, TLS, HTTP); see the flag table for what applies
    auth_token: str
    auth_token_config: AuthTokenConfig  # --auth-token decoded
    bcrypt_cost: int
    auth_token_ttl: int
    client_tls: TLSInfo
    peer_tls: TLSInfo
    cipher_suites: tuple[str, ...]
    tls_min_version: str
    tls_max_version: str
    self_signed_cert_validity: int  # years, for --auto-tls / --peer-auto-tls certificates
    peer_skip_client_san_verification: bool
    listen_metrics_urls: list[str]
    metrics: str
    enable_grpc_gateway: bool
    listen_client_http_urls: list[str]

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


def _flag_default(name: str) -> Any:
    return FLAGS[name].default


def settings_from_config(cfg: ServerConfig) -> ServerSettings:
    ids = cfg.initial_member_ids
    members = [Member(ids[name], name, [str(u) for u in urls]) for name, urls in cfg.initial_cluster_members]
    quota = cfg.effective_quota_bytes
    return ServerSettings(
        name=cfg.name,
        data_dir=cfg.data_dir,
        wal_dir=cfg.wal_dir,
        member_id=cfg.local_member_id,
        cluster_id=cfg.initial_cluster_id,
        initial_members=members,
        initial_cluster_state=cfg.initial_cluster_state,
        advertise_client_urls=list(cfg.advertise_client_urls_str),
        initial_advertise_peer_urls=list(cfg.initial_advertise_peer_urls_str),
        listen_client_urls=list(cfg.listen_client_urls_str),
        listen_peer_urls=list(cfg.listen_peer_urls_str),
        client_frontends=cfg.client_frontends,
        client_urls_http=cfg.client_urls_http,
        heartbeat_interval_ms=cfg.heartbeat_interval,
        election_timeout_ms=cfg.election_timeout,
        initial_election_tick_advance=cfg.initial_election_tick_advance,
        pre_vote=cfg.pre_vote,
        strict_reconfig_check=cfg.strict_reconfig_check,
        max_learners=cfg.experimental_max_learners,
        force_new_cluster=cfg.force_new_cluster,
        snapshot_count=cfg.snapshot_count,
        snapshot_catchup_entries=cfg.experimental_snapshot_catchup_entries
        or _flag_default("experimental-snapshot-catchup-entries"),
        max_snapshots=cfg.max_snapshots,
        max_wals=cfg.max_wals,
        quota_backend_bytes=_UNLIMITED if quota is None else quota,
        backend_batch_interval=cfg.backend_batch_interval or DEFAULT_BATCH_INTERVAL,
        backend_batch_limit=cfg.backend_batch_limit if cfg.backend_batch_limit > 0 else DEFAULT_BATCH_LIMIT,
        unsafe_no_fsync=cfg.unsafe_no_fsync,
        auto_compaction_mode=cfg.auto_compaction_mode,
        auto_compaction_retention=cfg.auto_compaction_retention,
        auto_compaction_retention_value=cfg.auto_compaction_retention_value,
        # etcd: a limit of 0 or less means its default, 1000
        compaction_batch_limit=cfg.experimental_compaction_batch_limit
        if cfg.experimental_compaction_batch_limit > 0 else 1000,
        # etcd: 0 means the default interval
        watch_progress_notify_interval=cfg.experimental_watch_progress_notify_interval
        or _flag_default("experimental-watch-progress-notify-interval"),
        lease_checkpoint=cfg.experimental_enable_lease_checkpoint,
        initial_corrupt_check=cfg.experimental_initial_corrupt_check,
        corrupt_check_interval=cfg.experimental_corrupt_check_time,
        max_request_bytes=cfg.max_request_bytes,
        max_txn_ops=cfg.max_txn_ops,
        max_concurrent_streams=min(cfg.max_concurrent_streams, _GRPC_MAX_STREAMS),
        grpc_keepalive_min_time=cfg.grpc_keepalive_min_time,
        grpc_keepalive_interval=cfg.grpc_keepalive_interval,
        grpc_keepalive_timeout=cfg.grpc_keepalive_timeout,
        log_level=cfg.effective_log_level,
        log_outputs=cfg.log_outputs,
        auth_token=cfg.auth_token,
        auth_token_config=cfg.auth,
        bcrypt_cost=cfg.effective_bcrypt_cost,
        auth_token_ttl=cfg.auth_token_ttl,
        client_tls=cfg.client_tls,
        peer_tls=cfg.peer_tls,
        cipher_suites=cfg.cipher_suites,
        tls_min_version=cfg.tls_min_version,
        tls_max_version=cfg.tls_max_version,
        self_signed_cert_validity=cfg.self_signed_cert_validity,
        peer_skip_client_san_verification=cfg.experimental_peer_skip_client_san_verification,
        listen_metrics_urls=[str(u) for u in cfg.listen_metrics_urls],
        metrics=cfg.metrics,
        enable_grpc_gateway=cfg.enable_grpc_gateway,
        listen_client_http_urls=[str(u) for u in cfg.listen_client_http_urls],
    )


def settings_from_flags(argv: Sequence[str], environ: Mapping[str, str] | None = None,
                        **overrides: Any) -> ServerSettings:
    """Settings as the member would build them from this command line (defaults from the flag
    table, refusals applied), with some fields replaced, e.g. a fixed member_id in a test.
    Raises ConfigError."""
    cfg = parse_config(list(argv), environ or {})
    check_supported(cfg)
    return dataclasses.replace(settings_from_config(cfg), **overrides)
